"""The nightly loop through the real jobs, and its invariants after every night (on demand).

    python bench/nightly_loop.py --source ../shared/data/ml-latest-small --work /tmp/loop

runs `spark-submit jobs/pipeline.py` for the initial load, then per night `ingest_increment`,
`detect_drift`, `train_als --mode refit`, `recommend` and `smoke_check`, and after each run date
prints: users with a known rating, users with exactly K rows, rows naming a movie the user has
rated in any known rating, users whose first rating arrived that night and how many of them got
a personal (model) list, the gate's training cutoff and window, and serving_metrics.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))


def spark_submit(job: str, args: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(["spark-submit", f"jobs/{job}.py", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        sys.exit(f"{job} failed:\n{done.stdout[-4000:]}")
    return time.perf_counter() - started


def check_night(spark, lake: Path, day: str, previous: str | None, k: int) -> dict:
    from pyspark.sql import functions as F

    from movierec.core import delta_io, tables as t
    from movierec.data.known import known_ratings

    known = known_ratings(spark, lake, day)
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == day)
    per_user = latest.groupBy(t.USER_ID).count()
    users = known.select(t.USER_ID).distinct()
    before = known_ratings(spark, lake, previous).select(t.USER_ID).distinct() if previous else None
    newcomers = users.join(before, t.USER_ID, "left_anti") if before is not None else users.limit(0)
    personal = latest.where(F.col(t.SOURCE) == "model").select(t.USER_ID).distinct()
    out = {"run_date": day, "known_ratings": known.count(), "known_users": users.count(),
           "users_with_k_rows": per_user.where(F.col("count") == k).count(),
           "users_without_list": users.join(per_user, t.USER_ID, "left_anti").count(),
           "rows_naming_a_rated_movie": latest.join(known, [t.USER_ID, t.MOVIE_ID], "left_semi").count(),
           "new_users_tonight": newcomers.count(),
           "new_users_with_personal_list": newcomers.join(personal, t.USER_ID, "left_semi").count()}
    gate = delta_io.read(spark, lake, t.GATE_DECISIONS).where(F.col(t.RUN_DATE) == day).first()
    if gate is not None:
        out.update(gate_cutoff=str(gate.training_cutoff), gate_window_end=str(gate.window_end),
                   gate_users=gate.window_users, gate_moved=gate.moved, gate_reason=gate.reason)
    if delta_io.exists(spark, lake, t.SERVING_METRICS):
        out["serving_metrics"] = {r.metric: None if r.value is None else round(r.value, 4) for r in delta_io.read(spark, lake, t.SERVING_METRICS)
                                  .where(F.col(t.RUN_DATE) == day).collect()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--nights", type=int, default=3)
    parser.add_argument("--profile", default="test")
    parser.add_argument("--start", default="2026-11-21")
    args = parser.parse_args()
    lake = args.work / "lake"
    python = sys.executable
    env = {**os.environ, "SPARK_CONF_DIR": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
           "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{args.work}/mlflow.db"}
    common = ["--profile", args.profile, "--lake", str(lake), "--set", "recommend.publish_postgres=false",
              "--set", f"mlflow.artifact_root={args.work}/artifacts"]
    days = [(date.fromisoformat(args.start) + timedelta(days=i)).isoformat() for i in range(args.nights + 1)]
    seconds = {days[0]: spark_submit("pipeline", [*common, "--source", args.source, "--run-date", days[0]], env)}
    for day in days[1:]:
        seconds[day] = sum(spark_submit(job, [*common, "--run-date", day, *extra], env) for job, extra in (
            ("ingest_increment", []), ("detect_drift", []), ("train_als", ["--mode", "refit"]),
            ("recommend", []), ("smoke_check", [])))

    from movierec.core.config import load_config
    from movierec.core.spark import get_spark

    cfg = load_config(args.profile, [f"lake={lake}"])
    spark = get_spark("nightly-loop-check", cfg)
    for i, day in enumerate(days):
        night = check_night(spark, lake, day, days[i - 1] if i else None, cfg.recommend.k)
        night["seconds"] = round(seconds[day], 1)
        print(night, flush=True)


if __name__ == "__main__":
    main()
