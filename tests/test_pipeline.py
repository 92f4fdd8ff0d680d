"""The README's main command path: spark-submit with the project's spark-defaults.conf."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from movierec import pipeline, postgres
from movierec.config import load_config
from movierec.layouts import detect
from tests.conftest import ROOT


def _job_env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "SPARK_CONF_DIR": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PATH": venv_bin + os.pathsep + os.environ["PATH"]}


def test_spark_submit_pipeline_on_real_data(ml_small, tmp_path, pg_settings):
    lake = tmp_path / "lake"
    cmd = ["spark-submit", "jobs/pipeline.py", "--profile", "test", "--lake", str(lake),
           "--set", f"raw_dir={ml_small}", "--run-date", "2026-11-21",
           "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
           "--set", f"mlflow.artifact_root={tmp_path / 'artifacts'}"]
    env = {**_job_env(), **postgres.env_for(pg_settings)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "MovieLens release found in" in done.stdout
    assert "124,003 rows read = 124,003 accepted + 0 rejected" in done.stdout
    assert "train 70,585 / test 20,167 / buffer 10,084" in done.stdout
    assert "87.3% of test users" in done.stdout
    # spark-submit merges the Python driver's stderr into stdout; log lines carry job and run date
    assert "[pipeline 2026-11-21] movierec.ingest: stage validate ratings.csv: done" in done.stdout
    assert (lake / "ratings_train" / "_delta_log").is_dir()
    assert "becomes champion" in done.stdout
    assert "45,300 recommendations for 453 users by movierec-ranker v1, run 2026-11-21 (Delta and PostgreSQL)" \
        in done.stdout
    assert pg_settings.password not in done.stdout + done.stderr


def test_bad_flag_value_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "jobs/split.py", "--set", "split.train_frac=lots", "--lake", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=_job_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "config key 'split.train_frac' wants float" in done.stderr
    assert "Traceback" not in done.stderr


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/movielens"


def test_offline_with_no_release_falls_back_to_synthetic(tmp_path):
    cfg = load_config("test", [f"raw_dir={tmp_path / 'raw'}", f"download.base_url={_refused_url()}",
                               "download.timeout_s=2"])
    source, how = pipeline.resolve_source(cfg)
    assert "synthetic" in how and source.parent == tmp_path / "raw"
    layout, _ = detect(source)
    assert layout.name == "csv"
    again, how_again = pipeline.resolve_source(cfg)  # the generated release is found next time
    assert again == source and "found" in how_again


def test_release_in_raw_dir_is_preferred_by_name(tmp_path, ml_small):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ml-latest-small").symlink_to(ml_small)
    (raw / "notes").mkdir()
    assert pipeline.find_release(raw, "ml-latest-small") == raw / "ml-latest-small"
    assert pipeline.find_release(tmp_path / "absent", "ml-latest-small") is None
