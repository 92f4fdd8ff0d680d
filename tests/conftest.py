"""The suite's shared fixtures: one Spark session built by the project's own factory, and one
ml-latest-small lake ingested, split, trained and published by the README's main job under
spark-submit (tests/background.py starts it at session start). Tests that write get a copy
(helpers.copy_lake)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec.core.config import Config, load_config
from tests.background import Background, NightlyRun, PipelineRun
from tests.helpers import ML_SMALL

# Spark hands timestamps to Python in the process time zone; the lake is UTC.
os.environ["TZ"] = "UTC"
time.tzset()

pytest_plugins = ["tests.pg_fixture"]   # a real PostgreSQL server: pg_settings, pg_env

BACKGROUND = ("pipeline_run", "nightly_run", "cluster_run")   # fixtures backed by tests/background.py


def _uses(items, names) -> set[str]:
    return {name for item in items for name in item.fixturenames if name in names}


def pytest_collection_modifyitems(items):
    """Modules that wait for the background runs go last (nightly users last of all), so the
    in-process tests run while those runs work; each module stays in one piece."""
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(item.module.__name__, []).append(item)
    rank = {module: (bool(_uses(its, {"nightly_run"})), bool(_uses(its, BACKGROUND)))
            for module, its in by_module.items()}
    items.sort(key=lambda item: rank[item.module.__name__])


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Starts the background runs (tests/background.py) at session start, those a collected
    test needs (the real-data ones when ml-latest-small is there)."""
    chain = Background()
    needed = _uses(request.session.items, BACKGROUND)
    if needed:
        real = ML_SMALL if (ML_SMALL / "ratings.csv").is_file() else None
        chain.start(real, lambda: request.getfixturevalue("pg_settings"), tmp_path_factory, needed)
    yield chain
    chain.shutdown()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from movierec.core.spark import get_spark

    cfg = load_config("test")
    warehouse = tmp_path_factory.mktemp("warehouse")
    session = get_spark("movierec-tests", cfg, extra={
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.driver.memory": "4g",
        # G1's concurrent threads cost more than they save on 2 cores shared with the background
        # runs: four in-process modules took 233 and 275 JVM cpu-s with the serial collector
        # against 326 and 363 with G1 (188-223 s wall against 235-290 s)
        "spark.driver.extraJavaOptions": "-XX:+UseSerialGC",
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


@dataclass
class Ingested:
    """The ml-latest-small lake as ingest and split left it: the pipeline run's lake, whose
    ingestion_runs and split_info rows say what they did. Read only: copy it to write."""
    cfg: Config
    ingest: dict   # its ingestion_runs row
    split: dict    # its split_info row

    @property
    def lake(self) -> Path:
        return self.cfg.path("lake")


@pytest.fixture(scope="session")
def ingested(spark, pipeline_run) -> Ingested:
    from movierec.core import delta_io, tables as t

    rows = {name: [r.asDict(recursive=True) for r in delta_io.read(spark, pipeline_run.lake, name).collect()]
            for name in (t.INGESTION_RUNS, t.SPLIT_INFO)}
    assert len(rows[t.INGESTION_RUNS]) == len(rows[t.SPLIT_INFO]) == 1, rows
    return Ingested(pipeline_run.cfg, rows[t.INGESTION_RUNS][0], rows[t.SPLIT_INFO][0])


@pytest.fixture(scope="session")
def pipeline_run(ml_small, background) -> PipelineRun:
    return background.pipeline()


@pytest.fixture(scope="session")
def nightly_run(ml_small, background) -> NightlyRun:
    return background.nightly()
