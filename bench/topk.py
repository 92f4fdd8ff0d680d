"""Benchmark: top-K for every user, `movierec.model.topk.top_k` against Spark's recommendForAllUsers.

    .venv/bin/python bench/topk.py --users 20000 --items 10000 --rank 32 --k 100
    .venv/bin/python bench/topk.py --users 60000 --items 25000 --rank 64 --k 100

One ALS fit (maxIter=1 on synthetic ratings, only to get an ALSModel of the wanted shape), then on
its factors, each result fully materialised with a `noop` write:
  (a) ALSModel.recommendForAllUsers(k), the baseline;
  (b) top_k with nothing excluded (the same job as (a));
  (c) top_k excluding --seen-per-user random seen items per user (what (a) cannot do);
  (d) a single-process NumPy reference on the driver: factors collected, blocked float32 GEMM,
      argpartition and a sort of the k best (no seen items, ties not ordered);
  (e) the bare GEMM of the same shapes alone (baselines.bare_sgemm: a fresh process, OpenBLAS
      on 2 threads, nothing selected), the floor (b) is judged against.
Prints a Markdown table for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time


import numpy as np  # noqa: E402
from pyspark.ml.recommendation import ALS  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from movierec.core import tables as t  # noqa: E402
from movierec.core.config import load_config  # noqa: E402
from movierec.core.logs import configure_logging  # noqa: E402
from movierec.core.spark import get_spark  # noqa: E402
from movierec.model.topk import FEATURES, top_k  # noqa: E402

from baselines import bare_sgemm  # noqa: E402  (bench/ is the script's folder)

log = logging.getLogger("bench.topk")
BASELINE = "(a) Spark ALSModel.recommendForAllUsers"
SGEMM = "(e) bare sgemm of the same shapes, OpenBLAS 2 threads"


def timed(label: str, fn, results: list):
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    results.append((label, seconds))
    log.info("%s: %.1fs", label, seconds)
    return out


def materialise(df: DataFrame) -> None:
    df.write.format("noop").mode("overwrite").save()


def synthetic_ratings(spark, users: int, items: int, per_user: int, seed: int) -> DataFrame:
    """users x per_user ratings; every user and (the first `items` rows) every item appears."""
    row = F.col("id")
    return spark.range(users * per_user).select(
        (row % users).cast("int").alias(t.USER_ID),
        F.when(row < items, row).otherwise(F.pmod(F.xxhash64(row, F.lit(seed)), F.lit(items)))
        .cast("int").alias(t.MOVIE_ID),
        (1 + F.pmod(F.xxhash64(row, F.lit(seed + 1)), F.lit(5))).cast("float").alias(t.RATING),
    )


def synthetic_seen(spark, users: int, items: int, per_user: int, seed: int) -> DataFrame:
    row = F.col("id")
    return spark.range(users * per_user).select(
        F.floor(row / F.lit(per_user)).cast("int").alias(t.USER_ID),
        F.pmod(F.xxhash64(row, F.lit(seed + 2)), F.lit(items)).cast("int").alias(t.MOVIE_ID),
    )


def numpy_reference(user_factors: DataFrame, item_factors: DataFrame, k: int, block_size: int):
    """Top-k on the driver: (user ids, movie ids, scores) as (n_users, k) arrays."""
    def matrix(df, id_col):
        table = df.select(id_col, FEATURES).toArrow()
        ids = table.column(id_col).to_numpy()
        features = table.column(FEATURES).combine_chunks()
        flat = features.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return ids, flat.reshape(len(ids), -1)

    users, u = matrix(user_factors, t.USER_ID)
    movies, v = matrix(item_factors, t.MOVIE_ID)
    kk = min(k, len(movies))
    top_movies = np.empty((len(users), kk), dtype=movies.dtype)
    top_scores = np.empty((len(users), kk), dtype=np.float32)
    for start in range(0, len(users), block_size):
        scores = u[start:start + block_size] @ v.T
        best = np.argpartition(scores, len(movies) - kk, axis=1)[:, len(movies) - kk:]
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1)
        top_movies[start:start + len(scores)] = movies[np.take_along_axis(best, order, axis=1)]
        top_scores[start:start + len(scores)] = np.take_along_axis(best_scores, order, axis=1)
    return users, top_movies, top_scores


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=60_000)
    p.add_argument("--items", type=int, default=25_000)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--ratings-per-user", type=int, default=20, help="synthetic ratings for the ALS fit")
    p.add_argument("--seen-per-user", type=int, default=100, help="seen items excluded in (c)")
    p.add_argument("--block-size", type=int, default=4096)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--profile", default="ml25m")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--skip-baseline", action="store_true",
                   help="skip (a), e.g. at sizes where it is too slow")
    args = p.parse_args(argv)
    configure_logging("bench-topk")
    spark = get_spark("movierec-bench-topk", load_config(args.profile),
                      extra={"spark.driver.memory": args.driver_memory})
    results: list = []

    ratings = synthetic_ratings(spark, args.users, args.items, args.ratings_per_user, args.seed)
    als = ALS(rank=args.rank, maxIter=1, regParam=0.1, seed=args.seed,
              userCol=t.USER_ID, itemCol=t.MOVIE_ID, ratingCol=t.RATING)
    model = timed("ALS fit (maxIter=1, setup only)", lambda: als.fit(ratings), results)
    user_factors = model.userFactors.withColumnRenamed("id", t.USER_ID)
    item_factors = model.itemFactors.withColumnRenamed("id", t.MOVIE_ID)
    n_users, n_items = user_factors.count(), item_factors.count()  # also materialises the factors
    seen = synthetic_seen(spark, args.users, args.items, args.seen_per_user, args.seed)

    if not args.skip_baseline:
        timed(BASELINE, lambda: materialise(model.recommendForAllUsers(args.k)), results)
    timed("(b) top_k, nothing excluded", lambda: materialise(
        top_k(user_factors, item_factors, None, args.k, block_size=args.block_size)), results)
    timed(f"(c) top_k, {args.seen_per_user} seen items per user excluded", lambda: materialise(
        top_k(user_factors, item_factors, seen, args.k, block_size=args.block_size)), results)
    timed("(d) NumPy BLAS on the driver, one process", lambda: numpy_reference(
        user_factors, item_factors, args.k, args.block_size), results)
    spark.stop()
    results.append((SGEMM, bare_sgemm(n_users, n_items, args.rank, args.block_size)))

    print(f"\n{n_users:,} users x {n_items:,} items x rank {args.rank}, k={args.k}, "
          f"block_size={args.block_size}; {os.cpu_count()} cores, profile {args.profile}\n")
    base = dict(results).get(BASELINE)
    gemm = dict(results)[SGEMM]
    print("| method | seconds | speed-up vs recommendForAllUsers | time vs bare sgemm |\n|---|---:|---:|---:|")
    for label, seconds in results:
        ratio = "" if base is None or label.startswith("ALS fit") else f"{base / seconds:.1f}x"
        floor = "" if label.startswith("ALS fit") else f"{seconds / gemm:.2f}x"
        print(f"| {label} | {seconds:.1f} | {ratio} | {floor} |")


if __name__ == "__main__":
    main(sys.argv[1:])
