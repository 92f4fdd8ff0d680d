"""Known ratings as of a run date: the one definition of what production may learn from.

A rating is known as of D when it is in the backtest's train or test period (the initial load:
the buffer is the future) or when it arrived on or before D (ratings_increments, where each
arrival keeps its run date, source and batch). "Known as of D" is therefore a filter over two
tables, never a copy, and a re-split cannot drop an arrival: ratings_increments is written by
ingest_increment only.

An arrival that the (re-)split already placed in train or test is not counted twice; a rating
that arrives for a (user, movie) pair already known replaces the known one (a re-rating), and of
several arrivals for one pair the one with the newest timestamp counts.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t

RATING_COLUMNS = list(t.SCHEMAS[t.RATINGS].names)
PAIR = [t.USER_ID, t.MOVIE_ID]
KEY = (t.USER_ID, t.MOVIE_ID, t.TS)   # an arrival's natural key


def initial_load(spark: SparkSession, lake) -> DataFrame:
    """The ratings known before any night: the backtest's train and test periods."""
    return (delta_io.read(spark, lake, t.RATINGS_TRAIN)
            .unionByName(delta_io.read(spark, lake, t.RATINGS_TEST)))


def arrivals(spark: SparkSession, lake, after: str | date | None = None,
             until: str | date | None = None) -> DataFrame:
    """Arrived ratings with after < run_date <= until (either bound open when None), with their
    arrival columns; empty when nothing has arrived yet."""
    if not delta_io.exists(spark, lake, t.RATINGS_INCREMENTS):
        return spark.createDataFrame([], t.SCHEMAS[t.RATINGS_INCREMENTS])
    rows = delta_io.read(spark, lake, t.RATINGS_INCREMENTS)
    if after is not None:
        rows = rows.where(F.col(t.RUN_DATE) > F.lit(str(after)).cast("date"))
    if until is not None:
        rows = rows.where(F.col(t.RUN_DATE) <= F.lit(str(until)).cast("date"))
    return rows


def known_ratings(spark: SparkSession, lake, as_of: str | date | None) -> DataFrame:
    """(user_id, movie_id, rating, ts): every rating known as of `as_of`, one per (user, movie).
    None: the initial load only."""
    base = initial_load(spark, lake)
    if as_of is None or not delta_io.exists(spark, lake, t.RATINGS_INCREMENTS):
        return base
    arrived = arrivals(spark, lake, until=as_of).select(*RATING_COLUMNS)
    # already in train/test: counted once. Found by a semi-join of the (large) initial load
    # against the (small) arrivals, which streams the load past a broadcast of the arrivals;
    # an anti-join of the arrivals against the load would shuffle all of it.
    in_base = base.join(arrived, RATING_COLUMNS, "left_semi")
    new = arrived.join(in_base, RATING_COLUMNS, "left_anti")
    newest = Window.partitionBy(*PAIR).orderBy(F.col(t.TS).desc(), F.col(t.RATING).desc())
    latest_new = (new.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1).drop("_n"))
    return (base.join(latest_new.select(*PAIR), PAIR, "left_anti").unionByName(latest_new))


def known_users(spark: SparkSession, lake, as_of: str | date | None) -> DataFrame:
    """(user_id): the users of known_ratings(as_of), from the user column of the two tables
    alone: no pair of them needs matching to know who has a rating."""
    users = initial_load(spark, lake).select(t.USER_ID)
    if as_of is not None:
        users = users.unionByName(arrivals(spark, lake, until=as_of).select(t.USER_ID))
    return users.distinct()


def day_before(run_date: str | date) -> str:
    return (date.fromisoformat(str(run_date)) - timedelta(days=1)).isoformat()


def record_arrivals(spark: SparkSession, lake, rows: DataFrame) -> int:
    """Inserts the arrivals ratings_increments lacks (by KEY) in one MERGE; those it has are left
    alone, so recording the same arrivals twice adds nothing. Returns the rows inserted (the
    MERGE's own metrics: no count of the table before and after)."""
    target = delta_io.ensure(spark, lake, t.RATINGS_INCREMENTS)
    on = " AND ".join(f"known.{c} = new.{c}" for c in KEY)
    metrics = (target.alias("known").merge(delta_io.conform(rows, t.RATINGS_INCREMENTS).alias("new"), on)
               .whenNotMatchedInsertAll().execute().first())
    return int(metrics["num_inserted_rows"]) if metrics is not None else 0
