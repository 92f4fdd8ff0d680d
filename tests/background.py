"""The suite's two slow subprocess runs, started in the background as soon as the session knows
a test needs them, so they overlap with the in-process tests instead of adding to them:

1. the README's main job, `spark-submit jobs/pipeline.py` on ml-latest-small (the suite's
   trained and published lake);
2. then one `airflow dags test` of the nightly DAG on a copy of that lake.

The fixtures that hand them to tests (conftest.pipeline_run, test_dag_run.nightly) wait for
them; conftest orders the modules that use them last. One worker thread runs both, in order.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from movierec.core.config import Config, load_config
from movierec.serve.pg_settings import PgSettings, env_for
from tests.helpers import PIPELINE_DATE, copy_lake, job_env, pg_database, run_job, tail

NIGHTLY_DATE = "2026-11-23"   # a Monday: the nightly refit, no CV


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


@dataclass
class NightlyRun:
    """`airflow dags test movierec_nightly NIGHTLY_DATE` on a copy of the pipeline's lake and
    MLflow store, publishing to PostgreSQL database `pg.database`."""
    cfg: Config
    env: dict[str, str]   # what the DAG's tasks were given (lake, profile, MLflow, PostgreSQL)
    pg: PgSettings
    airflow_home: Path
    run: subprocess.CompletedProcess = field(repr=False)

    @property
    def lake(self) -> Path:
        return self.cfg.path("lake")


def run_pipeline(sets: list[str], pg: PgSettings) -> PipelineRun:
    cmd = ["spark-submit", "jobs/pipeline.py", "--profile", "test", "--run-date", PIPELINE_DATE]
    for s in sets:
        cmd += ["--set", s]
    done = run_job(cmd, job_env(**env_for(pg)), timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail(done.stdout, 80)}")
    return PipelineRun(load_config("test", sets), done.stdout, pg)


def run_nightly(pipeline: PipelineRun, root: Path, pg: PgSettings) -> NightlyRun:
    from tests.e2e.airflow_cli import airflow_env, output, run_airflow, run_dags_test

    home = root / "airflow_home"
    home.mkdir()
    migrated = run_airflow(["db", "migrate"], airflow_env(home))
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{output(migrated)[-3000:]}")
    lake = copy_lake(pipeline.lake, root / "lake")
    shutil.copy(pipeline.cfg.mlflow.tracking_uri.removeprefix("sqlite:///"), root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    env = {"MOVIEREC_LAKE": str(lake), "MOVIEREC_PROFILE": "test", "MLFLOW_TRACKING_URI": uri,
           **env_for(pg)}
    run = run_dags_test(home, NIGHTLY_DATE, env)
    cfg = pipeline.cfg.with_overrides({"lake": str(lake), "mlflow.tracking_uri": uri})
    return NightlyRun(cfg, env, pg, home, run)


class Background:
    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suite-background")
        self._pipeline: Future[PipelineRun] | None = None
        self._nightly: Future[NightlyRun] | None = None

    def start(self, ml_small: Path, pg_settings: PgSettings, tmp_factory, nightly: bool) -> None:
        pipeline_root, nightly_root = tmp_factory.mktemp("pipeline"), tmp_factory.mktemp("nightly")
        pipeline_pg, nightly_pg = (pg_database(pg_settings, name) for name in ("pipeline", "nightly"))
        # one CV fold over the test profile's small grids: the full search is the benchmark's
        sets = [f"lake={pipeline_root / 'lake'}", f"raw_dir={ml_small}", "train.cv.folds=1",
                f"mlflow.tracking_uri=sqlite:///{pipeline_root}/mlflow.db",
                f"mlflow.artifact_root={pipeline_root / 'artifacts'}"]
        self._pipeline = self._pool.submit(run_pipeline, sets, pipeline_pg)
        if nightly:
            self._nightly = self._pool.submit(
                lambda: run_nightly(self._pipeline.result(), nightly_root, nightly_pg))

    def pipeline(self) -> PipelineRun:
        return self._wait(self._pipeline, "the pipeline run")

    def nightly(self) -> NightlyRun:
        return self._wait(self._nightly, "the nightly DAG run")

    @staticmethod
    def _wait(future: Future | None, what: str):
        if future is None:
            pytest.fail(f"{what} was not started: no collected test asked for it at session start")
        try:
            return future.result()
        except Exception as e:   # the chain's own error, with the job's output
            pytest.fail(f"{what} failed: {e}")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
