"""Benchmark: top-K at a catalogue too big to broadcast to a small executor's Python workers.

    .venv/bin/python bench/topk_sliced.py --users 2000 --items 3000000 --rank 64 --python-memory 1500m

Random factors of the given shape; Python workers capped at --python-memory of address space
(spark.executor.pyspark.memory, which PySpark enforces with RLIMIT_AS). Runs, each result
materialised with a `noop` write:
  (a) top_k with the item factors broadcast (spark.movierec.topk.maxBroadcastMb set above their
      size): every worker needs a whole copy, so it is expected to fail here;
  (b) top_k with the limit at --slice-limit-mb: above it, it cuts the items into slices of at
      most half the limit (model/topk_blocked.py) and no process holds more than one.
Prints a Markdown table for docs/scaling.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.core.config import load_config
from movierec.core.spark import get_spark
from movierec.model.topk import FEATURES
from movierec.model.topk_blocked import MAX_BROADCAST_CONF, top_k_any_size


def factors(spark, n: int, rank: int, id_col: str, seed: int):
    return spark.range(1, n + 1).select(
        F.col("id").cast("int").alias(id_col),
        F.array(*[(F.rand(seed + i) - 0.5).cast("float") for i in range(rank)]).alias(FEATURES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=3_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--python-memory", default="1500m")
    parser.add_argument("--slice-limit-mb", type=float, default=256,
                        help="spark.movierec.topk.maxBroadcastMb for (b): slices of half this")
    args = parser.parse_args()
    cfg = load_config("local")
    spark = get_spark("bench-topk-sliced", cfg, {"spark.executor.pyspark.memory": args.python_memory})
    users = factors(spark, args.users, args.rank, t.USER_ID, 1).cache()
    items = factors(spark, args.items, args.rank, t.MOVIE_ID, 1000).cache()
    print(users.count(), "users", items.count(), "items")
    factors_mb = args.items * args.rank * 4 / 2**20
    rows = []
    runs = (("(a) broadcast", 10 * factors_mb),
            (f"(b) sliced (maxBroadcastMb={args.slice_limit_mb:g})", args.slice_limit_mb))
    for label, limit in runs:
        spark.conf.set(MAX_BROADCAST_CONF, str(limit))
        start = time.perf_counter()
        try:
            top_k_any_size(users, items, None, args.k).write.format("noop").mode("overwrite").save()
            outcome = "done"
        except Exception as e:   # the point of (a): report how it fails, then go on
            text = str(e)
            outcome = "failed: " + next((line.strip() for line in text.splitlines()
                                         if "MemoryError" in line or "Error" in line), text[:120])
        rows.append((label, time.perf_counter() - start, outcome))
        print(rows[-1], file=sys.stderr)
    print(f"\n{args.users:,} users x {args.items:,} items x rank {args.rank} (factors "
          f"{factors_mb:,.0f} MB), k={args.k}, Python workers capped at {args.python_memory}\n")
    print("| run | wall s | outcome |")
    print("|---|---:|---|")
    for label, seconds, outcome in rows:
        print(f"| {label} | {seconds:.1f} | {outcome[:160]} |")


if __name__ == "__main__":
    main()
