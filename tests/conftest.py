"""One Spark session for the whole suite, built by the project's own factory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from movierec.config import load_config, project_root

# Spark hands timestamps to Python in the process time zone; the lake is UTC.
os.environ["TZ"] = "UTC"
time.tzset()

pytest_plugins = ["pg_fixture"]   # a real PostgreSQL server: pg_settings, pg_env

ROOT = project_root()
TRAIN_RUN_DATE = "2026-11-21"
ML_SMALL = (ROOT / ".." / "shared" / "data" / "ml-latest-small").resolve()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from movierec.spark import get_spark

    cfg = load_config("test")
    warehouse = tmp_path_factory.mktemp("warehouse")
    session = get_spark("movierec-tests", cfg, extra={
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.driver.memory": "4g",
    })
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def make_cfg(lake):
    """Config for the test profile with the lake in tmp_path and any overrides."""
    def _make(**overrides):
        sets = [f"lake={lake}"] + [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()]
        return load_config("test", sets)
    return _make


@pytest.fixture(scope="session")
def ml_small() -> Path:
    if not (ML_SMALL / "ratings.csv").is_file():
        pytest.skip(f"real MovieLens data not found at {ML_SMALL} (../shared/data/ml-latest-small)")
    return ML_SMALL


def write_release(folder: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    """Writes a hand-made release: file name -> content (lines joined by \\n)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode(encoding))
    return folder


@pytest.fixture(scope="session")
def trained(spark, ml_small, tmp_path_factory):
    """ml-latest-small ingested, split and trained twice (same date): the champion is v1."""
    from movierec import delta_io, ingest, split, tables as t, train

    root = tmp_path_factory.mktemp("train")
    cfg = load_config("test", [f"lake={root / 'lake'}", f"ingest.source={ml_small}",
                               f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
                               f"mlflow.artifact_root={root / 'artifacts'}"])
    ingest.run(spark, cfg)
    split.run(spark, cfg)
    first = train.run(spark, cfg, TRAIN_RUN_DATE)
    metrics_version = delta_io.version(spark, cfg.path("lake"), t.MODEL_METRICS)
    second = train.run(spark, cfg, TRAIN_RUN_DATE)
    return cfg, first, second, metrics_version
