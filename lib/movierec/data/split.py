"""Chronological train / test / buffer split by global time, with no leakage.

Ratings are ordered by (ts, user_id, movie_id): after ingest a (user, movie) pair is unique, so
this order is total and the split is the same on every run. The cut points are found exactly
without a global sort: a per-day histogram locates the day holding the k-th rating, and only
that day's keys are sorted on the driver (a day of more than DAY_COLLECT_LIMIT ratings is first
narrowed to the second holding the cut).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.core.logs import stage

log = logging.getLogger(__name__)

SPLIT = "split"
TRAIN, TEST, BUFFER = "train", "test", "buffer"
Key = tuple[int, int, int]  # (epoch seconds, user_id, movie_id)
_DAY = 86_400


class SplitError(UserError, ValueError):
    pass


def _seconds() -> Column:
    return F.unix_seconds(F.col(t.TS))


# Ratings of one day the driver collects and sorts (~150 bytes each as Python tuples); a busier
# day holding a cut is narrowed to its second first (docs/scaling.md).
DAY_COLLECT_LIMIT = 1_000_000


def _locate(ratings: DataFrame, bucket: Column, k: int) -> tuple[int, int, int]:
    """(bucket value holding the k-th smallest key, k within that bucket, the bucket's size),
    from a histogram of `bucket`, which must grow with the key."""
    seen = 0
    for value, count in sorted(tuple(r) for r in ratings.groupBy(bucket.alias("b")).count().collect()):
        if seen + count >= k:
            return value, k - seen, count
        seen += count
    raise SplitError(f"rank {k} is past the {seen} ratings")


def kth_key(ratings: DataFrame, k: int, collect_limit: int = DAY_COLLECT_LIMIT) -> Key:
    """The k-th (1-based) smallest (ts, user_id, movie_id) key."""
    day = F.floor(_seconds() / _DAY)
    value, k, size = _locate(ratings, day, k)
    rows = ratings.where(day == value)
    if size > collect_limit:
        value, k, _ = _locate(rows, _seconds(), k)
        rows = rows.where(_seconds() == value)
    keys = sorted((r[0], r[1], r[2]) for r in rows.select(_seconds(), t.USER_ID, t.MOVIE_ID).collect())
    return keys[k - 1]


def at_or_before(key: Key) -> Column:
    """True for rows whose (ts, user_id, movie_id) sorts at or before `key`."""
    s, u, m = key
    user, movie = F.col(t.USER_ID), F.col(t.MOVIE_ID)
    return (_seconds() < s) | ((_seconds() == s) & ((user < u) | ((user == u) & (movie <= m))))


def cut_positions(n: int, train_frac: float, test_frac: float) -> tuple[int, int]:
    """Number of ratings in train, and in train + test."""
    return round(n * train_frac), round(n * (train_frac + test_frac))


def label_split(ratings: DataFrame, train_key: Key, test_key: Key) -> DataFrame:
    """Adds `split`: train up to train_key, test up to test_key, buffer after."""
    label = (F.when(at_or_before(train_key), F.lit(TRAIN))
             .when(at_or_before(test_key), F.lit(TEST)).otherwise(F.lit(BUFFER)))
    return ratings.withColumn(SPLIT, label)


def add_batch_week(buffer: DataFrame, batch_days: int) -> DataFrame:
    """Numbers the buffer's weekly batches 1, 2, ... from its first rating."""
    start = buffer.agg(F.min(_seconds())).first()[0]
    week = F.floor((_seconds() - F.lit(start)) / F.lit(batch_days * _DAY)).cast("int") + 1
    return buffer.withColumn(t.BATCH_WEEK, week)


def cold_start_report(train: DataFrame, other: DataFrame) -> dict[str, float]:
    """Shares of `other`'s users, movies and ratings that train has never seen."""
    seen_users = train.select(t.USER_ID).distinct().withColumn("_u", F.lit(1))
    seen_movies = train.select(t.MOVIE_ID).distinct().withColumn("_m", F.lit(1))
    flagged = (other.join(seen_users, t.USER_ID, "left").join(seen_movies, t.MOVIE_ID, "left")
               .select(t.USER_ID, t.MOVIE_ID, F.col("_u").isNull().alias("new_user"),
                       F.col("_m").isNull().alias("new_movie")))
    row = flagged.agg(
        F.count(F.lit(1)).alias("ratings"),
        F.sum(F.col("new_user").cast("long")).alias("ratings_new_user"),
        F.sum(F.col("new_movie").cast("long")).alias("ratings_new_movie"),
        F.sum((F.col("new_user") | F.col("new_movie")).cast("long")).alias("ratings_cold"),
        F.countDistinct(t.USER_ID).alias("users"),
        F.countDistinct(F.when(F.col("new_user"), F.col(t.USER_ID))).alias("users_new"),
        F.countDistinct(t.MOVIE_ID).alias("movies"),
        F.countDistinct(F.when(F.col("new_movie"), F.col(t.MOVIE_ID))).alias("movies_new"),
    ).first()
    share = lambda a, b: float(row[a]) / row[b] if row[b] else 0.0  # noqa: E731
    return {
        "users_new_share": share("users_new", "users"),
        "movies_new_share": share("movies_new", "movies"),
        "ratings_new_user_share": share("ratings_new_user", "ratings"),
        "ratings_new_movie_share": share("ratings_new_movie", "ratings"),
        "ratings_cold_share": share("ratings_cold", "ratings"),
    }


@dataclass
class SplitResult:
    split_id: str
    skipped: bool
    n_train: int
    n_test: int
    n_buffer: int
    buffer_weeks: int
    cold_start: dict[str, float]


@job_guard.job("split")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> SplitResult:
    lake = cfg.path("lake")
    ratings = delta_io.read(spark, lake, t.RATINGS)
    ratings_version = delta_io.version(spark, lake, t.RATINGS)
    latest = delta_io.latest_row(spark, lake, t.SPLIT_INFO, "created_at")
    if latest and latest["ratings_version"] == ratings_version:
        log.info("ratings version %d was split already (split %s): nothing to do",
                 ratings_version, latest["split_id"])
        return SplitResult(latest["split_id"], True, latest["n_train"], latest["n_test"],
                           latest["n_buffer"], latest["buffer_weeks"], dict(latest["cold_start"]))

    ratings = ratings.persist(StorageLevel.MEMORY_AND_DISK)
    n = ratings.count()
    n_train, n_train_test = cut_positions(n, cfg["split.train_frac"], cfg["split.test_frac"])
    if n_train < 1 or n_train_test == n_train or n_train_test == n:
        raise SplitError(f"{n} ratings are too few to split {cfg['split.train_frac']:.0%} / "
                         f"{cfg['split.test_frac']:.0%} / rest: ingest a larger release")
    with stage(log, "find cutoffs"):
        train_key, test_key = kth_key(ratings, n_train), kth_key(ratings, n_train_test)
    log.info("cutoffs: train up to %s, test up to %s (epoch s, user, movie)", train_key, test_key)

    labelled = label_split(ratings, train_key, test_key)
    train = labelled.where(F.col(SPLIT) == TRAIN).drop(SPLIT)
    test = labelled.where(F.col(SPLIT) == TEST).drop(SPLIT)
    buffer = add_batch_week(labelled.where(F.col(SPLIT) == BUFFER).drop(SPLIT), cfg["split.batch_days"])
    with stage(log, "write splits") as st:
        delta_io.overwrite(train, lake, t.RATINGS_TRAIN)
        delta_io.overwrite(test, lake, t.RATINGS_TEST)
        delta_io.overwrite(buffer, lake, t.RATINGS_BUFFER)
        st.rows = n
    written = {name: delta_io.read(spark, lake, name).count()
               for name in (t.RATINGS_TRAIN, t.RATINGS_TEST, t.RATINGS_BUFFER)}
    expected = {t.RATINGS_TRAIN: n_train, t.RATINGS_TEST: n_train_test - n_train,
                t.RATINGS_BUFFER: n - n_train_test}
    if written != expected:
        raise RuntimeError(f"split wrote {written}, expected {expected}")

    with stage(log, "cold-start report"):
        train_t = delta_io.read(spark, lake, t.RATINGS_TRAIN)
        cold = {f"test_{k}": v for k, v in
                cold_start_report(train_t, delta_io.read(spark, lake, t.RATINGS_TEST)).items()}
        cold.update({f"buffer_{k}": v for k, v in
                     cold_start_report(train_t, delta_io.read(spark, lake, t.RATINGS_BUFFER)).items()})
    weeks = delta_io.read(spark, lake, t.RATINGS_BUFFER).agg(F.max(t.BATCH_WEEK)).first()[0]
    split_id = uuid.uuid4().hex[:12]
    info = spark.createDataFrame([(
        split_id, datetime.now(timezone.utc), ratings_version, n, n_train, n_train_test - n_train,
        n - n_train_test, datetime.fromtimestamp(train_key[0], timezone.utc),
        datetime.fromtimestamp(test_key[0], timezone.utc), ",".join(map(str, train_key)),
        ",".join(map(str, test_key)), weeks, cold,
    )], t.SCHEMAS[t.SPLIT_INFO])
    delta_io.append(info, lake, t.SPLIT_INFO)
    ratings.unpersist()
    log.info("split %s: train %s, test %s, buffer %s in %d weekly batches", split_id,
             f"{n_train:,}", f"{n_train_test - n_train:,}", f"{n - n_train_test:,}", weeks)
    log.info("cold start in test: %.1f%% of users and %.1f%% of ratings have no train history; "
             "%.1f%% of movies are new", 100 * cold["test_users_new_share"],
             100 * cold["test_ratings_new_user_share"], 100 * cold["test_movies_new_share"])
    return SplitResult(split_id, False, n_train, n_train_test - n_train, n - n_train_test,
                       weeks, cold)
