"""Baselines, CV folds and the hybrid, on rows small enough to check by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from movierec.core import tables as t
from movierec.model.baselines import (fit_biases, global_mean, popularity, popularity_lists, trending,
                                      with_baseline)
from movierec.model.grids import product as grid
from movierec.model.hybrid import FittedHybrid, top_movies
from movierec.model.tuning import Fold, forward_folds, search


def _ratings(spark, rows):
    data = [(u, m, float(r), datetime.fromtimestamp(s, timezone.utc)) for u, m, r, s in rows]
    return spark.createDataFrame(data, t.SCHEMAS[t.RATINGS])


def test_damped_biases_by_hand(spark):
    # mu = (5 + 3 + 4) / 3 = 4
    df = _ratings(spark, [(1, 10, 5, 1), (2, 10, 3, 2), (2, 20, 4, 3)])
    b = fit_biases(df, damping_user=1.0, damping_item=1.0)
    assert b.mu == 4.0
    items = {r.movie_id: r.item_bias for r in b.items.collect()}
    # movie 10: ((5-4) + (3-4)) / (2 + 1) = 0; movie 20: (4-4) / (1 + 1) = 0
    assert items == {10: 0.0, 20: 0.0}
    users = {r.user_id: r.user_bias for r in b.users.collect()}
    # user 1: (5-4-0) / (1+1) = 0.5; user 2: ((3-4) + (4-4)) / (2+1) = -1/3
    assert users[1] == pytest.approx(0.5) and users[2] == pytest.approx(-1 / 3)
    pred = {(r.user_id, r.movie_id): r.prediction
            for r in with_baseline(_ratings(spark, [(1, 20, 0, 1), (9, 99, 0, 1)]), b).collect()}
    assert pred[(1, 20)] == pytest.approx(4.5) and pred[(9, 99)] == 4.0  # unknowns add nothing
    assert global_mean(df) == 4.0


def test_recent_popularity_counts_only_the_last_days(spark):
    day = 86_400
    df = _ratings(spark, [(1, 1, 4, 0), (2, 1, 4, day), (3, 2, 4, 10 * day), (4, 2, 4, 10 * day)])
    assert {r.movie_id: r.score for r in popularity(df).collect()} == {1: 2.0, 2: 2.0}
    assert {r.movie_id: r.score for r in popularity(df, recent_days=5).collect()} == {2: 2.0}


def test_trending_halves_weight_every_half_life_and_counts_dislikes_against(spark):
    day = 86_400
    # the last rating is at day 20; movie 1: 5 stars 10 days earlier (weight 1/2 x (5-3)) and
    # 4 stars now (1 x 1); movie 2: 1 star now (1 x -2)
    df = _ratings(spark, [(1, 1, 5, 10 * day), (2, 1, 4, 20 * day), (3, 2, 1, 20 * day)])
    got = {r.movie_id: r.score for r in trending(df, half_life_days=10).collect()}
    assert got == {1: pytest.approx(2.0), 2: pytest.approx(-2.0)}


def test_popularity_lists_skip_seen_and_serve_new_users(spark):
    scores = spark.createDataFrame([(1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0)], "movie_id int, score float")
    users = spark.createDataFrame([(1,), (2,)], "user_id int")
    seen = spark.createDataFrame([(1, 1), (1, 3)], "user_id int, movie_id int")
    got = sorted((r.user_id, r.rank, r.movie_id) for r in popularity_lists(scores, users, seen, 2).collect())
    assert got == [(1, 1, 2), (1, 2, 4), (2, 1, 1), (2, 2, 2)]


class _Factors:
    """What FittedHybrid reads of an ALSModel: its two factor tables, here written by hand."""
    def __init__(self, spark, users, items):
        self.userFactors = spark.createDataFrame(users, "id int, features array<float>")
        self.itemFactors = spark.createDataFrame(items, "id int, features array<float>")


def test_hybrid_uses_the_model_only_for_users_with_enough_history(spark):
    als = _Factors(spark, [(1, [1.0]), (2, [1.0])], [(100, [2.0]), (7, [1.0])])
    trend = spark.createDataFrame([(7, 5.0), (8, 4.0), (100, 1.0)], "movie_id int, score float")
    history = _ratings(spark, [(1, 50, 4, 1), (1, 51, 4, 2), (2, 50, 4, 3)])   # user 2 is thin
    hybrid = FittedHybrid(als, trend, history, {"candidates": 0, "min_history": 2})
    users = spark.createDataFrame([(1,), (2,), (3,)], "user_id int")           # user 3 is new
    got = sorted((r.user_id, r.rank, r.movie_id, r.source) for r in hybrid.recommend(users, 2, None).collect())
    # user 1: the model scores 100 at 2.0 and 7 at 1.0; users 2 and 3: trending movies
    assert got == [(1, 1, 100, "model"), (1, 2, 7, "model"), (2, 1, 7, "fallback"), (2, 2, 8, "fallback"),
                   (3, 1, 7, "fallback"), (3, 2, 8, "fallback")]


def test_short_model_lists_are_topped_up_from_the_fallback_without_repeats(spark):
    # Candidates: the 2 most trending movies, 7 and 8; only 7 has factors, so the model lists 7
    # alone, and the list goes on with trending movies the user has not seen (8) nor been given.
    als = _Factors(spark, [(1, [1.0])], [(7, [1.0]), (9, [3.0])])
    trend = spark.createDataFrame([(7, 5.0), (8, 4.0), (9, 3.0), (10, 2.0)], "movie_id int, score float")
    history = _ratings(spark, [(1, 8, 4, 1)])
    hybrid = FittedHybrid(als, trend, history, {"candidates": 2, "min_history": 1})
    users = spark.createDataFrame([(1,)], "user_id int")
    got = [(r.rank, r.movie_id, r.source) for r in
           hybrid.recommend(users, 3, history.select("user_id", "movie_id")).orderBy("rank").collect()]
    assert got == [(1, 7, "model"), (2, 9, "fallback"), (3, 10, "fallback")]


def test_forward_folds_validate_on_what_follows_the_fit(spark):
    df = _ratings(spark, [(u, u, 4, 100 * u) for u in range(1, 11)])
    folds = forward_folds(df, folds=2, val_frac=0.2)
    spans = [(sorted(r.user_id for r in f.fit.collect()), sorted(r.user_id for r in f.validate.collect()))
             for f in folds]
    assert spans == [(list(range(1, 7)), [7, 8]), (list(range(1, 9)), [9, 10])]


def test_search_picks_the_best_mean_over_folds():
    folds = [Fold(0, None, None), Fold(1, None, None)]
    table = {("a", 0): 0.9, ("a", 1): 0.7, ("b", 0): 0.85, ("b", 1): 0.8}
    result = search("m", "rmse", grid(p=["a", "b"]), folds, lambda p, f: table[(p["p"], f.index)], False)
    assert result.best == {"p": "a"} and result.best_score == pytest.approx(0.8)
    assert len(result.rows) == 4
    assert search("m", "ndcg", grid(p=["a", "b"]), folds, lambda p, f: table[(p["p"], f.index)],
                  True).best == {"p": "b"}


def test_top_movies_breaks_ties_by_id_and_zero_means_all(spark):
    scores = spark.createDataFrame([(3, 1.0), (1, 2.0), (2, 2.0), (4, 0.5)], "movie_id int, score float")
    assert [r.movie_id for r in top_movies(scores, 3).collect()] == [1, 2, 3]
    assert top_movies(scores, 0) is None
