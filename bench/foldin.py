"""Benchmark: fold-in against a full refit of the served model, for quality and for time.

    .venv/bin/python bench/foldin.py --lake LAKE [--profile test] [--time-only] [--set KEY=VALUE]

LAKE holds ratings_train / ratings_test (and ratings_buffer for the timing), e.g. the lake of
`make run` or of `bench/ingest_split.py --release synthetic --scale ml-25m`. Every fit is the
served model (train.served_model and what it requires) with the first point of each of the
profile's grids, so both sides use the same parameters.

Quality, on the backtest: the test period is cut in two halves at its median timestamp, A then
B. "refit" is the served model fitted on train + A; "fold-in" is the one fitted on train, with
every user who rated in A folded in on all of their train + A ratings (FittedHybrid.fold_in,
what recommend does between retrains), trending and history as of train + A; "stale" is the
train fit left alone (A's users keep their old factors, A's new users get the fallback). Each
scores its top-K (train + A excluded) on B's relevant ratings, per user; the table has the mean
NDCG@K, the user counts and the paired differences with 95% bootstrap intervals over users.

Time (--time-only skips the quality half): on the ratings known at the initial load (train +
test), the first buffer week arrives; "fold-in" is FittedHybrid.fold_in of that week's users
against the model fitted on train + test, "refit" is the served model fitted on train + test +
the week. Not a test: run on demand, results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark
from movierec.data.known import initial_load
from movierec.model import catalog
from movierec.model.base import seen_pairs
from movierec.model.gate import bootstrap_interval
from movierec.model.hybrid import FittedHybrid
from movierec.model.metrics import per_user_scores

log = logging.getLogger("bench.foldin")


def first_params(models) -> dict[str, dict]:
    return {name: (m.grid() or [{}])[0] for name, m in models.items()}


def fit_served(models, served: str, ratings: DataFrame, params) -> FittedHybrid:
    return catalog.fit_all(models, ratings, params)[served]


def folded(base: FittedHybrid, params: dict, history: DataFrame, changed: DataFrame,
           min_rating: float) -> tuple[FittedHybrid, int]:
    """`base`'s ALS and trending, history `history`, the users of `changed` folded in on all
    their ratings in `history`."""
    als = params["als_implicit"]
    model = FittedHybrid(base.als, base.trend, history, base.params,
                         {"regParam": als["regParam"], "alpha": als["alpha"], "min_rating": min_rating})
    return model, model.fold_in(history.join(changed, t.USER_ID, "left_semi"))


def seconds(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def quality(spark, cfg, models, served, params, k: int, resamples: int) -> None:
    lake, threshold = cfg.path("lake"), cfg.train.relevant_threshold
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN).persist(StorageLevel.MEMORY_AND_DISK)
    test = delta_io.read(spark, lake, t.RATINGS_TEST)
    middle = test.select(F.percentile_approx(F.unix_seconds(t.TS), 0.5)).first()[0]
    a = test.where(F.unix_seconds(t.TS) < middle)
    b = test.where(F.unix_seconds(t.TS) >= middle)
    known = train.unionByName(a).persist(StorageLevel.MEMORY_AND_DISK)
    changed = a.select(t.USER_ID).distinct()
    users = b.where(F.col(t.RATING) >= threshold).select(t.USER_ID).distinct()
    log.info("train %d, A %d, B %d ratings; %d users rated in A, %d have a relevant B rating",
             train.count(), a.count(), b.count(), changed.count(), users.count())
    stale, t_stale = seconds(lambda: fit_served(models, served, train, params))
    refit, t_refit = seconds(lambda: fit_served(models, served, known, params))
    (fold, n_folded), t_fold = seconds(lambda: folded(stale, params, known, changed,
                                                      cfg.train.implicit.min_rating))
    stale_now = FittedHybrid(stale.als, stale.trend, known, stale.params)   # history as of A
    scores = {}
    for name, model in (("refit", refit), ("fold-in", fold), ("stale", stale_now)):
        lists = model.recommend(users, k, seen_pairs(known))
        scores[name] = per_user_scores(lists, b, k, "ndcg", relevant_threshold=threshold) \
            .withColumnRenamed("score", name)
    table = (scores["refit"].join(scores["fold-in"], t.USER_ID).join(scores["stale"], t.USER_ID)
             .join(changed.withColumn("changed", F.lit(True)), t.USER_ID, "left")
             .fillna(False, ["changed"]).toPandas())
    print(f"\nfits: train {t_stale:.1f} s, train + A {t_refit:.1f} s; fold-in of {n_folded:,} "
          f"users {t_fold:.1f} s (lazy parts included in the scoring below)\n")
    print(f"| users scored on B | n | NDCG@{k} refit | fold-in | stale | fold-in - refit [95% CI] "
          "| fold-in - stale [95% CI] |")
    print("|---|---:|---:|---:|---:|---|---|")
    for label, part in (("all", table), ("rated in A (folded in)", table[table["changed"]]),
                        ("not in A", table[~table["changed"]])):
        if part.empty:
            continue
        cells = [f"{part[c].mean():.4f}" for c in ("refit", "fold-in", "stale")]
        for x, y in (("fold-in", "refit"), ("fold-in", "stale")):
            d = (part[x] - part[y]).to_numpy(dtype=float)
            lo, hi = bootstrap_interval(d, resamples=resamples, seed=cfg.train.seed)
            cells.append(f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")
        print(f"| {label} | {len(part):,} | " + " | ".join(cells) + " |")
    train.unpersist()
    known.unpersist()


def timing(spark, cfg, models, served, params) -> None:
    lake = cfg.path("lake")
    known = initial_load(spark, lake).persist(StorageLevel.MEMORY_AND_DISK)
    week = (delta_io.read(spark, lake, t.RATINGS_BUFFER).where(F.col(t.BATCH_WEEK) == 1)
            .select(*known.columns).persist())
    n_known, n_week = known.count(), week.count()
    changed = week.select(t.USER_ID).distinct().persist()
    n_changed = changed.count()
    tonight = known.unionByName(week).persist(StorageLevel.MEMORY_AND_DISK)
    tonight.count()
    base, t_base = seconds(lambda: fit_served(models, served, known, params))
    (fold, n_folded), t_fold = seconds(lambda: folded(base, params, tonight, changed,
                                                      cfg.train.implicit.min_rating))
    _, t_refit = seconds(lambda: fit_served(models, served, tonight, params))
    print(f"\nknown {n_known:,} ratings + buffer week 1 {n_week:,} ratings by {n_changed:,} users\n")
    print("| step | users | seconds |\n|---|---:|---:|")
    print(f"| fit on the known ratings (the model tonight's fold-in starts from) | | {t_base:.1f} |")
    print(f"| fold-in of the week's users (solve + factors persisted) | {n_folded:,} | {t_fold:.1f} |")
    print(f"| full refit on known + the week | | {t_refit:.1f} |")
    print(f"| **refit / fold-in** | | **{t_refit / t_fold:.1f}x** |")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lake", required=True)
    p.add_argument("--profile", default="test")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--resamples", type=int, default=5000)
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--time-only", action="store_true")
    p.add_argument("--quality-only", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.implicit.rank_grid=[64] for the CV's choice")
    args = p.parse_args(argv)
    configure_logging("bench.foldin")
    cfg = load_config(args.profile, [f"lake={args.lake}", *args.overrides])
    spark = get_spark("bench-foldin", cfg, extra={"spark.driver.memory": args.driver_memory})
    served = cfg.train.served_model
    models = catalog.with_requirements(dict(catalog.build(cfg)), served)
    params = first_params(models)
    print(f"served model {served}; parameters {params}")
    np.random.seed(cfg.train.seed)
    if not args.time_only:
        quality(spark, cfg, models, served, params, args.k, args.resamples)
    if not args.quality_only:
        timing(spark, cfg, models, served, params)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
