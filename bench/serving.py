"""Benchmark: publishing recommendations to PostgreSQL, and point queries while serving.

    .venv/bin/python bench/serving.py --users 162541 --k 100          # ML-25M-sized table
    .venv/bin/python bench/serving.py --lake /path/to/lake            # a real recommendations_latest

Measures, on the embedded server (or MOVIEREC_PG_* if set):
  (a) movierec.serve.pg_publish.publish_table: staging load by COPY streams from the Spark
      partitions, primary key + index build, ANALYZE, atomic swap;
  (b) the same with Spark's JDBC writer (batched inserts);
  (c) baseline: the same rows written to one CSV file first, then one plain `COPY ... FROM` that
      file into an unindexed table (what PostgreSQL can ingest at best, single stream);
  (d) one user's top 10 (docs/queries.sql top10_for_user) from --readers concurrent readers for
      --seconds: p50 / p99 latency and queries per second.
Prints a Markdown table for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark
from movierec.serve import pg_publish, pg_schema, pg_settings
from movierec.serve import serving_sql

log = logging.getLogger("bench.serving")


def synthetic_recs(spark, users: int, k: int, movies: int = 59_047):
    row = F.col("id")
    return spark.range(users * k).select(
        (F.floor(row / k) + 1).cast("int").alias(t.USER_ID), (row % k + 1).cast("int").alias(t.RANK),
        (F.pmod(F.xxhash64(row), F.lit(movies)) + 1).cast("int").alias(t.MOVIE_ID),
        (F.lit(10.0) - (row % k) / 10).cast("float").alias(t.SCORE),
        F.lit("1").alias(t.MODEL_VERSION), F.lit("2026-11-22").cast("date").alias(t.RUN_DATE))


def plain_copy(rows, settings, folder: Path) -> tuple[float, float]:
    """(seconds to write the CSV, seconds to COPY it) into an unindexed table."""
    path = folder / "recs.csv"
    t0 = time.perf_counter()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        for batch in rows.toLocalIterator(prefetchPartitions=True):
            writer.writerow(batch)
    written = time.perf_counter() - t0
    columns = ", ".join(f"{c} {ty}" for c, ty in pg_schema.RECOMMENDATIONS.columns)
    with pg_settings.connect(settings) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_plain_copy")
        conn.execute(f"CREATE TABLE bench_plain_copy ({columns})")
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_plain_copy FROM STDIN (FORMAT csv)") as copy, \
                path.open("rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        copied = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_plain_copy")
    return written, copied


def point_queries(settings, users: list[int], readers: int, seconds: float) -> np.ndarray:
    query = serving_sql.to_psycopg(serving_sql.load_queries(
        Path(__file__).resolve().parents[1] / "docs" / "queries.sql")["top10_for_user"])
    latencies: list[list[float]] = [[] for _ in range(readers)]
    stop = time.perf_counter() + seconds

    def reader(i: int) -> None:
        rng = random.Random(i)
        with pg_settings.connect(settings) as conn:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                rows = conn.execute(query, {"user_id": rng.choice(users)}).fetchall()
                latencies[i].append(time.perf_counter() - t0)
                assert len(rows) == 10

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return np.array([x for per in latencies for x in per])


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lake", help="publish this lake's recommendations_latest (else synthetic rows)")
    p.add_argument("--users", type=int, default=162_541)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--readers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--profile", default="ml25m")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--skip-jdbc", action="store_true")
    args = p.parse_args(argv)
    configure_logging("bench-serving")
    cfg = load_config(args.profile, [f"lake={args.lake}"] if args.lake else [])
    spark = get_spark("movierec-bench-serving", cfg, extra={"spark.driver.memory": args.driver_memory})
    settings = pg_settings.connection_settings(cfg)
    if args.lake:
        rows = serving_sql.served(delta_io.read(spark, cfg.path("lake"), t.RECOMMENDATIONS_LATEST))
    else:
        rows = synthetic_recs(spark, args.users, args.k)
    rows = rows.repartition(spark.sparkContext.defaultParallelism).cache()
    n = rows.count()
    results = []

    def timed(label, fn):
        t0 = time.perf_counter()
        fn()
        results.append((label, time.perf_counter() - t0))
        log.info("%s: %.1fs (%.0f rows/s)", label, results[-1][1], n / results[-1][1])

    if not args.skip_jdbc:
        timed("(b) publish, JDBC batched inserts", lambda: pg_publish.publish_table(rows, pg_schema.RECOMMENDATIONS, settings, method="jdbc"))
    timed("(a) publish, COPY streams (default)", lambda: pg_publish.publish_table(rows, pg_schema.RECOMMENDATIONS, settings))
    with tempfile.TemporaryDirectory() as tmp:
        written, copied = plain_copy(rows.select(*[c for c, _ in pg_schema.RECOMMENDATIONS.columns]), settings, Path(tmp))
    results.append(("(c) baseline: plain COPY of a CSV file, no keys (COPY only)", copied))
    log.info("CSV file written in %.1fs (not counted); COPY %.1fs", written, copied)
    users = [r[0] for r in rows.select(t.USER_ID).distinct().limit(50_000).collect()]
    lat = point_queries(settings, users, args.readers, args.seconds)
    print(f"\n{n:,} rows; machine: 2 cores; readers {args.readers} for {args.seconds:g}s\n")
    print("| step | seconds | rows/s | vs plain COPY |\n|---|---:|---:|---:|")
    for label, seconds in results:
        print(f"| {label} | {seconds:.1f} | {n / seconds:,.0f} | {copied / seconds:.2f}x |")
    print(f"\n| top-10 point query, {args.readers} readers | p50 ms | p99 ms | queries/s |\n|---|---:|---:|---:|")
    print(f"| top10_for_user | {np.percentile(lat, 50) * 1e3:.2f} | {np.percentile(lat, 99) * 1e3:.2f} | "
          f"{len(lat) / args.seconds:,.0f} |")
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
