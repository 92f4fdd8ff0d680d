"""Benchmark: ingest and split, with baselines measured in the same run.

    .venv/bin/python bench/ingest_split.py --release ml-latest-small
    .venv/bin/python bench/ingest_split.py --release synthetic --scale ml-25m

Baselines: for ingest, a plain `spark.read.csv(schema)` -> Delta write of ratings.csv with no
validation, line numbers or quarantine (what validation costs); for split, the textbook global
`row_number()` over a window ordered by (ts, user, movie), which Spark runs in one partition.
Prints a Markdown table for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from pyspark.sql import Window
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config, project_root
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark
from movierec.data import ingest, split, synthetic

ROOT = project_root()


def _peak_rss_gib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def timed(label: str, fn, results: list, rows: int | None = None):
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    results.append((label, rows, seconds))
    logging.info("%s: %.1fs", label, seconds)
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", default="ml-latest-small", help="ml-latest-small (../shared) or synthetic")
    p.add_argument("--scale", default="ml-25m", help="synthetic scale")
    p.add_argument("--work", default=str(ROOT / "work" / "bench"))
    p.add_argument("--profile", default="ml25m")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--skip-baselines", action="store_true")
    args = p.parse_args(argv)
    configure_logging("bench")
    work = Path(args.work)
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    results: list = []
    if args.release == "synthetic":
        source = work / f"synthetic-{args.scale}"
        if not (source / "ratings.csv").is_file():
            summary = timed("generate synthetic release", lambda: synthetic.generate(source, args.scale), results)
            results[-1] = (results[-1][0], summary["n_ratings"], results[-1][2])
    else:
        source = (ROOT / ".." / "shared" / "data" / args.release).resolve()
    cfg = load_config(args.profile, [f"lake={lake}", f"ingest.source={source}"])
    spark = get_spark("movierec-bench", cfg, extra={"spark.driver.memory": args.driver_memory})
    jvm_pid = spark.sparkContext._jvm.ProcessHandle.current().pid()

    result = timed("ingest (validate, quarantine, 4-6 Delta tables)", lambda: ingest.run(spark, cfg), results)
    n = next(f.read for f in result.files if f.table == t.RATINGS)
    results[-1] = (results[-1][0], result.rows_read, results[-1][2])
    timed("split (cutoffs, 3 tables, cold-start report)", lambda: split.run(spark, cfg), results, n)

    if not args.skip_baselines:
        schema = "userId int, movieId int, rating float, timestamp long"
        plain = lambda: (spark.read.csv(str(source / "ratings.csv"), header=True, schema=schema)  # noqa: E731
                         .write.format("delta").mode("overwrite").save(str(work / "baseline_ratings")))
        timed("baseline: plain CSV -> Delta of ratings.csv", plain, results, n)
        ratings = delta_io.read(spark, lake, t.RATINGS)
        w = Window.orderBy(t.TS, t.USER_ID, t.MOVIE_ID)
        naive = lambda: (ratings.withColumn("pos", F.row_number().over(w))  # noqa: E731
                         .withColumn("part", F.when(F.col("pos") <= round(n * .7), "train")
                                     .when(F.col("pos") <= round(n * .9), "test").otherwise("buffer"))
                         .write.format("delta").mode("overwrite").partitionBy("part")
                         .save(str(work / "baseline_split")))
        timed("baseline: split by global row_number window", naive, results, n)
    peak = _peak_rss_gib(jvm_pid)
    spark.stop()

    print(f"\nrelease: {args.release} {args.scale if args.release == 'synthetic' else ''}; "
          f"{os.cpu_count()} cores; driver JVM peak RSS {peak:.1f} GiB\n")
    print("| stage | rows | seconds | rows/s |\n|---|---:|---:|---:|")
    for label, rows, seconds in results:
        rate = f"{rows / seconds:,.0f}" if rows else ""
        print(f"| {label} | {rows or '':,} | {seconds:.1f} | {rate} |" if rows else
              f"| {label} | | {seconds:.1f} | |")
    base = {label: s for label, _, s in results}
    for ours, theirs in (("ingest", "baseline: plain CSV"), ("split", "baseline: split")):
        a = next((s for k, s in base.items() if k.startswith(ours)), None)
        b = next((s for k, s in base.items() if k.startswith(theirs)), None)
        if a and b:
            print(f"\n{ours}: {a / b:.2f}x the baseline's time")


if __name__ == "__main__":
    main(sys.argv[1:])
