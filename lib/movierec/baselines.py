"""Honest baselines: the global mean, damped user and item biases, and popularity.

Biases follow Koren's damped means: b_i = sum(r - mu) / (n_i + damping_item), then
b_u = sum(r - mu - b_i) / (n_u + damping_user), so a movie with few ratings stays near the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec import tables as t

PREDICTION = "prediction"
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
