"""Metrics on hand-made rows, checked by hand and against a plain-Python reference."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from movierec.model.metrics import ranking_metrics, rating_metrics

RECS_SCHEMA = "user_id int, movie_id int, rank int"
TRUTH_SCHEMA = "user_id int, movie_id int, rating float"
RANKING_KEYS = ("precision", "recall", "ndcg", "map", "hit_rate")


def reference_ranking(recs, truth, k, relevant_threshold=4.0, n_catalog=None):
    """Plain-Python version of the same definitions (see movierec.metrics)."""
    relevant: dict[int, set[int]] = {}
    for user, movie, rating in truth:
        if rating >= relevant_threshold:
            relevant.setdefault(user, set()).add(movie)
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, movie, rank in recs:
        if rank <= k:
            by_user.setdefault(user, []).append((rank, movie))

    sums = dict.fromkeys(RANKING_KEYS, 0.0)
    recommended: set[int] = set()
    for user, rel in relevant.items():
        ranked = [movie for _, movie in sorted(by_user.get(user, []))]
        recommended.update(ranked)
        hits = 0
        dcg = 0.0
        precision_sum = 0.0
        for i, movie in enumerate(ranked, start=1):
            if movie in rel:
                hits += 1
                dcg += 1 / math.log(i + 1)
                precision_sum += hits / i
        idcg = sum(1 / math.log(i + 1) for i in range(1, min(len(rel), k) + 1))
        sums["precision"] += hits / k
        sums["recall"] += hits / len(rel)
        sums["ndcg"] += dcg / idcg
        sums["map"] += precision_sum / min(len(rel), k)
        sums["hit_rate"] += 1.0 if hits else 0.0

    result = {name: total / len(relevant) for name, total in sums.items()}
    result["users"] = len(relevant)
    if n_catalog is not None:
        result["coverage"] = len(recommended) / n_catalog
    return result


def assert_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, abs=1e-9), name


# k = 3.
HAND_TRUTH = [
    # user 1: relevant {10, 20, 40} (20 is exactly at the 4.0 threshold); 30 is not relevant.
    (1, 10, 5.0), (1, 20, 4.0), (1, 30, 2.0), (1, 40, 4.5),
    # user 2: relevant {50}.
    (2, 50, 4.0),
    # user 3: relevant {70, 80}, and no recs at all.
    (3, 70, 5.0), (3, 80, 4.0),
    # user 4: nothing relevant, so not evaluated (nor its recs counted for coverage).
    (4, 90, 3.0),
]
HAND_RECS = [
    (1, 10, 1), (1, 30, 2), (1, 20, 3), (1, 40, 4),  # rank 4 > k: ignored (would be a hit)
    (2, 10, 1), (2, 50, 2),                         # only 2 recs for k = 3
    (4, 100, 1),                                    # user 4 not evaluated
    (5, 110, 1),                                    # user 5 not in truth
]


def test_ranking_metrics_by_hand(spark):
    recs = spark.createDataFrame(HAND_RECS, RECS_SCHEMA)
    truth = spark.createDataFrame(HAND_TRUTH, TRUTH_SCHEMA)

    result = ranking_metrics(recs, truth, 3, n_catalog=10)

    # user 1: top 3 = [10, 30, 20], hits at positions 1 and 3, |rel| = 3.
    #   precision 2/3, recall 2/3, hit 1
    #   ndcg = (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3) + 1/log2(4)) = 1.5 / (1.5 + 1/log2(3))
    #   map  = (1/1 + 2/3) / min(3, 3) = 5/9
    # user 2: top 3 = [10, 50], hit at position 2, |rel| = 1.
    #   precision 1/3 (divided by k, not by 2), recall 1/1, hit 1
    #   ndcg = (1/log2(3)) / (1/log2(2)) = 1/log2(3)
    #   map  = (1/2) / min(1, 3) = 1/2
    # user 3: no recs, all 0.
    inv_log2_3 = 1 / math.log2(3)
    expected = {
        "precision": (2 / 3 + 1 / 3 + 0) / 3,                          # = 1/3
        "recall": (2 / 3 + 1 + 0) / 3,                                 # = 5/9
        "ndcg": (1.5 / (1.5 + inv_log2_3) + inv_log2_3 + 0) / 3,
        "map": (5 / 9 + 1 / 2 + 0) / 3,                                # = 19/54
        "hit_rate": 2 / 3,
        "users": 3,
        # movies recommended in the top 3 to users 1-3: {10, 30, 20} | {10, 50} = 4 of 10.
        "coverage": 4 / 10,
    }
    assert_close(result, expected)
    assert result["map"] == pytest.approx(19 / 54, abs=1e-12)
    assert_close(result, reference_ranking(HAND_RECS, HAND_TRUTH, 3, n_catalog=10))


def test_ranking_metrics_with_no_evaluated_users(spark):
    recs = spark.createDataFrame([(1, 10, 1)], RECS_SCHEMA)
    truth = spark.createDataFrame([(1, 10, 3.0)], TRUTH_SCHEMA)

    result = ranking_metrics(recs, truth, 3)

    assert result["users"] == 0
    assert "coverage" not in result  # no n_catalog given
    assert all(math.isnan(result[name]) for name in RANKING_KEYS)


def random_case(seed: int, n_users: int = 50, n_movies: int = 200, k: int = 10):
    rng = random.Random(seed)
    movies = list(range(1, n_movies + 1))
    truth, recs = [], []
    for user in range(1, n_users + 1):
        rated = rng.sample(movies, rng.randint(1, 40))
        # about one user in six rates nothing at 4.0 or above, so is not evaluated.
        top = 3.5 if rng.random() < 0.15 else 5.0
        truth += [(user, m, rng.choice([r / 2 for r in range(1, int(top * 2) + 1)])) for m in rated]
        # about one user in five gets no recs; users past n_users get recs but have no truth.
    for user in range(1, n_users + 11):
        if rng.random() < 0.2:
            continue
        # mix the user's rated movies in so there are hits; up to 15 recs, so some rank > k.
        pool = sorted({m for u, m, _ in truth if u == user} | set(rng.sample(movies, 20)))
        picked = rng.sample(pool, rng.randint(1, 15))
        recs += [(user, m, rank) for rank, m in enumerate(picked, start=1)]
    return recs, truth, k


def test_ranking_metrics_match_reference(spark):
    recs, truth, k = random_case(seed=7)
    assert any(rank > k for _, _, rank in recs)
    # some users have more than k relevant items, where MAP's min(|rel|, k) differs from |rel|.
    relevant_counts = Counter(user for user, _, rating in truth if rating >= 4.0)
    assert max(relevant_counts.values()) > k

    result = ranking_metrics(spark.createDataFrame(recs, RECS_SCHEMA),
                             spark.createDataFrame(truth, TRUTH_SCHEMA), k, n_catalog=200)

    expected = reference_ranking(recs, truth, k, n_catalog=200)
    assert 0 < expected["users"] < 50
    assert 0 < expected["hit_rate"] < 1
    assert_close(result, expected)


def test_ranking_metrics_ignore_row_order(spark):
    recs, truth, k = random_case(seed=11)
    shuffled = recs[:]
    random.Random(3).shuffle(shuffled)

    # many partitions in shuffled row order, so collect_list sees ranks out of order.
    result = ranking_metrics(spark.createDataFrame(shuffled, RECS_SCHEMA).repartition(7),
                             spark.createDataFrame(truth, TRUTH_SCHEMA), k, n_catalog=200)

    assert_close(result, reference_ranking(recs, truth, k, n_catalog=200))


def test_ranking_metrics_reject_bad_input(spark):
    truth = spark.createDataFrame(HAND_TRUTH, TRUTH_SCHEMA)
    with pytest.raises(ValueError, match="rank"):
        ranking_metrics(truth, truth, 3)
    with pytest.raises(ValueError, match="k must be positive"):
        ranking_metrics(spark.createDataFrame(HAND_RECS, RECS_SCHEMA), truth, 0)


def test_rating_metrics_exact(spark):
    rows = [
        (4.0, 5.0),           # error  1
        (3.0, 2.0),           # error -1
        (5.0, 5.0),           # error  0
        (1.0, 3.0),           # error  2
        (4.0, float("nan")),  # dropped
        (2.0, None),          # dropped
    ]
    predictions = spark.createDataFrame(rows, "rating float, prediction float")

    result = rating_metrics(predictions)

    # rmse = sqrt((1 + 1 + 0 + 4) / 4), mae = (1 + 1 + 0 + 2) / 4
    assert result == {"rmse": pytest.approx(math.sqrt(6 / 4), abs=1e-9),
                      "mae": pytest.approx(1.0, abs=1e-9), "n": 4}


def test_rating_metrics_custom_columns(spark):
    predictions = spark.createDataFrame([(2.0, 4.0), (2.0, 2.0)], "y double, y_hat double")

    result = rating_metrics(predictions, label="y", prediction="y_hat")

    # errors 2 and 0: rmse = sqrt(4 / 2), mae = 2 / 2
    assert result == {"rmse": pytest.approx(math.sqrt(2), abs=1e-9),
                      "mae": pytest.approx(1.0, abs=1e-9), "n": 2}


def test_ranking_metrics_equal_sparks_ranking_evaluator(spark):
    """The one-pass formulas give what pyspark.ml.evaluation.RankingEvaluator gives."""
    from pyspark.ml.evaluation import RankingEvaluator
    from pyspark.sql import functions as F

    recs, truth, k = random_case(seed=5)
    recs_df = spark.createDataFrame(recs, RECS_SCHEMA)
    truth_df = spark.createDataFrame(truth, TRUTH_SCHEMA)
    ours = ranking_metrics(recs_df, truth_df, k)
    label = (truth_df.where("rating >= 4.0").groupBy("user_id")
             .agg(F.collect_set(F.col("movie_id").cast("double")).alias("label")))
    prediction = (recs_df.where(f"rank <= {k}").groupBy("user_id")
                  .agg(F.array_sort(F.collect_list(F.struct("rank", "movie_id"))).alias("r"))
                  .select("user_id", F.transform("r", lambda r: r["movie_id"].cast("double"))
                          .alias("prediction")))
    pairs = label.join(prediction, "user_id", "left").select(
        F.coalesce("prediction", F.array().cast("array<double>")).alias("prediction"), "label")
    evaluator = RankingEvaluator(k=k)
    for ours_name, spark_name in (("precision", "precisionAtK"), ("recall", "recallAtK"),
                                  ("ndcg", "ndcgAtK"), ("map", "meanAveragePrecisionAtK")):
        theirs = evaluator.evaluate(pairs, {evaluator.metricName: spark_name})
        assert ours[ours_name] == pytest.approx(theirs, abs=1e-12), ours_name
