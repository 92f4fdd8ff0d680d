"""The chronological split: exact cases by hand, invariants on real data, idempotency."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.data import split


def _ratings(spark, rows):
    data = [(u, m, float(r), datetime.fromtimestamp(s, timezone.utc)) for u, m, r, s in rows]
    return spark.createDataFrame(data, t.SCHEMAS[t.RATINGS])


def test_kth_key_breaks_ties_by_user_then_movie(spark):
    # three ratings share a second; the order must be (ts, user, movie), not file order
    df = _ratings(spark, [(5, 1, 3, 100), (2, 9, 3, 100), (2, 3, 3, 100), (1, 1, 3, 50),
                          (1, 2, 3, 90_000)])
    expected = [(50, 1, 1), (100, 2, 3), (100, 2, 9), (100, 5, 1), (90_000, 1, 2)]
    assert [split.kth_key(df, k) for k in range(1, 6)] == expected
    # a day too big to collect is narrowed to the second that holds the cut: same keys
    assert [split.kth_key(df, k, collect_limit=1) for k in range(1, 6)] == expected


def test_labels_by_hand(spark):
    df = _ratings(spark, [(1, 1, 4, 10), (1, 2, 4, 20), (2, 1, 4, 20), (2, 2, 4, 30), (3, 3, 4, 40)])
    labelled = split.label_split(df, (20, 1, 2), (20, 2, 1))
    got = {(r.user_id, r.movie_id): r.split for r in labelled.collect()}
    assert got == {(1, 1): "train", (1, 2): "train", (2, 1): "test", (2, 2): "buffer", (3, 3): "buffer"}


def test_cut_positions_round_to_nearest():
    assert split.cut_positions(100_836, 0.7, 0.2) == (70_585, 90_752)
    assert split.cut_positions(10, 0.7, 0.2) == (7, 9)


def test_batch_weeks_count_from_the_first_buffer_rating(spark):
    day = 86_400
    df = _ratings(spark, [(1, 1, 4, 1000), (1, 2, 4, 1000 + 7 * day - 1), (1, 3, 4, 1000 + 7 * day),
                          (1, 4, 4, 1000 + 20 * day)])
    weeks = sorted((r.movie_id, r.batch_week) for r in split.add_batch_week(df, 7).collect())
    assert weeks == [(1, 1), (2, 1), (3, 2), (4, 3)]


def test_cold_start_report_by_hand(spark):
    train = _ratings(spark, [(1, 1, 4, 10), (2, 2, 4, 10)])
    test = _ratings(spark, [(1, 2, 4, 20), (3, 1, 4, 20), (3, 9, 4, 20), (1, 9, 4, 20)])
    report = split.cold_start_report(train, test)
    assert report["users_new_share"] == 0.5            # user 3 of users {1, 3}
    assert report["ratings_new_user_share"] == 0.5     # 2 of 4 ratings
    assert report["movies_new_share"] == 1 / 3         # movie 9 of {1, 2, 9}
    assert report["ratings_new_movie_share"] == 0.5
    assert report["ratings_cold_share"] == 0.75


def test_too_few_ratings_is_a_clear_error(spark, make_cfg, lake):
    delta_io.overwrite(_ratings(spark, [(1, 1, 4, 10), (1, 2, 4, 20)]), lake, t.RATINGS)
    with pytest.raises(split.SplitError, match="too few"):
        split.run(spark, make_cfg())


def test_missing_ratings_says_which_job_to_run(spark, make_cfg):
    with pytest.raises(delta_io.MissingTableError, match="run `ingest` first"):
        split.run(spark, make_cfg())


def test_real_split_counts_and_cold_start(ingested):
    info = ingested.split
    assert (info["n_train"], info["n_test"], info["n_buffer"]) == (70_585, 20_167, 10_084)
    assert info["cold_start"]["test_users_new_share"] == pytest.approx(0.873, abs=0.001)


def test_real_split_has_no_leakage_and_adds_up(spark, ingested):
    lake = ingested.lake
    train, test, buffer = (delta_io.read(spark, lake, n) for n in
                           (t.RATINGS_TRAIN, t.RATINGS_TEST, t.RATINGS_BUFFER))
    span = lambda df: df.agg(F.min(t.TS), F.max(t.TS)).first()  # noqa: E731
    (_, train_max), (test_min, test_max), (buffer_min, _) = span(train), span(test), span(buffer)
    assert train_max <= test_min and test_max <= buffer_min
    cols = [t.USER_ID, t.MOVIE_ID, t.RATING, t.TS]
    parts = train.unionByName(test).unionByName(buffer.select(cols))
    ratings = delta_io.read(spark, lake, t.RATINGS)
    assert parts.count() == ratings.count()
    assert parts.exceptAll(ratings).count() == 0 and ratings.exceptAll(parts).count() == 0
    weeks = [r[0] for r in buffer.select(t.BATCH_WEEK).distinct().orderBy(t.BATCH_WEEK).collect()]
    assert weeks[0] == 1 and weeks == sorted(weeks)
    info = delta_io.read(spark, lake, t.SPLIT_INFO).first()
    assert info.train_cutoff_ts == train_max and info.test_cutoff_ts == test_max


def test_rerun_is_a_no_op(spark, ingested):
    cfg, lake, first = ingested.cfg, ingested.lake, ingested.split
    names = (t.RATINGS_TRAIN, t.RATINGS_TEST, t.RATINGS_BUFFER, t.SPLIT_INFO)
    before = {n: delta_io.version(spark, lake, n) for n in names}
    again = split.run(spark, cfg)
    assert again.skipped and again.split_id == first["split_id"]
    assert {n: delta_io.version(spark, lake, n) for n in names} == before


def test_a_split_that_died_between_train_and_test_is_refused_then_redone_the_same(
        spark, ingested, make_cfg, monkeypatch):
    """Killed after train, before test: no job reads the half-written split, and the rerun
    writes the split any lake with these ratings gets."""
    lake = ingested.lake
    cfg = make_cfg()
    shutil.copytree(lake / t.RATINGS, cfg.path("lake") / t.RATINGS)   # the same ratings, no split yet
    monkeypatch.setenv(job_guard.FAULT_ENV, f"raise:{t.RATINGS_TEST}")
    with pytest.raises(job_guard.SimulatedCrash):
        split.run(spark, cfg)
    monkeypatch.delenv(job_guard.FAULT_ENV)
    with pytest.raises(job_guard.UnfinishedJobError,
                       match=r"`split` .* began writing ratings_train, ratings_test\. .* run `split` again"):
        delta_io.read(spark, cfg.path("lake"), t.RATINGS_TRAIN)
    assert not split.run(spark, cfg).skipped
    assert job_guard.markers(cfg.path("lake")) == []
    for name in (t.RATINGS_TRAIN, t.RATINGS_TEST, t.RATINGS_BUFFER):
        a, b = delta_io.read(spark, lake, name), delta_io.read(spark, cfg.path("lake"), name)
        assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0
