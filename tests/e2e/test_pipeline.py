"""The README's main command path: spark-submit jobs/pipeline.py with the project's
spark-defaults.conf (run once for the suite by the pipeline_run fixture), and how the jobs
start and fail."""

from __future__ import annotations

import socket
import sys
import time

from movierec.core.config import load_config
from movierec.data.layouts import detect
from movierec.data.release import find_release, resolve_source
from movierec.serve import pg_settings as pgs
from tests.helpers import K, PIPELINE_DATE, job_env, run_job

USERS = 563   # users with a rating in ml-latest-small's train or test period: all known at the initial load


def test_spark_submit_pipeline_on_real_data(pipeline_run):
    out = pipeline_run.output
    assert "MovieLens release found in" in out
    assert "124,003 rows read = 124,003 accepted + 0 rejected" in out
    assert "train 70,585 / test 20,167 / buffer 10,084" in out
    assert "87.3% of test users" in out
    # spark-submit merges the Python driver's stderr into stdout; log lines carry job and run date
    assert f"[pipeline {PIPELINE_DATE}] movierec.data.ingest: stage validate ratings.csv: done" in out
    assert (pipeline_run.lake / "ratings_train" / "_delta_log").is_dir()
    assert "becomes champion" in out and "hybrid NDCG@10 " in out and " vs popular_recent " in out
    assert (f"{USERS * K:,} recommendations for {USERS} users by movierec-ranker v1, run "
            f"{PIPELINE_DATE} (Delta and PostgreSQL)") in out
    assert pipeline_run.pg.secret() not in out
    with pgs.connect(pipeline_run.pg) as conn:
        served = conn.execute("SELECT count(*), count(DISTINCT user_id), min(run_date), "
                              "max(run_date) FROM recommendations").fetchone()
    assert (served[0], served[1], str(served[2]), str(served[3])) == (
        USERS * K, USERS, PIPELINE_DATE, PIPELINE_DATE)


def test_bad_config_fails_at_once_in_one_clear_line(tmp_path):
    cmd = [sys.executable, "jobs/train_als.py", "--set", "train.mode=fulll", "--lake", str(tmp_path)]
    started = time.monotonic()
    done = run_job(cmd, job_env(), timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout
    errors = [line for line in done.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(
        "config key 'train.mode': input should be 'full' or 'refit', got 'fulll'"), done.stdout
    assert "Traceback" not in done.stdout and "SparkContext" not in done.stdout
    print(f"bad train.mode rejected in {elapsed:.1f}s")   # reported, not asserted: see the note


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/movielens"


def test_offline_with_no_release_falls_back_to_synthetic(tmp_path):
    cfg = load_config("test", [f"raw_dir={tmp_path / 'raw'}", f"download.base_url={_refused_url()}",
                               "download.timeout_s=2"])
    source, how = resolve_source(cfg)
    assert "synthetic" in how and source.parent == tmp_path / "raw"
    layout, _ = detect(source)
    assert layout.name == "csv"
    again, how_again = resolve_source(cfg)  # the generated release is found next time
    assert again == source and "found" in how_again


def test_release_in_raw_dir_is_preferred_by_name(tmp_path, ml_small):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ml-latest-small").symlink_to(ml_small)
    (raw / "notes").mkdir()
    assert find_release(raw, "ml-latest-small") == raw / "ml-latest-small"
    assert find_release(tmp_path / "absent", "ml-latest-small") is None
