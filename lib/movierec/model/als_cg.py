"""ALS whose row solves are a few conjugate-gradient steps, on Spark, implicit or explicit.

The objective is Spark MLlib's ALS exactly. Implicit (implicitPrefs=True): confidence
c = 1 + alpha * |r|, preference [r > 0], and regParam times each row's count of positive
ratings (ALS-WR). Explicit: squared error on the rated pairs, regParam times each row's count of
ratings. Spark solves every row's normal equations exactly, building a rank x rank matrix rating
by rating (O(rank^2) per rating); here each row takes `cg_steps` CG steps warm-started from its
previous factors (Takacs, Pilaszy and Tikk 2011; the `implicit` library's default solver),
O(rank) per rating and step (implicit: Y'Y is shared by all rows). At ML-25M scale the served
implicit refit (rank 64) takes 81 s instead of MLlib's 198 s at the same test NDCG, an explicit
fit (rank 32) 42 s instead of 88-100 s at the same test RMSE (docs/benchmarks.md).

Distribution: the ratings are packed once per fit into row buckets of each side (CSR arrays, one
pickled record per bucket in a cached RDD); each half-iteration broadcasts the fixed side's factors, its Gram
matrix and the solving side's previous factors, solves every bucket on the executors with a
compiled kernel, and collects the new factors to the driver. The driver so holds both factor
matrices, (users + items) x rank x 4 bytes: 57 MB at ML-25M, 0.6 GB at 10x (docs/scaling.md).
The result is an ordinary `ALSModel`, so serving, fold-in and MLflow treat it like Spark's own.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import RDD, StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import tables as t

log = logging.getLogger(__name__)

_BUCKET = "_bucket"
_PACKED = "rows binary, indptr binary, cols binary, vals binary"
_RATINGS_PER_TASK = 4_000_000   # per bucket at most; each core gets as many buckets


@numba.njit(cache=True, nogil=True, fastmath=True)   # vectorised dot products: 2.4x
def cg_rows(indptr, cols, vals, X, Y, YtY, reg, alpha, steps, explicit=False):  # pragma: no cover - compiled
    """X[u] (float64, warm start in, solution out) for every row u of the CSR (indptr, cols,
    vals): `steps` CG steps on (Y'Y + Y_u' C1_u Y_u + reg * n_u I) x = Y_u' (1 + c1) [r > 0],
    n_u the row's positives. explicit: on (Y_u' Y_u + reg * n_u I) x = Y_u' r, n_u its ratings
    (pass a zero YtY), Spark's explicit ALS."""
    rank = X.shape[1]
    r = np.empty(rank)
    p = np.empty(rank)
    ap = np.empty(rank)
    for u in range(X.shape[0]):
        x = X[u]
        positives = 0
        for a in range(rank):
            acc = 0.0
            for b in range(rank):
                acc += YtY[a, b] * x[b]
            r[a] = -acc
        for j in range(indptr[u], indptr[u + 1]):
            y = Y[cols[j]]
            if explicit:
                c1, target = 1.0, vals[j]
                positives += 1
            else:
                c1 = alpha * abs(vals[j])
                target = 0.0
                if vals[j] > 0:
                    target = 1.0 + c1
                    positives += 1
            dot = 0.0
            for a in range(rank):
                dot += y[a] * x[a]
            coef = target - c1 * dot
            for a in range(rank):
                r[a] += coef * y[a]
        lam = reg * positives
        rs = 0.0
        for a in range(rank):
            r[a] -= lam * x[a]
            p[a] = r[a]
            rs += r[a] * r[a]
        for _ in range(steps):
            if rs < 1e-20:
                break
            for a in range(rank):
                acc = lam * p[a]
                for b in range(rank):
                    acc += YtY[a, b] * p[b]
                ap[a] = acc
            for j in range(indptr[u], indptr[u + 1]):
                y = Y[cols[j]]
                dot = 0.0
                for a in range(rank):
                    dot += y[a] * p[a]
                coef = dot if explicit else alpha * abs(vals[j]) * dot
                for a in range(rank):
                    ap[a] += coef * y[a]
            pap = 0.0
            for a in range(rank):
                pap += p[a] * ap[a]
            step = rs / pap
            rs_new = 0.0
            for a in range(rank):
                x[a] += step * p[a]
                r[a] -= step * ap[a]
                rs_new += r[a] * r[a]
            for a in range(rank):
                p[a] = r[a] + rs_new / rs * p[a]
            rs = rs_new


def _pack(ids_of_rows: np.ndarray, ids_of_cols: np.ndarray, row_col: str, col_col: str):
    """A function packing one bucket's ratings into CSR bytes of dense indices."""
    def pack(frame: pd.DataFrame) -> pd.DataFrame:
        rows = np.searchsorted(ids_of_rows, frame[row_col].to_numpy())
        cols = np.searchsorted(ids_of_cols, frame[col_col].to_numpy()).astype(np.int32)
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        vals = frame[t.RATING].to_numpy(np.float32)[order]
        unique, counts = np.unique(rows, return_counts=True)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return pd.DataFrame({"rows": [unique.astype(np.int32).tobytes()], "indptr": [indptr.tobytes()],
                             "cols": [cols.tobytes()], "vals": [vals.tobytes()]})
    return pack


def _solve(broadcast, steps: int, reg: float, alpha: float, explicit: bool):
    def solve(buckets: Iterator[tuple[bytes, ...]]) -> Iterator[tuple[bytes, bytes]]:
        fixed, previous, gram = broadcast.value
        for rows, indptr, cols, vals in buckets:
            rows = np.frombuffer(rows, np.int32)
            x = previous[rows].astype(np.float64)
            cg_rows(np.frombuffer(indptr, np.int64), np.frombuffer(cols, np.int32),
                    np.frombuffer(vals, np.float32), x, fixed, gram, reg, alpha, steps, explicit)
            yield rows.tobytes(), x.astype(np.float32).tobytes()
    return solve


def _half(packed: RDD, fixed: np.ndarray, previous: np.ndarray, *, reg: float, alpha: float,
          steps: int, implicit: bool) -> np.ndarray:
    """The solving side's new factors, every bucket solved against the fixed side."""
    rank = fixed.shape[1]
    gram = fixed.T.astype(np.float64) @ fixed.astype(np.float64) if implicit else np.zeros((rank, rank))
    shared = packed.context.broadcast((fixed, previous, gram))
    try:
        out = packed.mapPartitions(_solve(shared, steps, reg, alpha, not implicit)).collect()
    finally:
        shared.destroy()
    solved = previous.copy()
    for rows, factors in out:
        rows = np.frombuffer(rows, np.int32)
        solved[rows] = np.frombuffer(factors, np.float32).reshape(len(rows), -1)
    return solved


def _initial(n: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """Spark's initialisation: Gaussian rows scaled to unit norm."""
    x = rng.standard_normal((n, rank)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _factor_frame(spark: SparkSession, ids: np.ndarray, matrix: np.ndarray) -> DataFrame:
    rank = matrix.shape[1]
    features = pa.ListArray.from_arrays(pa.array(np.arange(0, (len(ids) + 1) * rank, rank, dtype=np.int32)),
                                        pa.array(matrix.reshape(-1)))
    table = pa.table({"id": pa.array(ids.astype(np.int32)), "features": features})
    return spark.createDataFrame(table, "id int, features array<float>")


def to_als_model(spark: SparkSession, user_ids: np.ndarray, X: np.ndarray, item_ids: np.ndarray,
                 Y: np.ndarray) -> ALSModel:
    """An ALSModel holding these factors (its Scala constructor is package-private in Scala
    only: the JVM lets py4j call it)."""
    jvm = spark._jvm
    users = _factor_frame(spark, user_ids, X).persist()
    items = _factor_frame(spark, item_ids, Y).persist()
    java = jvm.org.apache.spark.ml.recommendation.ALSModel(
        jvm.org.apache.spark.ml.util.Identifiable.randomUID("als"), X.shape[1], users._jdf, items._jdf)
    return (ALSModel(java).setUserCol(t.USER_ID).setItemCol(t.MOVIE_ID)
            .setColdStartStrategy("nan"))


def fit_cg(ratings: DataFrame, *, rank: int, reg: float, max_iter: int, seed: int, implicit: bool,
           alpha: float = 1.0, cg_steps: int = 3, rating_col: str = t.RATING, buckets: int = 0) -> ALSModel:
    """ALS(implicitPrefs=implicit, rank, regParam=reg, alpha, maxIter=max_iter) on ratings
    (user_id, movie_id, rating_col), with CG row solves; items are solved first, as Spark does."""
    spark, started = ratings.sparkSession, time.perf_counter()
    ratings = ratings.select(F.col(t.USER_ID).cast("int"), F.col(t.MOVIE_ID).cast("int"),
                             F.col(rating_col).cast("float").alias(t.RATING))
    row = ratings.agg(F.count(F.lit(1)), *[F.array_sort(F.collect_set(side)).alias(side)
                                           for side in (t.USER_ID, t.MOVIE_ID)]).first()
    n, ids = row[0], {side: np.array(row[side], np.int32) for side in (t.USER_ID, t.MOVIE_ID)}
    cores = spark.sparkContext.defaultParallelism
    buckets = buckets or cores * max(1, -(-n // (cores * _RATINGS_PER_TASK)))   # equal waves

    def packed(row_col: str, col_col: str) -> RDD:
        # An RDD of pickled bytes, not a cached DataFrame: handing a cached DataFrame's
        # 50 MB binary cells to Python through Arrow took 1.8 s per half-iteration at ML-25M.
        return (ratings.withColumn(_BUCKET, F.pmod(F.hash(row_col), F.lit(buckets)))
                .groupBy(_BUCKET).applyInPandas(_pack(ids[row_col], ids[col_col], row_col, col_col), _PACKED)
                .rdd.map(lambda r: (r["rows"], r["indptr"], r["cols"], r["vals"]))
                .persist(StorageLevel.MEMORY_AND_DISK))

    by_user, by_item = packed(t.USER_ID, t.MOVIE_ID), packed(t.MOVIE_ID, t.USER_ID)
    try:
        by_user.count(), by_item.count()
        rng = np.random.default_rng(seed)
        X, Y = _initial(len(ids[t.USER_ID]), rank, rng), _initial(len(ids[t.MOVIE_ID]), rank, rng)
        for _ in range(max_iter):
            Y = _half(by_item, X, Y, reg=reg, alpha=alpha, steps=cg_steps, implicit=implicit)
            X = _half(by_user, Y, X, reg=reg, alpha=alpha, steps=cg_steps, implicit=implicit)
    finally:
        by_user.unpersist(), by_item.unpersist()
    log.info("%s ALS (CG, %d steps): %s ratings, %d x %d, rank %d, %d iterations in %.1fs",
             "implicit" if implicit else "explicit", cg_steps, f"{n:,}", len(X), len(Y), rank, max_iter,
             time.perf_counter() - started)
    return to_als_model(spark, ids[t.USER_ID], X, ids[t.MOVIE_ID], Y)
