"""Benchmark: implicit-feedback ALS, Spark MLlib against the `implicit` library's CPU solvers.

    .venv/bin/python bench/als_vs_implicit.py --lake work/bench-pipeline/lake    # a lake's ratings_train
    .venv/bin/python bench/als_vs_implicit.py --ratings 1000000 --profile local --driver-memory 6g

Needs the `bench` extra (`pip install -e '.[bench]'`). The same positives feed every fit: the
ratings at or above train.implicit.min_rating (als.implicit_feedback: strength 1), minus a
held-out slice (--holdout of the positives of each user with 5 or more, seeded). Every fit has
the same rank, iterations and alpha, confidence 1 + alpha * r, and 2 threads:
  (a) Spark MLlib ALS, implicitPrefs=True, through movierec.model.als.fit_als (the project's call);
      master from the profile (local[2] for ml25m);
  (b) implicit.cpu.als.AlternatingLeastSquares, use_cg=False: an exact Cholesky solve per row,
      like Spark's;
  (c) the same with use_cg=True: 3 conjugate-gradient steps per row, warm-started;
  (d) the project's own CG solver on Spark (movierec.model.als_cg, train.implicit.solver=cg):
      Spark's objective (regParam x positives per row, no mapping), 3 CG steps per row.
The confidence matrix is handed to implicit as 1 + alpha * r with its own alpha at 1, because
implicit reads the matrix value itself as the confidence c_ui (and 1 for absent pairs).
Regularization: Spark's ALS-WR multiplies regParam by the number of positives of the row being
solved (lambda * n_u for a user, lambda * n_i for an item); implicit adds one constant to every
row. With --reg-mapping scaled (default) implicit gets regParam * sqrt(m_u * m_i), where
m_u = sum(n_u^2) / nnz is the n_u that Spark's penalty has on average over the positives (each
positive counted with its user's weight) and m_i the same for items: one constant as strong as
Spark's where the data is. The plain mean count (nnz / users) is far weaker on heavy-tailed data:
on the medium synthetic lake (14k users, 786k positives) it gave 56 against this mapping's 484,
and precision@10 0.027 against Spark's 0.040, while 200..5000 all gave 0.040.
--reg-mapping same passes regParam unchanged (weaker still).
Timed: the fit alone, after the data is cached (Spark) or in CSR (implicit), and after one
untimed warm-up fit of each (maxIter 1: JIT, thread pools). Quality: precision@10 on the
held-out positives for up to --eval-users users, fit positives excluded, from each model's
factors scored the same way in NumPy, with most-popular as the floor a working fit must beat.
Prints a Markdown table for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark
from movierec.data import synthetic
from movierec.model import als, als_cg
from movierec.model.topk import FEATURES

log = logging.getLogger("bench.als_vs_implicit")
SPARK = "(a) Spark MLlib ALS, implicitPrefs"
OURS = "(d) movierec als_cg: Spark's objective, 3 CG steps per row, on Spark"
MIN_POSITIVES_TO_HOLD_OUT = 5


def load_ratings(spark, lake: str | None, n_ratings: int, seed: int) -> tuple[pd.DataFrame, str]:
    """(user_id, movie_id, rating) of a lake's ratings_train, or of a synthetic release."""
    if lake:
        lake_path = Path(lake).resolve()
        df = delta_io.read(spark, lake_path, t.RATINGS_TRAIN).select(t.USER_ID, t.MOVIE_ID, t.RATING).toPandas()
        return df, f"ratings_train of {lake_path}"
    with tempfile.TemporaryDirectory() as tmp:
        synthetic.generate(Path(tmp), scale=n_ratings, seed=seed)
        table = pacsv.read_csv(Path(tmp) / "ratings.csv", convert_options=pacsv.ConvertOptions(
            include_columns=["userId", "movieId", "rating"]))
    df = table.to_pandas().rename(columns={"userId": t.USER_ID, "movieId": t.MOVIE_ID, "rating": t.RATING})
    return df, f"synthetic release of {n_ratings:,} ratings (seed {seed})"


def split_positives(ratings: pd.DataFrame, min_rating: float, holdout: float, seed: int):
    """Positives as dense codes (user, item) for fitting and for holding out; the shape."""
    pos = ratings[ratings[t.RATING] >= min_rating]
    users, user = np.unique(pos[t.USER_ID].to_numpy(), return_inverse=True)
    items, item = np.unique(pos[t.MOVIE_ID].to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(user)), user))   # each user's positives in random order
    user, item = user[order].astype(np.int32), item[order].astype(np.int32)
    counts = np.bincount(user, minlength=len(users))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(user)) - starts[user]
    held = np.where(counts >= MIN_POSITIVES_TO_HOLD_OUT, np.maximum(1, np.round(counts * holdout)), 0)
    out = position < held[user]
    return (user[~out], item[~out]), (user[out], item[out]), (len(users), len(items))


def spark_weight(fit, shape) -> float:
    """sqrt(m_u * m_i), m = sum(n^2) / nnz: the mean over positives of Spark's per-row count."""
    n_u = np.bincount(fit[0], minlength=shape[0]).astype(np.float64)
    n_i = np.bincount(fit[1], minlength=shape[1]).astype(np.float64)
    nnz = len(fit[0])
    return float(np.sqrt((n_u ** 2).sum() / nnz * (n_i ** 2).sum() / nnz))


def timed(label: str, fn, results: dict):
    t0 = time.perf_counter()
    out = fn()
    results[label] = time.perf_counter() - t0
    log.info("%s: %.1fs", label, results[label])
    return out


def spark_fits(spark, fit, shape, args, results: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(a) and (d), on the same cached positives."""
    df = spark.createDataFrame(pd.DataFrame({
        t.USER_ID: fit[0], t.MOVIE_ID: fit[1], t.RATING: np.ones(len(fit[0]), dtype=np.float32)}))
    df = df.repartition(spark.sparkContext.defaultParallelism).cache()
    df.count()
    params = dict(rank=args.rank, reg=args.reg, seed=args.seed, alpha=args.alpha)
    fits = {SPARK: lambda n: als.fit_als(df, max_iter=n, implicit=True, blocks=args.blocks, **params),
            OURS: lambda n: als_cg.fit_cg(df, max_iter=n, implicit=True, **params)}
    out = {}
    for label, fit_for in fits.items():
        fit_for(1)   # warm-up, not timed (JIT, Python workers)
        out[label] = dense_factors(timed(label, lambda: fit_for(args.max_iter), results), shape, args.rank)
    df.unpersist()
    return out


def dense_factors(model, shape, rank: int) -> tuple[np.ndarray, np.ndarray]:
    user_f, item_f = als.factors(model)
    out = []
    for factors, id_col, n in ((user_f, t.USER_ID, shape[0]), (item_f, t.MOVIE_ID, shape[1])):
        table = factors.toArrow()
        ids = table.column(id_col).to_numpy()
        flat = table.column(FEATURES).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        dense = np.zeros((n, rank), dtype=np.float32)
        dense[ids] = flat.astype(np.float32).reshape(len(ids), rank)
        out.append(dense)
    return out[0], out[1]


def implicit_fit(label: str, use_cg: bool, user_items, reg: float, args, results: dict):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    def make(iterations: int):
        return AlternatingLeastSquares(factors=args.rank, regularization=reg, alpha=1.0,
                                       iterations=iterations, use_cg=use_cg, num_threads=args.threads,
                                       random_state=args.seed)
    # implicit runs its own threads; a multi-threaded BLAS under them only oversubscribes
    with threadpool_limits(1, "blas"):
        make(1).fit(user_items, show_progress=False)   # warm-up, not timed
        model = make(args.max_iter)
        timed(label, lambda: model.fit(user_items, show_progress=False), results)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def precision_at(k: int, scores_of, fit, held, shape, n_users: int, seed: int) -> float:
    """Mean share of each sampled user's top k (fit positives excluded) that they held out."""
    from scipy.sparse import csr_matrix

    seen = csr_matrix((np.ones(len(fit[0]), dtype=np.int8), fit), shape=shape)
    truth = csr_matrix((np.ones(len(held[0]), dtype=np.int8), held), shape=shape)
    users = np.unique(held[0])
    users = np.sort(np.random.default_rng(seed).choice(users, min(n_users, len(users)), replace=False))
    hits = 0
    for start in range(0, len(users), 1024):
        block = users[start:start + 1024]
        scores = scores_of(block)
        rows, cols = seen[block].nonzero()
        scores[rows, cols] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        hits += int(np.take_along_axis(truth[block].toarray(), top, axis=1).sum())
    return hits / (k * len(users))


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", help="use this lake's ratings_train (else synthetic ratings)")
    p.add_argument("--ratings", default="1000000", help="synthetic ratings when no --lake")
    p.add_argument("--profile", default="ml25m", help="Spark master and the defaults below")
    p.add_argument("--rank", type=int, help="default: first of train.implicit.rank_grid")
    p.add_argument("--reg", type=float, help="Spark regParam; default: first of train.implicit.reg_grid")
    p.add_argument("--alpha", type=float, help="default: first of train.implicit.alpha_grid")
    p.add_argument("--max-iter", type=int, help="default: train.implicit.max_iter")
    p.add_argument("--reg-mapping", choices=("scaled", "same"), default="scaled")
    p.add_argument("--threads", type=int, default=2, help="implicit's threads (Spark: the profile's master)")
    p.add_argument("--holdout", type=float, default=0.1)
    p.add_argument("--eval-users", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--blocks", type=int, help="Spark ALS user and item blocks; default: train.als_blocks")
    args = p.parse_args(argv)
    configure_logging("bench-als-vs-implicit")
    cfg = load_config(args.profile)
    args.rank = args.rank or cfg["train.implicit.rank_grid"][0]
    args.reg = args.reg if args.reg is not None else cfg["train.implicit.reg_grid"][0]
    args.alpha = args.alpha if args.alpha is not None else cfg["train.implicit.alpha_grid"][0]
    args.max_iter = args.max_iter or cfg["train.implicit.max_iter"]
    args.blocks = args.blocks if args.blocks is not None else cfg["train.als_blocks"]
    spark = get_spark("movierec-bench-als-vs-implicit", cfg, extra={"spark.driver.memory": args.driver_memory})
    ratings, what = load_ratings(spark, args.lake, int(float(args.ratings)), args.seed)
    fit, held, shape = split_positives(ratings, cfg["train.implicit.min_rating"], args.holdout, args.seed)
    nnz = len(fit[0])
    implicit_reg = args.reg * spark_weight(fit, shape) if args.reg_mapping == "scaled" else args.reg
    log.info("%s: %s positives to fit, %s held out, %s users x %s movies; implicit regularization %.1f",
             what, f"{nnz:,}", f"{len(held[0]):,}", f"{shape[0]:,}", f"{shape[1]:,}", implicit_reg)

    from scipy.sparse import csr_matrix

    user_items = csr_matrix((np.full(nnz, 1.0 + args.alpha, dtype=np.float32), fit), shape=shape)
    results: dict[str, float] = {}
    factors = spark_fits(spark, fit, shape, args, results)
    spark.stop()
    for label, use_cg in ((f"(b) implicit CPU ALS, Cholesky (use_cg=False), {args.threads} threads", False),
                          (f"(c) implicit CPU ALS, conjugate gradient (use_cg=True), {args.threads} threads", True)):
        factors[label] = implicit_fit(label, use_cg, user_items, implicit_reg, args, results)

    k = 10
    quality = {label: precision_at(k, lambda b, u=u, v=v: u[b] @ v.T, fit, held, shape, args.eval_users, args.seed)
               for label, (u, v) in factors.items()}
    popularity = np.bincount(fit[1], minlength=shape[1]).astype(np.float32)
    floor = precision_at(k, lambda b: np.tile(popularity, (len(b), 1)), fit, held, shape, args.eval_users, args.seed)

    print(f"\n{what}: {nnz:,} positives (rating >= {cfg['train.implicit.min_rating']}) to fit, "
          f"{len(held[0]):,} held out; {shape[0]:,} users x {shape[1]:,} movies. rank {args.rank}, "
          f"{args.max_iter} iterations, Spark blocks {args.blocks or 10}, alpha {args.alpha:g} (confidence 1 + alpha * r), Spark regParam "
          f"{args.reg:g} (x positives per row), implicit regularization {implicit_reg:.1f} "
          f"({args.reg_mapping}); Spark master {spark_master(cfg)}, implicit {args.threads} threads; "
          f"{os.cpu_count()} cores\n")
    base = results[SPARK]
    print(f"| method | seconds | Spark / this | precision@{k} held out |\n|---|---:|---:|---:|")
    for label, seconds in results.items():
        shown = f"{seconds:.1f}" if seconds >= 1 else f"{seconds:.2f}"
        print(f"| {label} | {shown} | {base / seconds:.2f}x | {quality[label]:.4f} |")
    print(f"| most popular (no fit, the floor) | | | {floor:.4f} |")


def spark_master(cfg) -> str:
    return cfg["spark.master"] or "spark-defaults.conf"


if __name__ == "__main__":
    main(sys.argv[1:])
