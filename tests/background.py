"""The suite's slow subprocess runs, started in the background as soon as the session knows a
test needs them, so they overlap with the in-process tests instead of adding to them:

- one thread: the README's main job, `spark-submit jobs/pipeline.py` on ml-latest-small (the
  suite's trained and published lake); then one `airflow dags test` of the nightly DAG on a copy
  of that lake;
- one: the Airflow metadata DB of that run, then `airflow tasks test` of its recommend task with
  PostgreSQL's port closed (in an Airflow home of its own; it fails before reading anything);
- another: a 2-worker standalone cluster and the jobs submitted to it, once the pipeline run
  is over.

The fixtures that hand them to tests (conftest.pipeline_run and nightly_run,
test_cluster.cluster_run) wait for them; conftest orders the modules that use them last.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from movierec.core.config import Config, load_config
from movierec.serve.pg_settings import ENV_PORT, PgSettings, env_for
from tests.helpers import PIPELINE_DATE, copy_lake, job_env, pg_database, run_job, tail

NIGHTLY_DATE = "2026-11-23"   # a Monday: the nightly refit, no CV
PG_DOWN_DATE = "2026-11-24"


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
    MLflow store, publishing to PostgreSQL database `pg.database`; then `airflow tasks test` of
    recommend for PG_DOWN_DATE with the PostgreSQL port `closed_port`."""
    cfg: Config
    env: dict[str, str]   # what the DAG's tasks were given (lake, profile, MLflow, PostgreSQL)
    pg: PgSettings
    airflow_home: Path
    run: subprocess.CompletedProcess = field(repr=False)
    pg_down: subprocess.CompletedProcess | None = field(default=None, repr=False)
    closed_port: int = 0

    @property
    def lake(self) -> Path:
        return self.cfg.path("lake")


def run_pipeline(sets: list[str], pg: PgSettings) -> PipelineRun:
    cmd = ["spark-submit", "jobs/pipeline.py", "--profile", "test", "--run-date", PIPELINE_DATE]
    for s in sets:
        cmd += ["--set", s]
    # a two-minute job: C2's compiled code pays for itself here (alone: 230 cpu-s, 133 s, against
    # 260 cpu-s, 199 s with the C1-only TEST_JVM_OPTS that suit the short jobs); the serial
    # collector still spares G1's threads (203 cpu-s, 125 s)
    done = run_job(cmd, job_env(**env_for(pg), SPARK_SUBMIT_OPTS="-XX:+UseSerialGC"), timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {done.returncode}:\n{tail(done.stdout, 80)}")
    return PipelineRun(load_config("test", sets), done.stdout, pg)


def migrate_airflow(root: Path) -> Path:
    """A fresh Airflow home with its metadata DB migrated: started with the pipeline run, which
    the nightly run waits for anyway."""
    from tests.e2e.airflow_cli import airflow_env, output, run_airflow

    home = root / "airflow_home"
    home.mkdir()
    migrated = run_airflow(["db", "migrate"], airflow_env(home))
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{output(migrated)[-3000:]}")
    return home


def _nightly_env(root: Path, pg: PgSettings) -> dict[str, str]:
    return {"MOVIEREC_LAKE": str(root / "lake"), "MOVIEREC_PROFILE": "test",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", **env_for(pg)}


def run_pg_down(root: Path, pg: PgSettings) -> tuple[subprocess.CompletedProcess, int]:
    """`airflow tasks test` of recommend with PostgreSQL's port closed, in an Airflow home of its
    own: the job fails on the port before it reads anything, so it needs neither the pipeline
    nor the nightly run and runs beside them. Returns the run and the closed port."""
    from tests.e2e.airflow_cli import DAG_ID, airflow_env, run_airflow

    (root / "pg_down").mkdir()
    home = migrate_airflow(root / "pg_down")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = _nightly_env(root, pg)
    down = airflow_env(home, **{**env, ENV_PORT: str(closed), "AIRFLOW_VAR_MOVIEREC_LAKE": env["MOVIEREC_LAKE"],
                                "AIRFLOW_VAR_MOVIEREC_PROFILE": "test"})
    return run_airflow(["tasks", "test", DAG_ID, "recommend", PG_DOWN_DATE], down, timeout=300), closed


def run_nightly(pipeline: PipelineRun, root: Path, pg: PgSettings, home: Path,
                pg_down: Future) -> NightlyRun:
    from tests.e2e.airflow_cli import run_dags_test

    env = _nightly_env(root, pg)
    lake = copy_lake(pipeline.lake, root / "lake")
    shutil.copy(pipeline.cfg.mlflow.tracking_uri.removeprefix("sqlite:///"), root / "mlflow.db")
    run = run_dags_test(home, NIGHTLY_DATE, env)
    cfg = pipeline.cfg.with_overrides({"lake": str(lake), "mlflow.tracking_uri": env["MLFLOW_TRACKING_URI"]})
    nightly = NightlyRun(cfg, env, pg, home, run)
    nightly.pg_down, nightly.closed_port = pg_down.result()
    return nightly


class Background:
    def __init__(self):
        self._chain = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suite-pipeline")
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suite-cluster")
        self._migrate = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suite-airflow-db")
        self._pipeline: Future[PipelineRun] | None = None
        self._nightly: Future[NightlyRun] | None = None
        self._cluster: Future | None = None
        self._pipeline_started = threading.Event()

    def start(self, ml_small: Path | None, pg_settings, tmp_factory, needed: set[str]) -> None:
        """Starts what `needed` names; the pipeline and nightly runs only with ml_small.
        pg_settings: a callable giving the suite's PostgreSQL settings."""
        if "cluster_run" in needed:
            self._start_cluster(tmp_factory.mktemp("cluster"))
        try:
            self._start_chain(ml_small, pg_settings, tmp_factory, needed)
        finally:
            self._pipeline_started.set()   # whether a pipeline run was submitted or not

    def _start_chain(self, ml_small: Path | None, pg_settings, tmp_factory, needed: set[str]) -> None:
        if ml_small is None or not needed & {"pipeline_run", "nightly_run"}:
            return
        pg_settings = pg_settings()
        pipeline_root, nightly_root = tmp_factory.mktemp("pipeline"), tmp_factory.mktemp("nightly")
        pipeline_pg, nightly_pg = (pg_database(pg_settings, name) for name in ("pipeline", "nightly"))
        # one CV fold over the test profile's small grids: the full search is the benchmark's
        sets = [f"lake={pipeline_root / 'lake'}", f"raw_dir={ml_small}", "train.cv.folds=1",
                f"mlflow.tracking_uri=sqlite:///{pipeline_root}/mlflow.db",
                f"mlflow.artifact_root={pipeline_root / 'artifacts'}"]
        self._pipeline = self._chain.submit(run_pipeline, sets, pipeline_pg)
        if "nightly_run" in needed:
            home = self._migrate.submit(migrate_airflow, nightly_root)
            pg_down = self._migrate.submit(run_pg_down, nightly_root, nightly_pg)
            self._nightly = self._chain.submit(
                lambda: run_nightly(self._pipeline.result(), nightly_root, nightly_pg, home.result(), pg_down))

    def _start_cluster(self, root: Path) -> None:
        """The cluster's five JVMs start once the pipeline run is over (or when there is none):
        started beside it at session start, they slowed the first in-process tests, which are
        the suite's critical path; beside the nightly run they compete with less."""
        from tests.e2e.cluster_jobs import run_on_cluster

        def after_the_pipeline():
            self._pipeline_started.wait()
            if self._pipeline is not None:
                wait([self._pipeline])
            return run_on_cluster(root)

        self._cluster = self._side.submit(after_the_pipeline)

    def pipeline(self) -> PipelineRun:
        return self._wait(self._pipeline, "the pipeline run")

    def nightly(self) -> NightlyRun:
        return self._wait(self._nightly, "the nightly DAG run")

    def cluster(self):
        return self._wait(self._cluster, "the standalone cluster run")

    @staticmethod
    def _wait(future: Future | None, what: str):
        if future is None:
            pytest.fail(f"{what} was not started: no collected test asked for it at session start")
        try:
            return future.result()
        except Exception as e:   # the chain's own error, with the job's output
            pytest.fail(f"{what} failed: {e}")

    def shutdown(self) -> None:
        for pool in (self._chain, self._side, self._migrate):
            pool.shutdown(wait=True, cancel_futures=True)
        if self._cluster is not None and self._cluster.done() and not self._cluster.exception():
            self._cluster.result().cluster.stop()   # also when its tests did not run
