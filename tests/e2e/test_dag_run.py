"""The nightly DAG for real: one `airflow dags test` on a copy of the pipeline's trained
ml-latest-small lake (run in the background, tests/background.py), then every job rerun in this
process for the same date (nothing may change), then `airflow tasks test` of recommend with
PostgreSQL down."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.data import drift, increment
from movierec.data.known import known_ratings
from movierec.model import train
from movierec.serve import pg_settings as pgs, recommend, smoke
from tests.background import NIGHTLY_DATE, PG_DOWN_DATE
from tests.e2e.airflow_cli import output
from tests.helpers import PIPELINE_DATE as DAY1, ROOT
from tests.pg_fixture import point_jobs_at

DAY = NIGHTLY_DATE   # a Monday: the nightly refit, no CV
JOBS = ("ingest_increment", "detect_drift", "train_als", "recommend", "smoke_check")


def snapshot(spark, lake, uri: str, pg) -> dict:
    with pgs.connect(pg) as conn:
        served = conn.execute("SELECT count(*), min(run_date), max(run_date) FROM recommendations").fetchone()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)   # not the process-wide registry
    recs = delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == DAY)
    return {
        "train": delta_io.read(spark, lake, t.RATINGS_TRAIN).count(),
        "train_version": delta_io.version(spark, lake, t.RATINGS_TRAIN),
        "increments": delta_io.read(spark, lake, t.RATINGS_INCREMENTS).count(),
        "known": known_ratings(spark, lake, DAY).count(),
        "drift": sorted((r.metric, r.verdict, r.value) for r in delta_io.read(spark, lake, t.DRIFT_ALERTS)
                        .where(F.col(t.RUN_DATE) == DAY).collect()),
        "gate": sorted(tuple(r) for r in delta_io.read(spark, lake, t.GATE_DECISIONS)
                       .drop("mlflow_run_id", "challenger_version", "reason").collect()),
        "metrics": sorted((r.model, r.metric, r.population, r.value) for r in
                          delta_io.read(spark, lake, t.MODEL_METRICS).where(F.col(t.RUN_DATE) == DAY).collect()),
        "recs": sorted(tuple(r) for r in recs.select(t.USER_ID, t.RANK, t.MOVIE_ID, t.SOURCE).collect()),
        "latest_dates": sorted(str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
                               .select(t.RUN_DATE).distinct().collect()),
        "pg": (served[0], str(served[1]), str(served[2])),
        "champion": client.get_model_version_by_alias("movierec-ranker", "champion").version,
        "runs": len(client.search_runs([client.get_experiment_by_name("movierec").experiment_id])),
    }


@pytest.fixture(scope="module")
def nightly(spark, pipeline_run, nightly_run):
    """The background `airflow dags test` (tests/background.py), and the tables around it."""
    run = nightly_run
    assert run.run.returncode == 0, output(run.run)[-5000:]
    source = pipeline_run.lake   # what the DAG's copy held before it ran
    before = delta_io.read(spark, source, t.RATINGS_TRAIN).count()
    initial = before + delta_io.read(spark, source, t.RATINGS_TEST).count()
    week1 = delta_io.read(spark, source, t.RATINGS_BUFFER).where(F.col(t.BATCH_WEEK) == 1).count()
    uri = run.cfg.mlflow.tracking_uri
    return dict(lake=run.lake, env=run.env, uri=uri, pg=run.pg, cfg=run.cfg, before=before,
                week1=week1, initial=initial, run=run.run, pg_down=run.pg_down, closed_port=run.closed_port,
                after=snapshot(spark, run.lake, uri, run.pg))


def test_one_nightly_run_adds_arrivals_checks_drift_trains_and_publishes(nightly):
    state, log = nightly["after"], output(nightly["run"])
    assert state["train"] == nightly["before"]          # the backtest's train never grows
    assert state["increments"] == nightly["week1"] > 0
    assert state["known"] == nightly["initial"] + nightly["week1"]
    assert f"fitted on {state['known']:,} known ratings" in log
    assert len(state["drift"]) == 6
    # a refit night reruns no backtest: train and test are the champion's, and so are its numbers
    assert state["metrics"] == [] and "the backtest is not rerun" in log
    assert state["latest_dates"] == [DAY]
    assert state["pg"] == (len(state["recs"]), DAY, DAY)
    assert state["runs"] == 2          # the pipeline's training, and tonight's refit
    for job in JOBS:
        assert f"jobs/{job}.py" in log
    assert "refit with champion v1's parameters" in log


def test_the_gate_judged_tonight_on_arrivals_its_challenger_never_saw(spark, nightly):
    rows = delta_io.read(spark, nightly["lake"], t.GATE_DECISIONS).where(F.col(t.RUN_DATE) == DAY).collect()
    assert len(rows) == 1
    gate = rows[0]
    # the test profile's 3-day window starts before the pipeline's lists of DAY1: champion v1
    # served nothing the window could score, so no challenger is fitted and the champion stays
    # (a challenger fitted for real: tests/model/test_prequential.py)
    cutoff = (date.fromisoformat(DAY) - timedelta(days=nightly["cfg"].train.gate_window_days)).isoformat()
    assert (str(gate.training_cutoff), str(gate.window_end)) == (cutoff, DAY) and cutoff < DAY1
    assert gate.window_ratings == nightly["week1"] and gate.window_users >= 3
    assert not gate.moved and gate.champion_version == "1" and gate.gain is None
    assert f"served no lists on or before {cutoff}" in gate.reason


def test_tonight_the_live_lists_were_scored_on_the_ratings_that_came_after_them(spark, nightly):
    lake, k = nightly["lake"], nightly["cfg"].recommend.k
    rows = {r.metric: r for r in delta_io.read(spark, lake, t.SERVING_METRICS)
            .where(F.col(t.RUN_DATE) == DAY).collect()}
    assert set(rows) == {"hit_rate", "precision", "recall", "ndcg", "users",
                         "new_user_fallback_coverage", "arrived_ratings"}
    assert all(str(r.live_run_date) == DAY1 and r.k == k for r in rows.values())
    assert rows["arrived_ratings"].value == nightly["week1"]
    # plain Python: which week-1 users with a liked rating had one of them on their DAY1 list
    arrived = delta_io.read(spark, lake, t.RATINGS_INCREMENTS).where(F.col(t.RUN_DATE) == DAY).collect()
    liked: dict[int, set[int]] = {}
    for r in arrived:
        if r.rating >= nightly["cfg"].train.relevant_threshold:
            liked.setdefault(r.user_id, set()).add(r.movie_id)
    day1 = delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == DAY1).collect()
    shown: dict[int, set[int]] = {}
    for r in day1:
        shown.setdefault(r.user_id, set()).add(r.movie_id)
    popular = {r.movie_id for r in delta_io.read(spark, lake, t.POPULAR_MOVIES)
               .where(F.col(t.RUN_DATE) == DAY1).collect()}
    hits = [bool(movies & shown.get(user, popular)) for user, movies in liked.items()]
    assert rows["users"].value == len(liked) > 0
    assert rows["hit_rate"].value == pytest.approx(sum(hits) / len(hits))
    client = MlflowClient(tracking_uri=nightly["uri"], registry_uri=nightly["uri"])
    serving = client.get_experiment_by_name(f"{nightly['cfg'].mlflow.experiment}-serving")
    runs = client.search_runs([serving.experiment_id], filter_string=f"tags.run_date = '{DAY}'")
    assert len(runs) == 1 and runs[0].data.metrics[f"serving.ndcg_at_{k}"] == pytest.approx(rows["ndcg"].value)
    assert "plots/serving_metrics.png" in {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}


def test_tonight_every_known_user_got_k_movies_and_none_they_rated_even_tonight(spark, nightly):
    """The second night's lists: the week's newcomers included, in Delta and in PostgreSQL,
    where DAY1's run is now the previous one. (The first night's: tests/serve/test_recommend.py.)"""
    lake, k, state = nightly["lake"], nightly["cfg"].recommend.k, nightly["after"]
    known = known_ratings(spark, lake, DAY)
    users = {u for u, _, _, _ in state["recs"]}
    assert len(users) == known.select(t.USER_ID).distinct().count() == 565   # 563 on DAY1, and 2 new
    assert len(state["recs"]) == len(users) * k
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    assert latest.join(known, [t.USER_ID, t.MOVIE_ID], "left_semi").count() == 0
    arrived = delta_io.read(spark, lake, t.RATINGS_INCREMENTS).where(F.col(t.RUN_DATE) == DAY)
    assert arrived.join(known_ratings(spark, lake, DAY1), t.USER_ID, "left_anti").limit(1).count() == 1
    with pgs.connect(nightly["pg"]) as conn:
        previous = conn.execute("SELECT user_id, rank, movie_id, run_date FROM recommendations_previous").fetchall()
    # last night's live lists, renamed in tonight's swap (pg_carry_over): exactly DAY1's run
    day1 = (delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == DAY1)
            .select(t.USER_ID, t.RANK, t.MOVIE_ID).collect())
    assert sorted(r[:3] for r in previous) == sorted(tuple(r) for r in day1) and len(day1) == 563 * k
    assert {str(r[3]) for r in previous} == {DAY1}


def test_every_job_rerun_for_the_same_date_changes_no_table(spark, nightly, monkeypatch):
    """What a second `dags test` of the date would do, job by job, in this process."""
    cfg, before = nightly["cfg"], nightly["after"]
    point_jobs_at(nightly["pg"], monkeypatch)
    assert increment.run(spark, cfg, DAY)["added"] == 0
    drift.run(spark, cfg, DAY)
    refit = train.run(spark, cfg.with_overrides({"train.mode": "refit"}), DAY)
    assert not refit.gate.moved and "champion stays" in refit.gate.reason
    recommend.run(spark, cfg, DAY)
    smoke.run(spark, cfg, DAY)
    after = snapshot(spark, nightly["lake"], nightly["uri"], nightly["pg"])
    # one more MLflow run (the refit, gated: the champion did not move); every table the same,
    # model_metrics included: the same data and parameters give the same numbers
    assert after["runs"] == before["runs"] + 1
    assert {k: v for k, v in after.items() if k != "runs"} == {k: v for k, v in before.items() if k != "runs"}


def test_recommend_with_postgres_down_fails_under_spark_submit_and_keeps_the_table(nightly):
    """`airflow tasks test` of one task (run in the background after the DAG): spark-submit
    starts the job with the rendered arguments, the job fails on the closed port before any
    Spark work, PostgreSQL keeps its run, and the password shows nowhere. (`airflow tasks test`
    exits 0 whatever the task does, in Airflow 3.3: the failure is in its log.)"""
    closed, log = nightly["closed_port"], output(nightly["pg_down"])
    assert "Cannot execute: spark-submit" in log and "Error code is: 1." in log, log[-3000:]
    assert (f"spark-submit --master local[2] --name movierec-recommend {ROOT}/jobs/recommend.py "
            f"--profile test --lake {nightly['lake']} --run-date {PG_DOWN_DATE}") in log, log[-3000:]
    assert f"lake: {nightly['lake']}" in log, log[-3000:]   # the job's own config dump
    assert re.search(r"recommend failed: .*127\.0\.0\.1:%d" % closed, log), log[-5000:]
    assert nightly["pg"].secret() not in log
    with pgs.connect(nightly["pg"]) as conn:
        n, day = conn.execute("SELECT count(*), max(run_date) FROM recommendations").fetchone()
    assert (n, str(day)) == (len(nightly["after"]["recs"]), DAY)
