"""ingest_increment: tonight's new ratings, recorded once as arrivals in ratings_increments.

From files: `--source DIR` takes the new rating and movie files of a landing folder (landing.py).
With the MovieLens replay (the default), tonight's ratings are the next weekly batch of ratings_buffer (the
last 10% by time). Each run date takes at most one batch; the batch's rows, stamped with the run
date and their source, are MERGEd into ratings_increments on (user_id, movie_id, ts) in one
commit, so a rerun for the same date finds its batch there and adds nothing, and a killed run
left either all of the batch or none of it. The backtest's ratings_train and ratings_test are
never touched: production reads `known.known_ratings` instead.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.logs import stage
from movierec.data import landing
from movierec.data.known import record_arrivals

log = logging.getLogger(__name__)


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


@job_guard.job("ingest_increment")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    if cfg.increment.source:
        return landing.run(spark, cfg, run_date)
    lake = cfg.path("lake")
    week, taken = next_batch(spark, lake, run_date)
    if week is None:
        log.info("ratings_buffer is used up: no new ratings for %s", run_date)
        return {"run_date": run_date, "batch_week": None, "added": 0}
    with stage(log, f"increment {run_date}: buffer week {week}") as st:
        batch = (delta_io.read(spark, lake, t.RATINGS_BUFFER).where(F.col(t.BATCH_WEEK) == week)
                 .withColumn(t.RUN_DATE, F.lit(run_date).cast("date"))
                 .withColumn(t.ARRIVAL_SOURCE, F.lit(f"ratings_buffer week {week}")))
        st.rows = added = record_arrivals(spark, lake, batch)
    if taken:
        log.info("run date %s already took buffer week %d: %d rows added now (a rerun adds none)",
                 run_date, week, added)
    log.info("ratings_increments: %s arrived ratings added for %s", f"{added:,}", run_date)
    return {"run_date": run_date, "batch_week": week, "added": added}
