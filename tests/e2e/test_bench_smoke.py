"""The benchmark scripts still run: bench/pipeline.py and bench/als_vs_implicit.py at a tiny scale.

Each runs in a subprocess, as someone would run it, with its own Spark session; the numbers are
not checked, only that every stage ran and printed a positive time and row count. Not in
`make test` (marker `bench`): the pipeline benchmark re-runs the whole pipeline and nightly
paths the suite already runs (about 3.5 minutes); `make bench-smoke` runs these, and
test_bench_harness.py keeps the harness itself in the suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from movierec.serve import pg_settings as pgs
from tests.helpers import ROOT, pg_database

pytestmark = pytest.mark.bench

FULL_STAGES = ("ingest", "split", "train: cross-validation", "train: final fit", "train: evaluation on test",
               "train: served model fitted", "train: read + persist train", "recommend: top-100 for all users",
               "recommend: load champion", "publish to PostgreSQL")
REFIT_STAGES = ("refit: ingest_increment", "refit: detect_drift", "refit: train: served model fitted",
                "refit: train: read + persist", "refit: recommend: top-100", "refit: recommend: load champion",
                "refit: publish to PostgreSQL")
FOLDIN_STAGES = ("fold-in night: ingest_increment", "fold-in night: detect_drift", "fold-in night: recommend: top-100",
                 "fold-in night: recommend: load champion", "fold-in night: publish to PostgreSQL")
NOT_DUE = "fold-in night: train_als: not due"


def run_bench(script: str, args: list[str], env: dict[str, str], timeout: float = 900) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell, header, rule and bold totals left out."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("stage", "method") and not cells[0].startswith("**") \
                and not re.fullmatch(r"-+:?", cells[1]):
            rows[cells[0]] = cells[1:]
    return rows


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("x"))


@pytest.fixture
def bench_env(pg_settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != pgs.ENV_URL}
    return env | pgs.env_for(pg_database(pg_settings, "bench")) | {"TZ": "UTC"}


def test_pipeline_bench_reports_every_stage(tmp_path, bench_env):
    work = tmp_path / "work"
    out = run_bench("pipeline.py", [
        "--scale", "20000", "--profile", "test", "--work", str(work), "--driver-memory", "2g",
        "--mode", "nights", "--chart", str(tmp_path / "stages.png"),
        # the smallest grids that still run every searcher
        "--set", "train.cv.folds=1", "--set", "train.bias.damping_grid=[5.0]",
        "--set", "train.hybrid.min_history_grid=[10]"], bench_env)

    rows = table_rows(out)
    for wanted in ("generate", "baseline: plain CSV", *FULL_STAGES, *REFIT_STAGES, *FOLDIN_STAGES):
        hits = [label for label in rows if label.startswith(wanted)]
        assert len(hits) == 1, f"no single stage {wanted!r} in the table:\n{out}"
        n, seconds, jvm_gib = rows[hits[0]][:3]
        assert number(n) > 0 and number(seconds) > 0, f"{hits[0]}: rows {n}, seconds {seconds}"
        if wanted != "generate":
            assert number(jvm_gib) > 0, f"{hits[0]}: no driver JVM memory sampled"
    assert "total: nightly pipeline, full CV retrain" in out and "total: weekday night" in out
    assert "total: fold-in night" in out and re.search(r"ingest: [\d.]+x the plain CSV -> Delta load", out), out

    results = json.loads((work / "pipeline_results.json").read_text())
    assert len(results["stages"]) == len(rows)
    assert all(s["seconds"] > 0 and (s["rows"] > 0 or s["label"].startswith(NOT_DUE)) for s in results["stages"])
    full = sum(s["seconds"] for s in results["stages"] if s["group"] == "full")
    assert results["totals"]["nightly pipeline, full CV retrain (ingest .. publish)"] == pytest.approx(full)
    assert (tmp_path / "stages.png").stat().st_size > 10_000


def test_als_vs_implicit_bench_reports_every_method(bench_env):
    pytest.importorskip("implicit", reason="the `bench` extra is not installed")
    out = run_bench("als_vs_implicit.py", [
        "--ratings", "20000", "--profile", "test", "--rank", "8", "--max-iter", "3",
        "--driver-memory", "2g"], bench_env)

    rows = table_rows(out)
    methods = [label for label in rows if label.startswith(("(a)", "(b)", "(c)"))]
    assert len(methods) == 3, out
    for label in methods:
        seconds, ratio, precision = (number(c) for c in rows[label])
        assert seconds > 0 and ratio > 0 and 0 <= precision <= 1, f"{label}: {rows[label]}"
    assert re.search(r"[\d,]+ positives .* to fit", out), out
