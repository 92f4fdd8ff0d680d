"""Honest baselines: the global mean, damped user and item biases, and popularity.

Biases follow Koren's damped means: b_i = sum(r - mu) / (n_i + damping_item), then
b_u = sum(r - mu - b_i) / (n_u + damping_user), so a movie with few ratings stays near the mean.
Popularity lists go through the same top-K as every factor model, as its fallback ranking for
users without factors, so every list excludes seen movies and breaks ties alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.base import PREDICTION, CvMetric, Fitted, Model
from movierec.model.grids import product
from movierec.model.topk import FEATURES, top_k

SCORE = "score"
USER_BIAS, ITEM_BIAS = "user_bias", "item_bias"


def global_mean(ratings: DataFrame) -> float:
    return float(ratings.agg(F.avg(t.RATING)).first()[0])


@dataclass
class Biases:
    mu: float
    users: DataFrame   # (user_id, user_bias)
    items: DataFrame   # (movie_id, item_bias)


def fit_biases(ratings: DataFrame, *, damping_user: float, damping_item: float,
               mu: float | None = None) -> Biases:
    mu = global_mean(ratings) if mu is None else mu
    items = ratings.groupBy(t.MOVIE_ID).agg(
        (F.sum(F.col(t.RATING) - mu) / (F.count(F.lit(1)) + damping_item)).alias(ITEM_BIAS))
    users = (ratings.join(items, t.MOVIE_ID, "inner")
             .groupBy(t.USER_ID)
             .agg((F.sum(F.col(t.RATING) - mu - F.col(ITEM_BIAS)) /
                   (F.count(F.lit(1)) + damping_user)).alias(USER_BIAS)))
    return Biases(mu, users, items)


def with_baseline(pairs: DataFrame, biases: Biases, out: str = PREDICTION) -> DataFrame:
    """Adds mu + b_u + b_i; an unknown user or movie contributes no bias."""
    return (pairs.join(biases.users, t.USER_ID, "left").join(biases.items, t.MOVIE_ID, "left")
            .withColumn(out, F.lit(biases.mu) + F.coalesce(F.col(USER_BIAS), F.lit(0.0))
                        + F.coalesce(F.col(ITEM_BIAS), F.lit(0.0)))
            .drop(USER_BIAS, ITEM_BIAS))


def residuals(ratings: DataFrame, biases: Biases, out: str = "residual") -> DataFrame:
    """Ratings minus the bias baseline: what a factor model on top of the biases must explain."""
    return (with_baseline(ratings, biases, "_base")
            .withColumn(out, F.col(t.RATING) - F.col("_base")).drop("_base"))


def popularity(ratings: DataFrame, *, recent_days: int | None = None) -> DataFrame:
    """(movie_id, score): number of ratings, over all of `ratings` or its last `recent_days`."""
    if recent_days:
        end = ratings.agg(F.max(t.TS)).first()[0]
        ratings = ratings.where(F.col(t.TS) > F.lit(end - timedelta(days=recent_days)))
    return ratings.groupBy(t.MOVIE_ID).agg(F.count(F.lit(1)).cast("float").alias(SCORE))


def trending(ratings: DataFrame, *, half_life_days: float, neutral: float = 3.0) -> DataFrame:
    """(movie_id, score): ratings weighted by how far they sit above `neutral` and by their age
    (halved every half_life_days before the last rating), so what is liked now ranks first."""
    end = ratings.agg(F.max(F.unix_seconds(F.col(t.TS)))).first()[0]
    age_days = (F.lit(end) - F.unix_seconds(F.col(t.TS))) / 86_400.0
    weight = F.pow(F.lit(0.5), age_days / half_life_days) * (F.col(t.RATING) - neutral)
    return ratings.groupBy(t.MOVIE_ID).agg(F.sum(weight).cast("float").alias(SCORE))


def popularity_lists(scores: DataFrame, users: DataFrame, seen: DataFrame | None, k: int) -> DataFrame:
    """Top-k unseen movies by popularity `scores` (movie_id, score) for every user in `users`:
    top_k with the scores as the fallback of users who have no factors."""
    nobody = users.select(t.USER_ID).distinct().withColumn(FEATURES, F.lit(None).cast("array<float>"))
    return top_k(nobody, None, seen, k, fallback=scores).drop(t.SOURCE)


# ------------------------------------------------------------------ the models


class _Mean(Fitted):
    def __init__(self, mu: float):
        self.mu = mu

    def predict(self, pairs: DataFrame) -> DataFrame:
        return pairs.withColumn(PREDICTION, F.lit(self.mu))


class GlobalMean(Model):
    """Every rating predicted as the mean of train: the floor for rating error."""
    name, rates = "global_mean", True

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        return _Mean(global_mean(ratings))


class FittedBiases(Fitted):
    def __init__(self, biases: Biases):
        self.biases = Biases(biases.mu, biases.users.persist(), biases.items.persist())

    def predict(self, pairs: DataFrame) -> DataFrame:
        return with_baseline(pairs, self.biases)

    def release(self) -> None:
        self.biases.users.unpersist()
        self.biases.items.unpersist()


class Bias(Model):
    """mu + b_u + b_i with damped means, damping chosen by CV on RMSE."""
    name, rates, cv_metric = "bias", True, CvMetric.RMSE

    def grid(self) -> list[dict]:
        damping = self.cfg.train.bias.damping_grid
        return product(damping_user=damping, damping_item=damping)

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> FittedBiases:
        return FittedBiases(fit_biases(ratings, **params))


class FittedPopularity(Fitted):
    def __init__(self, scores: DataFrame):
        self.scores = scores.persist()

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        return popularity_lists(self.scores, users, exclude, k)

    def release(self) -> None:
        self.scores.unpersist()


class Popular(Model):
    """The most rated movies of all time."""
    name, ranks = "popular", True

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        return FittedPopularity(popularity(ratings))


class PopularRecent(Model):
    """The most rated movies of train's last train.popularity.recent_days."""
    name, ranks = "popular_recent", True

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        return FittedPopularity(popularity(ratings, recent_days=self.cfg.train.popularity.recent_days))


class Trending(Model):
    """Liked-now movies: the hybrid's fallback on its own, with the hybrid's chosen half-life."""
    name, ranks = "trending", True

    def shared_params(self, best: Mapping[str, dict]) -> dict:
        return {"half_life_days": best["hybrid"]["half_life_days"]}

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        return FittedPopularity(trending(ratings, **params))
