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
from movierec.serve.pg_settings import PgSettings, env_for
from tests.helpers import ML_SMALL, PIPELINE_DATE, job_env, pg_database, run_job, tail

# Spark hands timestamps to Python in the process time zone; the lake is UTC.
os.environ["TZ"] = "UTC"
time.tzset()

pytest_plugins = ["tests.pg_fixture"]   # a real PostgreSQL server: pg_settings, pg_env

# The expensive session fixtures, each built on one xdist worker only: every module that uses
# one (directly or through its own fixtures) runs on the worker that built it.
SHARED = ("pipeline_run", "ingested")


@pytest.hookimpl(tryfirst=True)   # before xdist reads the xdist_group marks (--dist loadgroup)
def pytest_collection_modifyitems(items):
    """One xdist group per module (its module fixtures are built once), merged into the group of
    the first shared fixture any of its tests uses."""
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(item.module.__name__, []).append(item)
    for module, module_items in by_module.items():
        used = {name for item in module_items for name in item.fixturenames}
        group = next((name for name in SHARED if name in used), module)
        for item in module_items:
            item.add_marker(pytest.mark.xdist_group(group))


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


@dataclass
class PipelineRun:
    """`spark-submit jobs/pipeline.py` on ml-latest-small: ingested, split, trained (the test
    profile's grids, one CV fold), gated and published to Delta and to PostgreSQL database
    `pg.database`."""
    cfg: Config
    output: str
    pg: PgSettings

    @property
    def lake(self) -> Path:
        return self.cfg.path("lake")


@pytest.fixture(scope="session")
def pipeline_run(ml_small, pg_settings, tmp_path_factory) -> PipelineRun:
    root = tmp_path_factory.mktemp("pipeline")
    # one CV fold over the test profile's small grids: the full search is the benchmark's business
    sets = [f"lake={root / 'lake'}", f"raw_dir={ml_small}", "train.cv.folds=1",
            f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
            f"mlflow.artifact_root={root / 'artifacts'}"]
    pg = pg_database(pg_settings, "pipeline")
    cmd = ["spark-submit", "jobs/pipeline.py", "--profile", "test", "--run-date", PIPELINE_DATE]
    for s in sets:
        cmd += ["--set", s]
    done = run_job(cmd, job_env(**env_for(pg)), timeout=900)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail(done.stdout, 80)}")
    return PipelineRun(load_config("test", sets), done.stdout, pg)
