"""Benchmark: the fixed cost of one small Delta commit and read, by snapshotPartitions.

    .venv/bin/python bench/delta_commit.py --rows 2000 --repeats 10 --rounds 3

Every job writes and reads many small tables (splits, metrics, gate decisions, runs), so the
cost that does not depend on the rows dominates them. In one Spark session, rounds alternate
spark.databricks.delta.snapshotPartitions between the values given, timing an overwrite and a
count of a --rows table; the baseline is the same overwrite and count as plain Parquet in the
same session. Prints a Markdown table for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from movierec.core.config import load_config
from movierec.core.spark import get_spark

SETTING = "spark.databricks.delta.snapshotPartitions"


def per_call(repeats: int, call) -> float:
    start = time.perf_counter()
    for i in range(repeats):
        call(i)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--partitions", default="1,2", help="snapshotPartitions values to compare")
    args = p.parse_args()
    spark = get_spark("bench-delta-commit", load_config("local"), extra={"spark.ui.enabled": "false"})
    df = spark.range(args.rows).selectExpr("id AS user_id", "id % 97 AS movie_id",
                                           "CAST(id % 5 AS FLOAT) AS rating")
    root = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    tables = [str(root / f"t{i}") for i in range(4)]   # a few tables, as a job touches them

    def delta_write(i):
        df.write.format("delta").mode("overwrite").save(tables[i % 4])

    def delta_count(i):
        spark.read.format("delta").load(tables[i % 4]).count()

    def parquet_write(i):
        df.write.mode("overwrite").parquet(tables[i % 4] + ".parquet")

    def parquet_count(i):
        spark.read.parquet(tables[i % 4] + ".parquet").count()

    for i in range(8):   # warm the JVM and create every table
        delta_write(i), parquet_write(i)
    values = args.partitions.split(",")
    got: dict[str, list[tuple[float, float]]] = {v: [] for v in values + ["parquet"]}
    for _ in range(args.rounds):
        for v in values:
            spark.conf.set(SETTING, v)
            got[v].append((per_call(args.repeats, delta_write), per_call(args.repeats, delta_count)))
        got["parquet"].append((per_call(args.repeats, parquet_write), per_call(args.repeats, parquet_count)))
    base_w = statistics.median(w for w, _ in got["parquet"])
    print(f"| table ({args.rows:,} rows) | overwrite s (median of {args.rounds}) | x Parquet | count s | runs |")
    print("|---|---:|---:|---:|---|")
    for name, runs in got.items():
        w, c = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        label = "Parquet (baseline)" if name == "parquet" else f"Delta, snapshotPartitions {name}"
        print(f"| {label} | {w:.3f} | {w / base_w:.1f}x | {c:.3f} | "
              f"{', '.join(f'{r[0]:.2f}' for r in runs)} |")
    spark.stop()


if __name__ == "__main__":
    main()
