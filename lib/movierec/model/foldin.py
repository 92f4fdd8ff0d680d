"""Fold-in: factors for users whose ratings changed since the model was fitted, without a refit.

Each user's factors are the solution of the least-squares problem one ALS user step solves
against the fixed item factors Y (Spark's ml.recommendation.ALS, whose last half-iteration is
exactly this step, so a fold-in of a trained user reproduces the model's own factors):

- explicit:  (Y_u' Y_u + reg * n_u * I) x = Y_u' r_u
- implicit (Hu, Koren, Volinsky 2008, with Spark's extension to ratings <= 0): with
  c = alpha * |r|, (Y'Y + Y_u' diag(c) Y_u + reg * n_u * I) x = Y_u' (1 + c) [r > 0],
  n_u counting the user's positive ratings.

Solved on the executors: users are grouped into buckets, and each Python worker builds and
solves its bucket's normal equations as stacked NumPy arrays against the broadcast item factors.
Spark MLlib has no fold-in of its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.topk import FEATURES

_BUCKET = "_bucket"
_CHUNK = 20_000   # ratings per outer-product batch: chunk x rank^2 doubles at a time


def solve_users(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, Y: np.ndarray, *,
                reg: float, implicit: bool, alpha: float, YtY: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, their factors): users[i] rated row items[i] of Y with ratings[i]."""
    ids, position = np.unique(users, return_inverse=True)
    rank = Y.shape[1]
    A = np.zeros((len(ids), rank, rank))
    b = np.zeros((len(ids), rank))
    if implicit:
        c1 = alpha * np.abs(ratings.astype(float))
        weight, target = c1, np.where(ratings > 0, 1.0 + c1, 0.0)
        counted = ratings > 0
        A += YtY if YtY is not None else Y.T.astype(float) @ Y.astype(float)
    else:
        weight, target, counted = np.ones(len(ratings)), ratings.astype(float), np.ones(len(ratings), bool)
    for start in range(0, len(items), _CHUNK):
        part = slice(start, start + _CHUNK)
        y = Y[items[part]].astype(float)
        np.add.at(A, position[part], weight[part, None, None] * y[:, :, None] * y[:, None, :])
        np.add.at(b, position[part], target[part, None] * y)
    n = np.bincount(position, weights=counted.astype(float), minlength=len(ids))
    A += (reg * n)[:, None, None] * np.eye(rank)
    return ids, np.linalg.solve(A, b[:, :, None])[:, :, 0]


def fold_in(ratings: DataFrame, item_factors: DataFrame, *, reg: float, implicit: bool,
            alpha: float = 1.0, buckets: int = 0) -> DataFrame:
    """(user_id, features) for every user of `ratings` (user_id, movie_id, rating), solved
    against `item_factors` (movie_id, features); ratings of movies without factors are ignored,
    as ALS never saw them. buckets: Python calls (0: one per ~50k ratings, at least 2)."""
    spark = ratings.sparkSession
    table = (item_factors.select(F.col(t.MOVIE_ID).cast("int"), F.col(FEATURES)).toPandas()
             .sort_values(t.MOVIE_ID))   # searchsorted below needs the ids in order
    movie_ids = table[t.MOVIE_ID].to_numpy()
    Y = np.vstack(table[FEATURES].map(np.asarray).to_list()).astype(np.float32) if len(table) \
        else np.zeros((0, 1), np.float32)
    shared = spark.sparkContext.broadcast((movie_ids, Y, Y.T.astype(float) @ Y.astype(float)))
    known = ratings.join(item_factors.select(t.MOVIE_ID), t.MOVIE_ID, "left_semi")
    if not buckets:
        buckets = max(2, known.count() // 50_000)

    def solve(frame: pd.DataFrame) -> pd.DataFrame:
        movie_ids, Y, YtY = shared.value
        rows = np.searchsorted(movie_ids, frame[t.MOVIE_ID].to_numpy())
        ids, x = solve_users(frame[t.USER_ID].to_numpy(), rows, frame[t.RATING].to_numpy(), Y,
                             reg=reg, implicit=implicit, alpha=alpha, YtY=YtY)
        return pd.DataFrame({t.USER_ID: ids.astype(np.int32), FEATURES: list(x.astype(np.float32))})

    return (known.select(t.USER_ID, t.MOVIE_ID, t.RATING)
            .withColumn(_BUCKET, F.pmod(F.hash(t.USER_ID), F.lit(buckets)))
            .groupBy(_BUCKET)
            .applyInPandas(solve, f"{t.USER_ID} int, {FEATURES} array<float>"))
