"""One place that names every table and column, with the schemas the lake is written in."""

from __future__ import annotations

from pyspark.sql import types as T

# Tables in the lake (each at <lake>/<name>).
RATINGS = "ratings"
MOVIES = "movies"
TAGS = "tags"
LINKS = "links"
GENOME_SCORES = "genome_scores"
GENOME_TAGS = "genome_tags"
REJECTS = "rejects"
INGESTION_RUNS = "ingestion_runs"
RATINGS_TRAIN = "ratings_train"
RATINGS_TEST = "ratings_test"
RATINGS_BUFFER = "ratings_buffer"
SPLIT_INFO = "split_info"
MODEL_METRICS = "model_metrics"
RECOMMENDATIONS = "recommendations"              # every run, partitioned by run_date
RECOMMENDATIONS_LATEST = "recommendations_latest"  # exactly one complete run: what apps read
POPULAR_MOVIES = "popular_movies"                # the list for users not in recommendations
RATINGS_INCREMENTS = "ratings_increments"        # every arrived rating, with its arrival
DRIFT_ALERTS = "drift_alerts"                    # one row per drift metric per run date
GATE_DECISIONS = "gate_decisions"                # one row per champion gate: evidence and verdict
SERVING_METRICS = "serving_metrics"              # the live lists scored on the ratings that came after
LANDING_FILES = "landing_files"                  # each landed file, once, by checksum, with its counts

# Columns.
USER_ID = "user_id"
MOVIE_ID = "movie_id"
RATING = "rating"
TS = "ts"
TITLE = "title"
YEAR = "year"
GENRES = "genres"
TAG = "tag"
TAG_ID = "tag_id"
RELEVANCE = "relevance"
IMDB_ID = "imdb_id"
TMDB_ID = "tmdb_id"
BATCH_WEEK = "batch_week"
ARRIVAL_SOURCE = "arrival_source"   # where an arrived rating came from: a buffer week or a file
RANK = "rank"
SCORE = "score"
RUN_DATE = "run_date"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SOURCE = "source"       # which part of the hybrid ranker produced a row: model or fallback

SCHEMAS: dict[str, T.StructType] = {
    RATINGS: T.StructType([
        T.StructField(USER_ID, T.IntegerType(), False),
        T.StructField(MOVIE_ID, T.IntegerType(), False),
        T.StructField(RATING, T.FloatType(), False),
        T.StructField(TS, T.TimestampType(), False),
    ]),
    MOVIES: T.StructType([
        T.StructField(MOVIE_ID, T.IntegerType(), False),
        T.StructField(TITLE, T.StringType(), False),
        T.StructField(YEAR, T.IntegerType(), True),
        T.StructField(GENRES, T.ArrayType(T.StringType()), False),
    ]),
    TAGS: T.StructType([
        T.StructField(USER_ID, T.IntegerType(), False),
        T.StructField(MOVIE_ID, T.IntegerType(), False),
        T.StructField(TAG, T.StringType(), False),
        T.StructField(TS, T.TimestampType(), False),
    ]),
    LINKS: T.StructType([
        T.StructField(MOVIE_ID, T.IntegerType(), False),
        T.StructField(IMDB_ID, T.StringType(), True),
        T.StructField(TMDB_ID, T.IntegerType(), True),
    ]),
    GENOME_SCORES: T.StructType([
        T.StructField(MOVIE_ID, T.IntegerType(), False),
        T.StructField(TAG_ID, T.IntegerType(), False),
        T.StructField(RELEVANCE, T.FloatType(), False),
    ]),
    GENOME_TAGS: T.StructType([
        T.StructField(TAG_ID, T.IntegerType(), False),
        T.StructField(TAG, T.StringType(), False),
    ]),
    REJECTS: T.StructType([
        T.StructField("source_checksum", T.StringType(), False),
        T.StructField("source_file", T.StringType(), False),
        T.StructField("line_number", T.LongType(), False),
        T.StructField("raw_line", T.StringType(), True),   # valid UTF-8 whatever the file held
        T.StructField("target_table", T.StringType(), False),
        T.StructField("rule", T.StringType(), False),
        T.StructField("raw_bytes", T.BinaryType(), True),   # the exact bytes, when raw_line had to replace some
    ]),
    INGESTION_RUNS: T.StructType([
        T.StructField("run_id", T.StringType(), False),
        T.StructField("started_at", T.TimestampType(), False),
        T.StructField("source", T.StringType(), False),
        T.StructField("layout", T.StringType(), False),
        T.StructField("checksum", T.StringType(), False),
        T.StructField("rows_read", T.LongType(), False),
        T.StructField("rows_accepted", T.LongType(), False),
        T.StructField("rows_rejected", T.LongType(), False),
        T.StructField("duration_s", T.DoubleType(), False),
        T.StructField("files", T.ArrayType(T.StructType([
            # Delta enforces no NOT NULL inside arrays.
            T.StructField("file", T.StringType()),
            T.StructField("table", T.StringType()),
            T.StructField("read", T.LongType()),
            T.StructField("accepted", T.LongType()),
            T.StructField("rejected", T.LongType()),
        ])), False),
    ]),
    SPLIT_INFO: T.StructType([
        T.StructField("split_id", T.StringType(), False),
        T.StructField("created_at", T.TimestampType(), False),
        T.StructField("ratings_version", T.LongType(), False),
        T.StructField("n_ratings", T.LongType(), False),
        T.StructField("n_train", T.LongType(), False),
        T.StructField("n_test", T.LongType(), False),
        T.StructField("n_buffer", T.LongType(), False),
        T.StructField("train_cutoff_ts", T.TimestampType(), False),
        T.StructField("test_cutoff_ts", T.TimestampType(), False),
        T.StructField("train_cutoff_key", T.StringType(), False),
        T.StructField("test_cutoff_key", T.StringType(), False),
        T.StructField("buffer_weeks", T.IntegerType(), False),
        T.StructField("cold_start", T.MapType(T.StringType(), T.DoubleType()), False),
    ]),
}
SCHEMAS[MODEL_METRICS] = T.StructType([
    T.StructField("run_date", T.DateType(), False),
    T.StructField("mlflow_run_id", T.StringType(), False),
    T.StructField("model", T.StringType(), False),
    T.StructField("metric", T.StringType(), False),
    T.StructField("population", T.StringType(), False),
    T.StructField("value", T.DoubleType(), True),
    # nullable: added to existing lakes. n: the users (pairs, for rmse/mae) behind the value;
    # ci_*: its 95% bootstrap interval over users; gain_*: the paired interval of value minus
    # the baseline model's on the same users (beyond noise when it excludes 0)
    T.StructField("n", T.LongType(), True),
    T.StructField("ci_low", T.DoubleType(), True),
    T.StructField("ci_high", T.DoubleType(), True),
    T.StructField("baseline", T.StringType(), True),
    T.StructField("gain_low", T.DoubleType(), True),
    T.StructField("gain_high", T.DoubleType(), True),
])
SCHEMAS[RECOMMENDATIONS] = T.StructType([
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField(USER_ID, T.IntegerType(), False),
    T.StructField(RANK, T.IntegerType(), False),
    T.StructField(MOVIE_ID, T.IntegerType(), False),
    T.StructField(SCORE, T.FloatType(), False),
    T.StructField(SOURCE, T.StringType(), False),
    T.StructField(MODEL_NAME, T.StringType(), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
])
SCHEMAS[RECOMMENDATIONS_LATEST] = SCHEMAS[RECOMMENDATIONS]
SCHEMAS[POPULAR_MOVIES] = T.StructType([
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField(RANK, T.IntegerType(), False),
    T.StructField(MOVIE_ID, T.IntegerType(), False),
    T.StructField(SCORE, T.FloatType(), False),
    T.StructField(MODEL_VERSION, T.StringType(), False),
])
SCHEMAS[RATINGS_INCREMENTS] = T.StructType(SCHEMAS[RATINGS].fields + [
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField(BATCH_WEEK, T.IntegerType(), True),   # the replayed buffer week, if replayed
    T.StructField(ARRIVAL_SOURCE, T.StringType(), True),  # nullable: added to existing lakes
])
SCHEMAS[DRIFT_ALERTS] = T.StructType([
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField("metric", T.StringType(), False),
    T.StructField("value", T.DoubleType(), True),
    T.StructField("threshold", T.DoubleType(), False),
    T.StructField("verdict", T.StringType(), False),      # ok | drift
    T.StructField("detail", T.StringType(), False),
])
SCHEMAS[GATE_DECISIONS] = T.StructType([
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField("mlflow_run_id", T.StringType(), False),
    T.StructField("challenger_version", T.StringType(), False),
    T.StructField("champion_version", T.StringType(), False),   # after the decision
    T.StructField("moved", T.BooleanType(), False),
    T.StructField("reason", T.StringType(), False),
    T.StructField("metric", T.StringType(), True),
    T.StructField("training_cutoff", T.DateType(), True),       # the challenger knew ratings up to here
    T.StructField("window_end", T.DateType(), True),            # and was judged on arrivals after it, to here
    T.StructField("window_users", T.LongType(), True),
    T.StructField("window_ratings", T.LongType(), True),
    T.StructField("training_newest_ts", T.TimestampType(), True),
    T.StructField("window_oldest_ts", T.TimestampType(), True),
    T.StructField("challenger_value", T.DoubleType(), True),
    T.StructField("champion_value", T.DoubleType(), True),
    T.StructField("gain", T.DoubleType(), True),
    T.StructField("ci_low", T.DoubleType(), True),
    T.StructField("ci_high", T.DoubleType(), True),
])
SCHEMAS[SERVING_METRICS] = T.StructType([
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField("live_run_date", T.DateType(), False),   # the run whose lists were live
    T.StructField("metric", T.StringType(), False),
    T.StructField("k", T.IntegerType(), False),
    T.StructField("value", T.DoubleType(), True),
])
SCHEMAS[LANDING_FILES] = T.StructType([
    T.StructField("checksum", T.StringType(), False),
    T.StructField("file", T.StringType(), False),
    T.StructField(RUN_DATE, T.DateType(), False),
    T.StructField("target_table", T.StringType(), False),   # ratings or movies
    T.StructField("rows_read", T.LongType(), False),
    T.StructField("rows_accepted", T.LongType(), False),
    T.StructField("rows_rejected", T.LongType(), False),
])
PARTITION_BY: dict[str, tuple[str, ...]] = {RECOMMENDATIONS: (RUN_DATE,), POPULAR_MOVIES: (RUN_DATE,)}
SCHEMAS[RATINGS_TRAIN] = SCHEMAS[RATINGS]
SCHEMAS[RATINGS_TEST] = SCHEMAS[RATINGS]
SCHEMAS[RATINGS_BUFFER] = T.StructType(
    SCHEMAS[RATINGS].fields + [T.StructField(BATCH_WEEK, T.IntegerType(), False)])

# Source tables written by ingest, in the order they are validated (movies first: others refer to it).
INGESTED_TABLES = (MOVIES, RATINGS, TAGS, LINKS, GENOME_TAGS, GENOME_SCORES)

# What each job writes. A job's tables change together: while it is unfinished, other jobs may
# not read them (core/job_guard.py). The first job naming a table is the one that creates it.
JOB_TABLES: dict[str, tuple[str, ...]] = {
    "ingest": INGESTED_TABLES + (REJECTS, INGESTION_RUNS),
    "split": (RATINGS_TRAIN, RATINGS_TEST, RATINGS_BUFFER, SPLIT_INFO),
    "train_als": (MODEL_METRICS, GATE_DECISIONS),
    "recommend": (RECOMMENDATIONS, RECOMMENDATIONS_LATEST, POPULAR_MOVIES, SERVING_METRICS),
    "ingest_increment": (RATINGS_INCREMENTS, LANDING_FILES, MOVIES, REJECTS),
    "detect_drift": (DRIFT_ALERTS,),
}
