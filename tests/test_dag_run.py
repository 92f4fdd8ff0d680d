"""A real `airflow dags test` of the nightly DAG on the trained ml-latest-small lake, twice for
the same date, then once with PostgreSQL unreachable."""

from __future__ import annotations

import re
import shutil
import socket

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from movierec import delta_io, postgres, tables as t

from test_dag import airflow_home, output, run_dags_test  # noqa: F401  (airflow_home: a fixture)

DAY, NEXT_DAY = "2026-11-23", "2026-11-24"   # Monday, Tuesday: nightly refit, no CV


def _snapshot(spark, lake, uri: str, settings) -> dict:
    with postgres.connect(settings) as conn:
        pg = conn.execute("SELECT count(*), min(run_date), max(run_date) FROM recommendations").fetchone()
    recs = delta_io.read(spark, lake, t.RECOMMENDATIONS)
    return {
        "train": delta_io.read(spark, lake, t.RATINGS_TRAIN).count(),
        "train_version": delta_io.version(spark, lake, t.RATINGS_TRAIN),
        "increments": delta_io.read(spark, lake, t.RATINGS_INCREMENTS).count(),
        "drift": sorted((r.metric, r.verdict) for r in delta_io.read(spark, lake, t.DRIFT_ALERTS)
                        .where(F.col(t.RUN_DATE) == DAY).collect()),
        "recs": recs.where(F.col(t.RUN_DATE) == DAY).count(),
        "latest_dates": sorted(str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
                               .select(t.RUN_DATE).distinct().collect()),
        "pg": (pg[0], str(pg[1]), str(pg[2])),
        "champion": MlflowClient(uri).get_model_version_by_alias("movierec-ranker", "champion").version,
        "runs": len(MlflowClient(uri).search_runs(
            [MlflowClient(uri).get_experiment_by_name("movierec").experiment_id])),
    }


@pytest.fixture(scope="module")
def nightly(spark, trained, airflow_home, pg_settings, tmp_path_factory):  # noqa: F811
    src = trained[0]
    root = tmp_path_factory.mktemp("nightly")
    shutil.copytree(src.path("lake"), root / "lake")
    shutil.copy(src["mlflow.tracking_uri"].removeprefix("sqlite:///"), root / "mlflow.db")
    uri = f"sqlite:///{root}/mlflow.db"
    env = {"MOVIEREC_LAKE": str(root / "lake"), "MOVIEREC_PROFILE": "test",
           "MLFLOW_TRACKING_URI": uri, **postgres.env_for(pg_settings)}
    before = delta_io.read(spark, root / "lake", t.RATINGS_TRAIN).count()
    week1 = (delta_io.read(spark, root / "lake", t.RATINGS_BUFFER).where(F.col(t.BATCH_WEEK) == 1).count())
    first = run_dags_test(airflow_home, DAY, env)
    after_first = _snapshot(spark, root / "lake", uri, pg_settings)
    second = run_dags_test(airflow_home, DAY, env)
    after_second = _snapshot(spark, root / "lake", uri, pg_settings)
    return dict(root=root, env=env, uri=uri, before=before, week1=week1, first=first,
                second=second, after_first=after_first, after_second=after_second)


def test_one_nightly_run_grows_train_checks_drift_trains_and_publishes(nightly):
    first, state = nightly["first"], nightly["after_first"]
    assert first.returncode == 0, output(first)[-5000:]
    assert state["train"] == nightly["before"] + nightly["week1"] > nightly["before"]
    assert state["increments"] == nightly["week1"]
    assert len(state["drift"]) == 6
    assert state["recs"] > 0 and state["latest_dates"] == [DAY]
    assert state["pg"] == (state["recs"], DAY, DAY)
    assert state["runs"] == 3          # two from the fixture's training, one nightly refit
    for job in ("ingest_increment", "detect_drift", "train_als", "recommend", "smoke_check"):
        assert f"jobs/{job}.py" in output(first)


def test_a_second_run_for_the_same_date_changes_no_table(nightly):
    second, a, b = nightly["second"], nightly["after_first"], nightly["after_second"]
    assert second.returncode == 0, output(second)[-5000:]
    same = {k: v for k, v in b.items() if k != "runs"}
    assert same == {k: v for k, v in a.items() if k != "runs"}
    assert b["runs"] == a["runs"] + 1  # the refit ran again, gated: the champion did not move


def test_postgres_down_fails_the_run_and_keeps_the_published_table(nightly, airflow_home, spark,  # noqa: F811
                                                                   pg_settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**nightly["env"], postgres.ENV_PORT: str(closed)}
    proc = run_dags_test(airflow_home, NEXT_DAY, env)
    assert proc.returncode != 0
    log = output(proc)
    assert re.search(r"recommend failed: .*127\.0\.0\.1:%d" % closed, log), log[-5000:]
    assert pg_settings.password not in log
    with postgres.connect(pg_settings) as conn:
        n, day = conn.execute("SELECT count(*), max(run_date) FROM recommendations").fetchone()
    assert (n, str(day)) == (nightly["after_second"]["recs"], DAY)
