"""Benchmark: the whole nightly pipeline on a synthetic release, stage by stage, in one process.

    .venv/bin/python bench/pipeline.py                                    # ML-25M scale, profile ml25m
    .venv/bin/python bench/pipeline.py --mode refit --chart docs/benchmark_stages.png
    .venv/bin/python bench/pipeline.py --scale medium --profile local --driver-memory 6g
    .venv/bin/python bench/pipeline.py --scale 20000 --profile test --work /tmp/bp   # smoke size

One Spark session from the project's factory, and the library functions the jobs call:
synthetic.generate, ingest.run, split.run, train.run (its own stage log lines split it into
cross-validation, final fit, evaluation and the rest: reading train, MLflow logging, model
registry and gate), recommend.run with recommend.publish_postgres=false (top-K for all users +
Delta write + contract check, then the rest: champion load, popular list, recommendations_latest),
and recommend.publish_postgres (every served table, COPY + keys + atomic swap).
`--mode refit` then runs the next night as the DAG does on weekdays: ingest_increment (the
next buffer week merged into train), detect_drift, the refit (train.mode=refit: the champion's
parameters, no CV), recommend and publish. `--mode nights` adds a third night on which the
schedule trains nothing (train.schedule=every_n_days): recommend folds in the users with new
ratings and publishes. Baseline measured in the same run: a plain typed CSV -> Delta load of
the release's files (bench/baselines.py), against which ingest is judged.

Memory: a thread samples the RSS of this Python process, of the driver JVM and of the JVM's
Python workers (the pyspark daemon and its forks) every 0.5 s, so each stage gets its own peak;
VmHWM, a high-water mark since process start, is reported once for the whole run.
MLflow goes to a SQLite store in the work folder; PostgreSQL is MOVIEREC_PG_* or the embedded
server. Prints a Markdown table for docs/benchmarks.md and writes <work>/pipeline_results.json.
Not a test: run on demand (tests/test_bench_smoke.py runs it at a tiny scale).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import psutil

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config, project_root
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark
from movierec.data import drift, increment, ingest, split, synthetic
from movierec.model import train
from movierec.model.tuning import sample_users
from movierec.serve import pg_settings, recommend

sys.path.insert(0, str(Path(__file__).resolve().parent))   # also when loaded by a test
from baselines import plain_csv_load  # noqa: E402

ROOT = project_root()
log = logging.getLogger("bench.pipeline")
GIB = 2 ** 30

# train.run's and recommend.run's own stage names (movierec.core.logs.stage), as they log them.
CV, FINAL_FIT, EVALUATION = "cross-validation on train", "final fit on all of train", "evaluation on test"
SERVED_FIT = re.compile(r"served fit on the ratings known as of .*")
TOP_K = re.compile(r"top-\d+ for every known user")
FOLD_IN = re.compile(r"fold-in of users with ratings after .*")
PLAIN_LOAD = "baseline: plain CSV -> Delta of the same files (not in totals)"
NIGHTS = {"refit": "refit: ", "foldin": "fold-in night: "}
STAGE_LINE = re.compile(r"^stage (?P<name>.+): (?:(?P<started>started)|done in [\d.]+s(?:, (?P<rows>[\d,]+) rows)?)$")


# ------------------------------------------------------------------ memory

def _status_kib(pid: int, key: str) -> int:
    """A /proc/<pid>/status field (psutil has no high-water mark such as VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 if it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def _pss(pid: int) -> int:
    """Proportional set size: pages shared with other processes (the pyspark daemon's forks
    share its imports) counted once across them, where summed RSS counts them in each."""
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def _descendants(root: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class MemorySampler(threading.Thread):
    """RSS of this process, the driver JVM (once known) and the JVM's descendants (the Python
    workers), every `interval` seconds, as (perf_counter, python, jvm, workers, PSS of all of
    them) in bytes."""

    def __init__(self, interval: float = 0.5):
        super().__init__(name="memory-sampler", daemon=True)
        self.interval, self.jvm_pid = interval, None
        self.samples: list[tuple[float, int, int, int, int]] = []
        self._halt = threading.Event()

    def sample(self) -> None:
        jvm = self.jvm_pid
        children = _descendants(jvm) if jvm else []
        pss = sum(_pss(p) for p in [os.getpid(), *([jvm] if jvm else []), *children])
        self.samples.append((time.perf_counter(), _rss(os.getpid()), _rss(jvm) if jvm else 0,
                             sum(_rss(p) for p in children), pss))

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()

    def peaks(self, intervals: list[tuple[float, float]]) -> tuple[int, int, int, int, int]:
        """Peaks of the Python driver, the JVM, the workers, of their RSS sum at one instant,
        and of their PSS sum."""
        inside = [s for s in self.samples if any(a <= s[0] <= b for a, b in intervals)]
        return (*(max((s[i] for s in inside), default=0) for i in (1, 2, 3)),
                max((s[1] + s[2] + s[3] for s in inside), default=0), max((s[4] for s in inside), default=0))


# ------------------------------------------------------------------ stages

@dataclass
class StageResult:
    label: str
    rows: int
    seconds: float
    intervals: list = field(default_factory=list)   # (start, end) perf_counter pairs
    python_gib: float = 0.0
    jvm_gib: float = 0.0
    workers_gib: float = 0.0
    all_gib: float = 0.0                            # the three together, at the same instant
    all_pss_gib: float = 0.0                        # the same, shared pages counted once
    group: str = "full"                             # which total it counts in


class StageLog(logging.Handler):
    """Start and end times (this process's clock) of the library's `stage ...` log lines."""

    def __init__(self, sampler: MemorySampler):
        super().__init__(logging.INFO)
        self.sampler, self.seen = sampler, {}

    def emit(self, record: logging.LogRecord) -> None:
        m = STAGE_LINE.match(record.getMessage())
        if not m:
            return
        now = time.perf_counter()
        self.sampler.sample()   # so that even a stage shorter than the interval has a sample
        if m["started"]:
            self.seen[m["name"]] = {"start": now}
        elif m["name"] in self.seen:
            self.seen[m["name"]].update(end=now, rows=int(m["rows"].replace(",", "")) if m["rows"] else None)

    def take(self, name: str | re.Pattern) -> dict:
        hits = [k for k in self.seen if (name.fullmatch(k) if isinstance(name, re.Pattern) else k == name)]
        if len(hits) != 1 or "end" not in self.seen[hits[0]]:
            raise RuntimeError(f"expected one finished library stage {name!r} in the log, saw {list(self.seen)}")
        return self.seen.pop(hits[0])


class Bench:
    def __init__(self, sampler: MemorySampler, stage_log: StageLog):
        self.sampler, self.stage_log, self.results = sampler, stage_log, []

    def timed(self, label: str | None, fn, rows=None, group: str = "full"):
        """Runs fn() as one stage (label None: only timed, for split_by_library_stages);
        rows is a number or a function of fn's result."""
        self.stage_log.seen.clear()
        t0 = time.perf_counter()
        self.sampler.sample()
        out = fn()
        self.sampler.sample()
        t1 = time.perf_counter()
        if label is not None:
            self.add(label, rows(out) if callable(rows) else rows, [(t0, t1)], group)
        return out, (t0, t1)

    def add(self, label: str, rows, intervals: list, group: str) -> None:
        seconds = sum(b - a for a, b in intervals)
        self.results.append(StageResult(label, int(rows or 0), seconds, intervals, group=group))
        log.info("%s: %.1fs, %s rows", label, seconds, f"{rows or 0:,}")

    def split_by_library_stages(self, whole: tuple[float, float], parts: list[tuple],
                                rest_label: str, rest_rows: int, group: str) -> None:
        """One library call's time as its logged stages (label, stage name, rows; rows None:
        the count the stage logged) plus the rest of the call; a stage name given as
        (pattern, "optional") is taken only when the call logged it."""
        gaps, cursor = [], whole[0]
        for part_label, stage_name, rows in parts:
            if isinstance(stage_name, tuple):   # (pattern, "optional")
                stage_name = stage_name[0]
                if not any(stage_name.fullmatch(k) for k in self.stage_log.seen):
                    continue
            seen = self.stage_log.take(stage_name)
            self.add(part_label, seen.get("rows") if rows is None else rows,
                     [(seen["start"], seen["end"])], group)
            gaps.append((cursor, seen["start"]))
            cursor = seen["end"]
        gaps.append((cursor, whole[1]))
        self.add(rest_label, rest_rows, gaps, group)


def _stage_peaks(bench: Bench) -> None:
    for r in bench.results:
        py, jvm, workers, together, pss = bench.sampler.peaks(r.intervals)
        r.python_gib, r.jvm_gib, r.workers_gib, r.all_gib = py / GIB, jvm / GIB, workers / GIB, together / GIB
        r.all_pss_gib = pss / GIB


# ------------------------------------------------------------------ the pipeline

def nightly(bench: Bench, spark, cfg, pg, run_date: str, n_train: int, n_test: int, group: str) -> None:
    """train.run, recommend.run (Delta only), then the PostgreSQL publish, each split in stages.
    The later nights start as the DAG's do: the week's new ratings arrive, drift measured; on a
    fold-in night the schedule trains nothing."""
    prefix = NIGHTS.get(group, "")
    if group in NIGHTS:
        added, _ = bench.timed(f"{prefix}ingest_increment (next buffer week recorded as arrivals)",
                               lambda: increment.run(spark, cfg, run_date), rows=lambda r: r["added"],
                               group=group)
        bench.timed(f"{prefix}detect_drift (6 metrics vs known ratings)", lambda: drift.run(spark, cfg, run_date),
                    rows=added["added"], group=group)
    if group == "foldin":
        skipped, _ = bench.timed(f"{prefix}train_als: not due (train.schedule), nothing fitted",
                                 lambda: train.run(spark, cfg, run_date), group=group)
        if not isinstance(skipped, str):
            raise RuntimeError("the fold-in night trained: its schedule should have said not due")
    else:
        _train(bench, spark, cfg, run_date, n_train, n_test, group, prefix)
    delta_only = cfg.with_overrides({"recommend.publish_postgres": False})
    summary, whole = bench.timed(None, lambda: recommend.run(spark, delta_only, run_date), group=group)
    k = cfg["recommend.k"]
    bench.split_by_library_stages(
        whole, [(f"{prefix}recommend: fold-in of the users with newer ratings", (FOLD_IN, "optional"), None),
                (f"{prefix}recommend: top-{k} for all users, Delta write, check", TOP_K, None)],
        f"{prefix}recommend: load champion, popular list, recommendations_latest",
        summary["rows"], group)
    bench.timed(f"{prefix}publish to PostgreSQL (6 served tables)",
                lambda: recommend.publish_postgres(spark, cfg.path("lake"), pg), rows=lambda n: n,
                group=group)


def _train(bench: Bench, spark, cfg, run_date: str, n_train: int, n_test: int, group: str,
           prefix: str) -> None:
    result, whole = bench.timed(None, lambda: train.run(spark, cfg, run_date), group=group)
    if isinstance(result, str):
        raise RuntimeError(f"train did not run: {result}")
    # a refit night reruns no backtest (train and test are the champion's): only the served fit
    parts = [] if group == "refit" else [
        (f"{prefix}train: cross-validation", CV, 0),
        (f"{prefix}train: final fit on all of train (bias, 3 ALS, 3 popularity)", FINAL_FIT, n_train),
        (f"{prefix}train: evaluation on test", EVALUATION, n_test)]
    parts += [(f"{prefix}train: served model fitted on the known ratings", SERVED_FIT, None)]
    bench.split_by_library_stages(whole, parts,
                                  f"{prefix}train: read + persist train, MLflow logging, registry, gate",
                                  n_train, group)
    if CV in bench.stage_log.seen:
        raise RuntimeError("the refit ran the full cross-validation: the full run left no champion")
    if group != "refit":
        # Counted outside every stage's time: the CV's rows are its user sample's ratings.
        sample = sample_users(delta_io.read(spark, cfg.path("lake"), t.RATINGS_TRAIN),
                              cfg["train.cv.user_sample"], cfg["train.seed"])
        next(r for r in bench.results if r.label.endswith("cross-validation")).rows = sample.count()


def _seconds(s: float) -> str:
    return f"{s:.1f}" if s >= 1 else f"{s:.2f}"


def print_table(results: dict) -> None:
    stages, meta = results["stages"], results["meta"]
    print(f"\nsynthetic {meta['scale']}: {meta['users']:,} users, {meta['movies']:,} rated movies, "
          f"{meta['ratings']:,} ratings; profile {meta['profile']}, driver {meta['driver_memory']}, "
          f"{meta['cores']} cores; run {meta['run_date']}\n")
    print("| stage | rows | seconds | driver JVM peak GiB | python peak GiB | Python workers peak GiB "
          "| all three peak GiB | all three, PSS, peak GiB |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in stages:
        jvm = f"{s['jvm_gib']:.2f}" if s["jvm_gib"] else ""
        print(f"| {s['label']} | {s['rows']:,} | {_seconds(s['seconds'])} | {jvm} | {s['python_gib']:.2f} | "
              f"{s['workers_gib']:.2f} | {s['all_gib']:.2f} | {s.get('all_pss_gib', 0):.2f} |")
    for name, seconds in results["totals"].items():
        print(f"| **total: {name}** | | **{seconds:.1f}** | | | | | |")
    by_label = {s["label"]: s["seconds"] for s in stages}
    ingest_s = next(v for k, v in by_label.items() if k.startswith("ingest"))
    if PLAIN_LOAD in by_label:
        print(f"\ningest: {ingest_s / by_label[PLAIN_LOAD]:.2f}x the plain CSV -> Delta load of the same files")
    print(f"\nWhole run, VmHWM: driver JVM {meta['jvm_vmhwm_gib']:.2f} GiB, this Python process "
          f"{meta['python_vmhwm_gib']:.2f} GiB. The nightly totals leave out `generate` (it stands in "
          f"for the download).")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="ml-25m", help="synthetic scale: small, medium, ml-25m or a number of ratings")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", default=str(ROOT / "work" / "bench-pipeline"))
    p.add_argument("--profile", default="ml25m")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--mode", choices=("full", "refit", "nights"), default="full",
                   help="refit: after the full run, also the nightly refit path (train.mode=refit); "
                        "nights: then also a fold-in night (no training)")
    p.add_argument("--run-date", default="2026-11-22")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override (repeatable)")
    p.add_argument("--keep-release", action="store_true",
                   help="reuse <work>/synthetic-<scale> if present (generate is then not timed)")
    p.add_argument("--chart", metavar="PATH", help="also write a PNG bar chart of stage times here")
    args = p.parse_args(argv)
    configure_logging("bench-pipeline", args.run_date)
    work = Path(args.work).resolve()
    release = work / f"synthetic-{args.scale}-seed{args.seed}"
    for old in (work / "lake", work / "artifacts", work / "mlflow.db", work / "warehouse", work / "baseline"):
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    sampler = MemorySampler()
    sampler.start()
    stage_log = StageLog(sampler)
    logging.getLogger("movierec").addHandler(stage_log)
    bench = Bench(sampler, stage_log)

    shape = synthetic.shape_for(args.scale)
    if args.keep_release and (release / "ratings.csv").is_file():
        log.info("reusing %s (generate not timed)", release)
    else:
        shutil.rmtree(release, ignore_errors=True)
        bench.timed("generate synthetic release (not in totals)",
                    lambda: synthetic.generate(release, scale=args.scale, seed=args.seed),
                    rows=lambda s: s["n_ratings"], group="setup")

    cfg = load_config(args.profile, [f"lake={work / 'lake'}", f"ingest.source={release}",
                                     f"mlflow.tracking_uri=sqlite:///{work}/mlflow.db",
                                     f"mlflow.artifact_root={work / 'artifacts'}", *args.overrides])
    pg = pg_settings.connection_settings(cfg)   # starts the embedded server now, not inside a stage
    spark = get_spark("movierec-bench-pipeline", cfg, extra={
        "spark.driver.memory": args.driver_memory, "spark.sql.warehouse.dir": str(work / "warehouse")})
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    sampler.jvm_pid = jvm_pid
    try:
        ingested, _ = bench.timed("ingest (validate, quarantine, 4-6 Delta tables)",
                                  lambda: ingest.run(spark, cfg, args.run_date), rows=lambda r: r.rows_read)
        splitted, _ = bench.timed("split (cutoffs, 3 tables, cold-start report)",
                                  lambda: split.run(spark, cfg, args.run_date),
                                  rows=lambda s: s.n_train + s.n_test + s.n_buffer)
        if ingested.skipped or splitted.skipped:
            raise RuntimeError("ingest or split found nothing to do: the work folder was not cleared")
        bench.timed(PLAIN_LOAD, lambda: plain_csv_load(spark, release, work / "baseline"),
                    rows=lambda n: n, group="baseline")
        nightly(bench, spark, cfg.with_overrides({"train.mode": "full"}), pg, args.run_date,
                splitted.n_train, splitted.n_test, "full")
        day = date.fromisoformat(args.run_date)
        if args.mode in ("refit", "nights"):
            nightly(bench, spark, cfg.with_overrides({"train.mode": "refit"}), pg,
                    (day + timedelta(days=1)).isoformat(), splitted.n_train, splitted.n_test, "refit")
        if args.mode == "nights":   # the refit was yesterday: a weekly schedule trains nothing
            nightly(bench, spark, cfg.with_overrides({"train.schedule": "every_n_days", "train.every_n_days": 7}),
                    pg, (day + timedelta(days=2)).isoformat(), splitted.n_train, splitted.n_test, "foldin")
        jvm_hwm = _status_kib(jvm_pid, "VmHWM") * 1024 / GIB
    finally:
        sampler.stop()
        spark.stop()
    _stage_peaks(bench)

    totals = {"nightly pipeline, full CV retrain (ingest .. publish)":
              sum(r.seconds for r in bench.results if r.group == "full")}
    if args.mode in ("refit", "nights"):
        totals["weekday night (increment, drift, served refit, gate, recommend, publish)"] = sum(
            r.seconds for r in bench.results if r.group == "refit")
    if args.mode == "nights":
        totals["fold-in night (increment, drift, no training, fold-in, recommend, publish)"] = sum(
            r.seconds for r in bench.results if r.group == "foldin")
    results = {
        "meta": {"scale": args.scale, "seed": args.seed, "users": shape.n_users, "movies": shape.n_movies,
                 "ratings": shape.n_ratings, "profile": args.profile, "driver_memory": args.driver_memory,
                 "mode": args.mode, "run_date": args.run_date, "cores": os.cpu_count(),
                 "postgres": pg.masked(), "overrides": args.overrides,
                 "jvm_vmhwm_gib": jvm_hwm, "python_vmhwm_gib": _status_kib(os.getpid(), "VmHWM") * 1024 / GIB},
        "stages": [{k: v for k, v in asdict(r).items() if k != "intervals"} for r in bench.results],
        "totals": totals,
    }
    out = work / "pipeline_results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log.info("results written to %s", out)
    if args.chart:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from chart import stage_chart

        stage_chart(results, Path(args.chart))
        log.info("chart written to %s", args.chart)
    print_table(results)


if __name__ == "__main__":
    main(sys.argv[1:])
