"""Benchmark: what Spark's defaults cost on small data (the suite's and `make run`'s sizes).

    .venv/bin/python bench/small_data.py --rounds 3

In one local[2] session, rounds alternate the order of the settings compared, after one warm-up
round, and report the median per call with the ratio to Spark's default measured in the same
rounds:
  - ALS user and item blocks (train.als_blocks): 10 (Spark's default) against 2 (one per core),
    explicit and implicit, rank 16, 5 iterations, on ml-latest-small's ratings (else a
    synthetic release of --scale ratings);
  - the session settings of the test profile (spark.session_conf: no whole-stage codegen, no
    adaptive re-planning) against none, on ingest + split of a synthetic release of --scale
    ratings into a fresh lake: the many small queries and Delta commits the jobs run.
CPU is the machine's busy time from /proc/stat (run it on an idle machine). Prints Markdown
tables for docs/benchmarks.md. Not a test: run on demand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from movierec.core.config import load_config
from movierec.core.spark import get_spark
from movierec.data import ingest, split, synthetic
from movierec.model.als import fit_als, implicit_feedback

ML_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def busy_cpu_s() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / 100   # all but idle and iowait, in seconds


def timed(call) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), busy_cpu_s()
    call()
    return time.perf_counter() - wall, busy_cpu_s() - cpu


def compare(variants: dict, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """{name: [(wall, cpu) per round]}, after a warm-up round; odd rounds run in reverse order."""
    for call in variants.values():
        call()
    got: dict[str, list] = {name: [] for name in variants}
    for r in range(rounds):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            got[name].append(timed(variants[name]))
    return got


def table(title: str, got: dict, baseline: str) -> None:
    base = statistics.median(w for w, _ in got[baseline])
    print(f"\n| {title} | wall s (median) | x default | busy cpu-s (median) | walls |")
    print("|---|---:|---:|---:|---|")
    for name, runs in got.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(f"| {name} | {wall:.2f} | {wall / base:.2f}x | {cpu:.1f} | "
              f"{', '.join(f'{w:.2f}' for w, _ in runs)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scale", type=int, default=20_000, help="ratings of the synthetic release")
    args = p.parse_args()
    cfg = load_config("test")
    spark = get_spark("bench-small-data", cfg, extra={"spark.ui.enabled": "false"})
    root = Path(tempfile.mkdtemp(prefix="bench-small-"))
    synthetic.generate(root / "release", scale=args.scale, seed=7)

    def session_conf(on: bool) -> None:
        for setting in cfg["spark.session_conf"]:
            key, value = setting.split("=", 1)
            spark.conf.set(key, value) if on else spark.conf.unset(key)

    runs = iter(range(10**6))

    def ingest_split(on: bool):
        def call():
            session_conf(on)
            lake = root / f"lake{next(runs)}"
            run_cfg = cfg.with_overrides({"lake": str(lake), "ingest.source": str(root / "release")})
            ingest.run(spark, run_cfg)
            split.run(spark, run_cfg, "2026-01-01")
        return call

    table(f"ingest + split, {args.scale:,} synthetic ratings",
          compare({"Spark's defaults": ingest_split(False),
                   "test profile: " + ", ".join(cfg["spark.session_conf"]): ingest_split(True)},
                  args.rounds), "Spark's defaults")

    session_conf(False)   # the blocks are compared under Spark's own settings
    source = ML_SMALL if (ML_SMALL / "ratings.csv").is_file() else root / "release"
    ratings = (spark.read.option("header", True).option("inferSchema", True).csv(str(source / "ratings.csv"))
               .selectExpr("userId AS user_id", "movieId AS movie_id", "CAST(rating AS FLOAT) AS rating")
               .cache())
    n = ratings.count()
    liked = implicit_feedback(ratings, 4.0).cache()
    liked.count()

    def fit(blocks: int, implicit: bool):
        data = liked if implicit else ratings
        return lambda: fit_als(data, rank=16, reg=0.1, max_iter=5, seed=1, implicit=implicit,
                               alpha=10.0, blocks=blocks).userFactors.count()

    for implicit in (False, True):
        kind = "implicit" if implicit else "explicit"
        table(f"{kind} ALS fit, {n:,} ratings of {source.name}",
              compare({"10 blocks (Spark's default)": fit(10, implicit), "2 blocks": fit(2, implicit)},
                      args.rounds), "10 blocks (Spark's default)")
    spark.stop()


if __name__ == "__main__":
    main()
