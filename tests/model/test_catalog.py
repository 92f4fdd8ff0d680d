"""The model interface: the catalog, and a new model plugged into tuning, the final fit and
evaluation without touching them (train.py names no model)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.core.config import ConfigError, load_config
from movierec.model import catalog
from movierec.model.base import CvMetric, Fitted, Model
from movierec.model.baselines import GlobalMean
from movierec.model.evaluate import evaluate, value
from movierec.model.catalog import fit_all
from movierec.model.tuning import chosen_params, cross_validate

START = datetime(2021, 1, 1, tzinfo=timezone.utc)


class FixedLists(Fitted):
    """Movies first, first+1, ... for every user, seen ones left out."""

    def __init__(self, spark, first: int):
        self.spark, self.first = spark, first

    def recommend(self, users, k, exclude):
        movies = self.spark.createDataFrame([(m, float(-m)) for m in range(self.first, self.first + k)],
                                            "movie_id int, score float")
        lists = users.select(t.USER_ID).distinct().crossJoin(movies)
        if exclude is not None:
            lists = lists.join(exclude, [t.USER_ID, t.MOVIE_ID], "left_anti")
        by_user = Window.partitionBy(t.USER_ID).orderBy(t.MOVIE_ID)
        return lists.withColumn(t.RANK, F.row_number().over(by_user))


class Fixed(Model):
    name, ranks, cv_metric = "fixed", True, CvMetric.NDCG_ALL

    def grid(self):
        return [{"first": 1}, {"first": 5}]

    def fit(self, ratings, params, deps):
        return FixedLists(ratings.sparkSession, params["first"])


class Shifted(Model):
    """Builds on Fixed: its lists start `shift` movies after the fitted Fixed's."""
    name, ranks, cv_metric, requires = "shifted", True, CvMetric.NDCG_ALL, ("fixed",)

    def grid(self):
        return [{"shift": 3}, {"shift": 0}]

    def fit(self, ratings, params, deps):
        return FixedLists(ratings.sparkSession, deps["fixed"].first + params["shift"])


@pytest.fixture
def ratings(spark):
    """4 users; train: movies 1-3 early (rating 3; user 4 skips movie 3), then movie 5 late
    (5 stars, the last 4 of 15 ratings); test: movie 6 (5 stars) and user 4's movie 3 (4 stars)."""
    rows = [(u, m, 3.0, START + timedelta(days=10 * m + u)) for u in range(1, 5) for m in (1, 2, 3)
            if (u, m) != (4, 3)]
    rows += [(u, 5, 5.0, START + timedelta(days=100 + u)) for u in range(1, 5)]
    test = [(u, 6, 5.0, START + timedelta(days=200 + u)) for u in range(1, 5)]
    test += [(4, 3, 4.0, START + timedelta(days=300))]
    return (spark.createDataFrame(rows, t.SCHEMAS[t.RATINGS]),
            spark.createDataFrame(test, t.SCHEMAS[t.RATINGS]))


def test_a_new_model_is_tuned_fitted_and_evaluated_by_the_generic_loops(ratings, make_cfg):
    train, test = ratings
    cfg = make_cfg(train__cv__folds=1, train__cv__val_frac=4 / 15, train__k=2)
    models = {"global_mean": GlobalMean(cfg), "fixed": Fixed(cfg), "shifted": Shifted(cfg)}
    results = cross_validate(train, models, cfg)
    # validation holds movie 5: lists starting there win; Shifted got Fixed fitted with first=5,
    # so no shift wins (had it got first=1, shift 3 would have reached movie 5)
    assert results["fixed"].best == {"first": 5} and results["fixed"].best_score == 1.0
    assert results["shifted"].best == {"shift": 0}
    assert [r["params"] for r in results["fixed"].rows] == ["first=1", "first=5"]
    params = {name: chosen_params(m, results) for name, m in models.items()}
    assert params == {"global_mean": {}, "fixed": {"first": 5}, "shifted": {"shift": 0}}

    fitted = fit_all(models, train, params)
    table = evaluate(models, fitted, train, test, k=2, threshold=4.0, n_catalog=6)
    # movie 5 is seen, so every list is [6]: a hit at rank 1 of a 2-slot list; user 4 also
    # likes movie 3, which the list misses: NDCG 1 / (1 + 1/log2(3)) for that user
    assert value(table, "fixed", "ndcg", "all") == pytest.approx((3 + 1 / (1 + 1 / math.log2(3))) / 4)
    assert value(table, "fixed", "precision", "all") == 0.5
    assert (value(table, "fixed", "users", "warm"), value(table, "fixed", "users", "cold")) == (4, 0)
    mu = (11 * 3.0 + 4 * 5.0) / 15   # the one warm test pair is (user 4, movie 3), rated 4
    assert value(table, "global_mean", "rmse", "warm_pairs") == pytest.approx(4.0 - mu)
    assert value(table, "global_mean", "n", "warm_pairs") == 1
    assert set(table.model) == {"global_mean", "fixed", "shifted"}


class Untunable(Model):
    """One grid point: nothing for CV to choose, so it must never be fitted there."""
    name, rates, cv_metric = "untunable", True, CvMetric.RMSE

    def grid(self):
        return [{"damping": 7}]

    def fit(self, ratings, params, deps):
        raise AssertionError("a one-point grid was cross-validated")


def test_a_model_with_one_grid_point_is_chosen_without_a_fit(ratings, make_cfg):
    cfg = make_cfg(train__cv__folds=1, train__cv__val_frac=4 / 15)
    results = cross_validate(ratings[0], {"untunable": Untunable(cfg)}, cfg)
    assert results["untunable"].best == {"damping": 7} and results["untunable"].rows == []


def test_the_catalog_fits_each_model_after_what_it_requires():
    models = catalog.build(load_config("test"))
    names = list(models)
    for name, model in models.items():
        assert all(names.index(dep) < names.index(name) for dep in model.requires)
    assert {n for n, m in models.items() if m.rates} == {"global_mean", "bias", "als_plain", "als_biased"}
    assert models["hybrid"].requires == ("als_implicit",)


def test_the_served_and_baseline_models_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="'popular' is not a servable model.*hybrid"):
        catalog.build(load_config("test", ["train.served_model=popular"]))
    with pytest.raises(ConfigError, match="'bias' is not a ranking model"):
        catalog.build(load_config("test", ["train.baseline_model=bias"]))


class TooBig(Model):
    name, ranks = "too_big", True

    def skip_reason(self, ratings):
        return "a dense inverse of everything"

    def fit(self, ratings, params, deps):
        raise AssertionError("a skipped model was fitted")


class NeedsTooBig(Fixed):
    name, requires = "needs_too_big", ("too_big",)


def test_a_model_too_big_for_the_data_is_skipped_with_its_reason_unless_another_needs_it(make_cfg):
    cfg = make_cfg()
    kept, skipped = catalog.runnable({"fixed": Fixed(cfg), "too_big": TooBig(cfg)}, ratings=None)
    assert list(kept) == ["fixed"] and skipped == {"too_big": "a dense inverse of everything"}
    with pytest.raises(ConfigError, match="too_big.*a dense inverse"):
        catalog.runnable({"too_big": TooBig(cfg), "needs_too_big": NeedsTooBig(cfg)}, ratings=None)
