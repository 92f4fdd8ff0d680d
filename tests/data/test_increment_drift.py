"""ingest_increment, the known ratings and detect_drift, on small hand-made lakes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config
from movierec.data import drift, increment, known, split
from tests.helpers import copy_lake

START = datetime(2020, 1, 1, tzinfo=timezone.utc)


def _ts(day: float) -> datetime:
    return START + timedelta(days=day)


@pytest.fixture(scope="module")
def replay_source(spark, tmp_path_factory):
    """Train: users 1-3 over 10 weeks; test: 2 ratings, one by a new user 4; buffer: 2 weekly
    batches, week 2 with a new user 9."""
    lake = tmp_path_factory.mktemp("replay") / "lake"
    train = [(u, m, float(1 + (u + m) % 5), _ts(d)) for d in range(0, 70, 2) for u in (1, 2, 3)
             for m in (d % 7 + 1,)]
    test = [(1, 8, 3.0, _ts(70)), (4, 8, 4.0, _ts(70.5))]
    buffer = [(1, 20, 4.0, _ts(71), 1), (2, 21, 3.0, _ts(72), 1),
              (9, 20, 5.0, _ts(78), 2), (9, 22, 5.0, _ts(79), 2), (1, 22, 4.5, _ts(79), 2)]
    delta_io.overwrite(spark.createDataFrame(train, t.SCHEMAS[t.RATINGS]), lake, t.RATINGS_TRAIN)
    delta_io.overwrite(spark.createDataFrame(test, t.SCHEMAS[t.RATINGS]), lake, t.RATINGS_TEST)
    delta_io.overwrite(spark.createDataFrame(buffer, t.SCHEMAS[t.RATINGS_BUFFER]), lake, t.RATINGS_BUFFER)
    return lake, len(train) + len(test)


@pytest.fixture
def replay_lake(replay_source, lake):
    """A copy of the replay lake at the test's `lake`; returns the train + test row count."""
    copy_lake(replay_source[0], lake)
    return replay_source[1]


@pytest.fixture(scope="module")
def replayed(spark, replay_source, tmp_path_factory):
    """The replay lake after the nights of 2026-01-01 (twice), -02 and -03 (the buffer used up),
    and drift of -02: what each call returned and what the tables held. Read only. (That a
    rerun of drift for a date replaces its rows: tests/e2e/test_dag_run.py's rerun of a night.)"""
    lake = copy_lake(replay_source[0], tmp_path_factory.mktemp("replayed") / "lake")
    cfg = load_config("test", [f"lake={lake}"])
    backtest = (t.RATINGS_TRAIN, t.RATINGS_TEST, t.RATINGS_BUFFER)
    out = {"lake": lake, "initial_rows": replay_source[1],
           "backtest_versions": {n: delta_io.version(spark, lake, n) for n in backtest}}
    out["first"] = increment.run(spark, cfg, "2026-01-01")
    out["version"] = delta_io.version(spark, lake, t.RATINGS_INCREMENTS)
    out["again"] = increment.run(spark, cfg, "2026-01-01")
    out["version_again"] = delta_io.version(spark, lake, t.RATINGS_INCREMENTS)
    out["second"] = increment.run(spark, cfg, "2026-01-02")
    out["drift"] = drift.run(spark, cfg, "2026-01-02")
    out["drift_rows"] = {r["metric"]: r for r in delta_io.read(spark, lake, t.DRIFT_ALERTS).collect()}
    out["logged"] = {(str(r[0]), r[1]) for r in delta_io.read(spark, lake, t.RATINGS_INCREMENTS)
                     .select(t.RUN_DATE, t.BATCH_WEEK).distinct().collect()}
    out["increment_rows"] = delta_io.read(spark, lake, t.RATINGS_INCREMENTS).count()
    out["used_up"] = increment.run(spark, cfg, "2026-01-03")
    out["known_by_date"] = {d: known.known_ratings(spark, lake, d).count()
                            for d in (None, "2025-12-31", "2026-01-01", "2026-01-03")}
    out["sources"] = {r[0]: r[1] for r in delta_io.read(spark, lake, t.RATINGS_INCREMENTS)
                      .groupBy(t.ARRIVAL_SOURCE).count().collect()}
    out["backtest_versions_after"] = {n: delta_io.version(spark, lake, n) for n in backtest}
    out["cfg"] = cfg
    return out


def test_each_run_date_takes_the_next_week_once(replayed):
    r = replayed
    assert (r["first"]["batch_week"], r["first"]["added"]) == (1, 2)
    assert (r["again"]["batch_week"], r["again"]["added"]) == (1, 0)
    assert r["version_again"] == r["version"]  # nothing to insert: no commit at all
    assert (r["second"]["batch_week"], r["second"]["added"]) == (2, 3)
    assert r["logged"] == {("2026-01-01", 1), ("2026-01-02", 2)}
    assert r["increment_rows"] == 5
    assert r["used_up"] == {"run_date": "2026-01-03", "batch_week": None, "added": 0}


def test_arrivals_never_touch_the_backtest_and_known_grows_by_each_night(replayed):
    r = replayed
    assert r["backtest_versions_after"] == r["backtest_versions"]
    n = r["initial_rows"]
    assert r["known_by_date"] == {None: n, "2025-12-31": n, "2026-01-01": n + 2, "2026-01-03": n + 5}
    assert r["sources"] == {"ratings_buffer week 1": 2, "ratings_buffer week 2": 3}


def test_known_ratings_count_a_split_arrival_once_and_a_rerating_replaces(spark, lake):
    rows = lambda data: spark.createDataFrame(data, t.SCHEMAS[t.RATINGS])  # noqa: E731
    delta_io.overwrite(rows([(1, 10, 3.0, _ts(0)), (1, 11, 2.0, _ts(1))]), lake, t.RATINGS_TRAIN)
    delta_io.overwrite(rows([(2, 10, 4.0, _ts(2))]), lake, t.RATINGS_TEST)
    arrived = [(1, 11, 2.0, _ts(1), "2026-01-01", None, "a.csv"),     # also in train: once
               (1, 11, 5.0, _ts(9), "2026-01-02", None, "b.csv"),     # re-rates (1, 11)
               (2, 12, 1.0, _ts(8), "2026-01-02", None, "b.csv"),
               (2, 12, 2.5, _ts(9), "2026-01-03", None, "c.csv")]     # later than as_of below
    df = spark.createDataFrame(arrived, "user_id int, movie_id int, rating float, ts timestamp, "
                                        "run_date string, batch_week int, arrival_source string")
    delta_io.overwrite(df, lake, t.RATINGS_INCREMENTS)
    got = {(r[0], r[1]): r[2] for r in known.known_ratings(spark, lake, "2026-01-02")
           .select(t.USER_ID, t.MOVIE_ID, t.RATING).collect()}
    assert got == {(1, 10): 3.0, (1, 11): 5.0, (2, 10): 4.0, (2, 12): 1.0}
    assert known.known_ratings(spark, lake, "2026-01-03").where("movie_id = 12").first()[t.RATING] == 2.5
    delta_io.overwrite(df.where("user_id = 1").withColumn(t.USER_ID, F.lit(3)).unionByName(df),
                       lake, t.RATINGS_INCREMENTS)   # user 3 arrives with the first night
    for as_of in (None, "2025-12-31", "2026-01-01", "2026-01-03"):
        users = {r[0] for r in known.known_users(spark, lake, as_of).collect()}
        assert users == {r[0] for r in known.known_ratings(spark, lake, as_of).select(t.USER_ID).collect()}
    assert {r[0] for r in known.known_users(spark, lake, "2026-01-01").collect()} == {1, 2, 3}


def test_psi_by_hand():
    expected, actual = np.array([50.0, 50.0]), np.array([25.0, 75.0])
    by_hand = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert drift.psi(expected, actual) == pytest.approx(by_hand)
    assert drift.psi(expected, expected) == 0.0


@pytest.mark.parametrize("metric,value,threshold,want", [
    ("rating_psi", 0.3, 0.1, "drift"), ("rating_psi", 0.05, 0.1, "ok"),
    ("rating_chi2_p", 1e-9, 1e-6, "drift"), ("rating_chi2_p", 0.2, 1e-6, "ok"),
    ("ratings_per_user_ratio", 0.4, 2.0, "drift"), ("ratings_per_user_ratio", 1.5, 2.0, "ok"),
    ("mean_rating_z", -3.5, 3.0, "drift"), ("new_user_share", float("nan"), 0.5, "ok"),
])
def test_verdicts(metric, value, threshold, want):
    assert drift.verdict(metric, value, threshold) == want


def test_drift_rows_for_the_slice(replayed):
    rows, result = replayed["drift_rows"], replayed["drift"]
    assert len(rows) == 6 == result["metrics"]
    # week 2: 3 ratings, 2 of them by user 9 whom train lacks; movie 22 is new to train
    assert rows["new_user_share"]["value"] == pytest.approx(2 / 3)
    assert rows["new_user_share"]["verdict"] == "drift"
    assert rows["new_movie_share"]["value"] == pytest.approx(2 / 3)
    assert all(str(r["run_date"]) == "2026-01-02" for r in rows.values())
    assert "new_user_share" in result["drift"]


def test_drift_without_an_increment_names_the_job(spark, replayed):
    with pytest.raises(drift.DriftError, match="run `ingest_increment`"):
        drift.run(spark, replayed["cfg"], "2026-02-01")


def test_a_resplit_after_the_nights_keeps_every_known_rating_once(spark, replayed, tmp_path):
    """What a re-ingest with --force does downstream: split runs again on `ratings`; arrivals
    live in ratings_increments, which split never writes, and are counted once."""
    lake = copy_lake(replayed["lake"], tmp_path / "lake")
    cfg = load_config("test", [f"lake={lake}"])
    night = "2026-01-03"
    before = known.known_ratings(spark, lake, night)
    everything = before.unionByName(known.initial_load(spark, lake)).distinct()
    delta_io.overwrite(everything, lake, t.RATINGS)
    resplit = split.run(spark, cfg, night)
    assert not resplit.skipped and resplit.n_buffer > 0   # train / test cut elsewhere now
    after = known.known_ratings(spark, lake, night)
    keys = [t.USER_ID, t.MOVIE_ID, t.TS]
    assert after.count() == before.count() == after.select(*keys).distinct().count()
    assert sorted(map(tuple, after.collect())) == sorted(map(tuple, before.collect()))
    assert delta_io.read(spark, lake, t.RATINGS_INCREMENTS).count() == replayed["increment_rows"]
