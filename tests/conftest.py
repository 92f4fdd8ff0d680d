"""The suite's shared fixtures: one Spark session built by the project's own factory, one
ingested and split ml-latest-small lake, and one lake trained and published by the README's
main job under spark-submit. Tests that write get a copy (helpers.copy_lake)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec.core.config import Config, load_config
from tests.background import Background, PipelineRun
from tests.helpers import ML_SMALL

# Spark hands timestamps to Python in the process time zone; the lake is UTC.
os.environ["TZ"] = "UTC"
time.tzset()

pytest_plugins = ["tests.pg_fixture"]   # a real PostgreSQL server: pg_settings, pg_env

BACKGROUND = ("pipeline_run", "nightly", "cluster_run")   # fixtures backed by tests/background.py


def _uses(items, names) -> set[str]:
    return {name for item in items for name in item.fixturenames if name in names}


def pytest_collection_modifyitems(items):
    """Modules that wait for the background runs go last (nightly users last of all), so the
    in-process tests run while those runs work; each module stays in one piece."""
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(item.module.__name__, []).append(item)
    rank = {module: (bool(_uses(its, {"nightly"})), bool(_uses(its, BACKGROUND)))
            for module, its in by_module.items()}
    items.sort(key=lambda item: rank[item.module.__name__])


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    """Starts the background runs (tests/background.py) at session start, those a collected
    test needs, when ml-latest-small is there."""
    chain = Background()
    needed = _uses(request.session.items, BACKGROUND)
    if needed and (ML_SMALL / "ratings.csv").is_file():
        chain.start(ML_SMALL, request.getfixturevalue("pg_settings"), tmp_path_factory, needed)
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
    cfg: Config
    ingest: object   # data.ingest.IngestResult
    split: object    # data.split.SplitResult

    @property
    def lake(self) -> Path:
        return self.cfg.path("lake")


@pytest.fixture(scope="session")
def ingested(spark, ml_small, tmp_path_factory) -> Ingested:
    """ml-latest-small ingested and split, in this process. Read only: copy it to write."""
    from movierec.data import ingest, split

    root = tmp_path_factory.mktemp("ingested")
    cfg = load_config("test", [f"lake={root / 'lake'}", f"ingest.source={ml_small}"])
    return Ingested(cfg, ingest.run(spark, cfg), split.run(spark, cfg))


@pytest.fixture(scope="session")
def pipeline_run(ml_small, background) -> PipelineRun:
    return background.pipeline()
