"""bench/pipeline.py's harness, without running the benchmark: its names for the library's
stages match what the suite's pipeline run logged, and it splits, totals and prints stages as it
says. The benchmark itself re-runs the pipeline and nightly paths the suite already runs; a tiny
real run of it is `make bench-smoke` (tests/e2e/test_bench_smoke.py, marker `bench`)."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time

import pytest

from movierec.core.logs import stage
from tests.helpers import ROOT


def load(script: str):
    """bench/<script>.py as a module: every library name it imports must still exist."""
    spec = importlib.util.spec_from_file_location(f"bench_{script}", ROOT / "bench" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("pipeline")


def test_the_library_stages_the_bench_times_are_the_ones_the_jobs_log(bench, pipeline_run):
    logged = {line.split(": stage ", 1)[1].split(": done")[0]
              for line in pipeline_run.output.splitlines() if ": stage " in line and ": done" in line}
    assert {bench.CV, bench.FINAL_FIT, bench.EVALUATION} <= logged
    assert [name for name in logged if bench.TOP_K.fullmatch(name)] == ["top-100 for every known user"]


def test_a_call_is_split_into_its_logged_stages_and_the_rest(bench):
    sampler = bench.MemorySampler(interval=60)
    stage_log = bench.StageLog(sampler)
    logger = logging.getLogger("movierec.test_bench")
    logger.setLevel(logging.INFO)
    logger.addHandler(stage_log)
    runner = bench.Bench(sampler, stage_log)

    def job():
        time.sleep(0.02)
        with stage(logger, "inner part") as st:
            time.sleep(0.05)
            st.rows = 1234
        time.sleep(0.02)
        return "done"

    try:
        out, whole = runner.timed(None, job)
    finally:
        logger.removeHandler(stage_log)
    runner.split_by_library_stages(whole, [("inner", "inner part", None)], "the rest", 7, "full")
    inner, rest = runner.results
    assert out == "done" and (inner.label, inner.rows, rest.rows) == ("inner", 1234, 7)
    assert inner.seconds == pytest.approx(0.05, abs=0.03)
    assert inner.seconds + rest.seconds == pytest.approx(whole[1] - whole[0], abs=1e-6)
    with pytest.raises(RuntimeError, match="expected one finished library stage"):
        runner.split_by_library_stages(whole, [("again", "inner part", None)], "rest", 0, "full")


def test_the_table_lists_every_stage_and_the_totals(bench, capsys, tmp_path):
    stages = [{"label": label, "rows": rows, "seconds": s, "python_gib": 0.3, "jvm_gib": jvm,
               "workers_gib": 0.1, "all_gib": 1.0, "group": group}
              for label, rows, s, jvm, group in [("generate", 10, 0.5, 0.0, "setup"),
                                                  ("ingest", 10, 2.0, 1.5, "full"),
                                                  ("refit: train", 12, 3.0, 2.0, "refit")]]
    results = {"stages": stages, "totals": {"full night": 2.0, "refit night": 3.0},
               "meta": {"scale": "tiny", "users": 2, "movies": 3, "ratings": 10, "profile": "test",
                        "driver_memory": "2g", "cores": 2, "run_date": "2026-11-22",
                        "jvm_vmhwm_gib": 2.5, "python_vmhwm_gib": 0.4}}
    bench.print_table(results)
    out = capsys.readouterr().out
    assert "| ingest | 10 | 2.0 | 1.50 |" in out and "| generate | 10 | 0.50 |  |" in out
    assert "| **total: full night** | | **2.0** |" in out and "**total: refit night**" in out
    load("chart").stage_chart(results, tmp_path / "stages.png")
    assert (tmp_path / "stages.png").stat().st_size > 10_000
