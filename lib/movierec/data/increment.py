"""ingest_increment: the next slice of new ratings, appended to ratings_train exactly once.

With the MovieLens replay, the next slice is the next weekly batch of ratings_buffer (the last
10% by time). Each run date takes at most one batch, recorded in ratings_increments, so a rerun
for the same date finds its batch there and adds nothing; the MERGE on (user_id, movie_id, ts)
makes even a half-finished earlier attempt safe to repeat.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import Config
from movierec.core.logs import stage

log = logging.getLogger(__name__)
KEY = (t.USER_ID, t.MOVIE_ID, t.TS)


def next_batch(spark: SparkSession, lake, run_date: str) -> tuple[int | None, bool]:
    """(batch_week for run_date, already_taken). None when the buffer is used up."""
    if delta_io.exists(spark, lake, t.RATINGS_INCREMENTS):
        taken = delta_io.read(spark, lake, t.RATINGS_INCREMENTS)
        mine = taken.where(F.col(t.RUN_DATE) == F.lit(run_date)).agg(F.max(t.BATCH_WEEK)).first()[0]
        if mine is not None:
            return mine, True
        last = taken.agg(F.max(t.BATCH_WEEK)).first()[0] or 0
    else:
        last = 0
    buffer = delta_io.read(spark, lake, t.RATINGS_BUFFER)
    upcoming = buffer.where(F.col(t.BATCH_WEEK) > last).agg(F.min(t.BATCH_WEEK)).first()[0]
    return upcoming, False


def merge_into_train(spark: SparkSession, lake, rows: DataFrame) -> None:
    """Inserts the rows ratings_train lacks; rows it has are left alone (idempotent)."""
    target = delta_io.delta_table(spark, lake, t.RATINGS_TRAIN)
    on = " AND ".join(f"train.{c} = new.{c}" for c in KEY)
    (target.alias("train").merge(delta_io.conform(rows, t.RATINGS_TRAIN).alias("new"), on)
     .whenNotMatchedInsertAll().execute())


def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    lake = cfg.path("lake")
    week, taken = next_batch(spark, lake, run_date)
    if week is None:
        log.info("ratings_buffer is used up: no new ratings for %s", run_date)
        return {"run_date": run_date, "batch_week": None, "added": 0}
    train_before = delta_io.read(spark, lake, t.RATINGS_TRAIN).count()
    with stage(log, f"increment {run_date}: buffer week {week}") as st:
        batch = (delta_io.read(spark, lake, t.RATINGS_BUFFER).where(F.col(t.BATCH_WEEK) == week)
                 .withColumn(t.RUN_DATE, F.lit(run_date).cast("date")))
        # ratings_train first, the log row second: a crash in between is repaired by the rerun,
        # whose MERGE finds the rows already there
        merge_into_train(spark, lake, batch)
        if not taken:
            delta_io.append(batch, lake, t.RATINGS_INCREMENTS)
        st.rows = batch.count()
    added = delta_io.read(spark, lake, t.RATINGS_TRAIN).count() - train_before
    if taken:
        log.info("run date %s already took buffer week %d: %d rows added now (a rerun adds none)",
                 run_date, week, added)
    log.info("ratings_train: %s -> %s rows", f"{train_before:,}", f"{train_before + added:,}")
    return {"run_date": run_date, "batch_week": week, "slice_rows": st.rows, "added": added,
            "train_rows": train_before + added}
