"""recommend: the champion's top-K for every user in train, published to Delta and PostgreSQL.

The champion is the registry's `champion` alias (train_als moves it). Its hybrid ranker is
rebuilt exactly as training evaluated it (models.hybrid): the implicit ALS model re-ranks the
most trending movies for users with enough history, everyone else gets the trending list, and
every list is topped up to K from it. `popular_movies` is the same trending list, for users who
are not in the table at all (new sign-ups).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.artifacts import download_artifacts
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movierec import delta_io, models, serving_sql, tables as t, tracking
from movierec.config import Config
from movierec.errors import UserError
from movierec.logs import stage

log = logging.getLogger(__name__)


class RecommendError(UserError, RuntimeError):
    pass


@dataclass
class Ranker:
    name: str
    version: str
    model: object          # ALSModel (implicit feedback)
    trending: DataFrame    # (movie_id, score): the fallback
    params: dict           # min_history, candidates, half_life_days, ...


def load_champion(spark: SparkSession, cfg: Config) -> Ranker:
    client = tracking.connect(cfg)
    name = cfg["mlflow.model_name"]
    version = tracking.current_champion(client, name)
    if version is None:
        raise RecommendError(f"model {name!r} has no champion in the registry at "
                             f"{tracking.mask_uri(tracking.tracking_uri(cfg))}: run `train_als` first")
    pipeline = mlflow.spark.load_model(f"models:/{name}/{version.version}")
    folder = Path(download_artifacts(run_id=version.run_id, artifact_path="ranker"))
    spec = json.loads((folder / "hybrid.json").read_text())
    trend = pd.read_csv(folder / "trending.csv").astype({t.MOVIE_ID: "int32", t.SCORE: "float32"})
    trending = spark.createDataFrame(trend[[t.MOVIE_ID, t.SCORE]])
    log.info("champion: %s v%s (run %s): %s", name, version.version, version.run_id,
             {k: spec[k] for k in ("min_history", "candidates", "half_life_days")})
    return Ranker(name, str(version.version), pipeline.stages[0], trending, spec)


def recommendations(ranker: Ranker, train: DataFrame, k: int, run_date: str) -> DataFrame:
    users = train.select(t.USER_ID).distinct()
    lists = models.hybrid(ranker.model, ranker.trending, train, users, k, ranker.params)
    return _stamp(lists, ranker, run_date).withColumn(t.MODEL_NAME, F.lit(ranker.name))


def popular_movies(ranker: Ranker, k: int, run_date: str) -> DataFrame:
    best_first = [F.col(t.SCORE).desc(), F.col(t.MOVIE_ID)]
    ranked = (ranker.trending.orderBy(*best_first).limit(k)
              .withColumn(t.RANK, F.row_number().over(Window.orderBy(*best_first))))
    return _stamp(ranked, ranker, run_date)


def _stamp(df: DataFrame, ranker: Ranker, run_date: str) -> DataFrame:
    return (df.withColumn(t.RUN_DATE, F.lit(run_date).cast("date"))
            .withColumn(t.MODEL_VERSION, F.lit(ranker.version)))


def check(recs: DataFrame, train: DataFrame, k: int) -> tuple[int, int]:
    """The published contract: every train user has ranks 1..k (k rows, unless the catalog minus
    what they saw is smaller), no movie twice, no seen movie. Returns (rows, users)."""
    per_user = recs.groupBy(t.USER_ID).agg(
        F.count(F.lit(1)).alias("n"), F.countDistinct(t.MOVIE_ID).alias("movies"),
        F.min(t.RANK).alias("lo"), F.max(t.RANK).alias("hi")).persist()
    broken = (F.col("n") != F.col("movies")) | (F.col("lo") != 1) | (F.col("hi") != F.col("n"))
    totals = per_user.agg(F.sum("n").alias("rows"), F.count(F.lit(1)).alias("users"),
                          F.sum(broken.cast("int")).alias("bad"),
                          F.sum((F.col("n") < k).cast("int")).alias("short")).first()
    missing = train.select(t.USER_ID).distinct().join(per_user, t.USER_ID, "left_anti").count()
    per_user.unpersist()
    seen = recs.join(train.select(t.USER_ID, t.MOVIE_ID), [t.USER_ID, t.MOVIE_ID], "left_semi").count()
    problems = [f"{n:,} {what}" for n, what in ((totals["bad"] or 0, "users with gaps or repeats in ranks"),
                                               (missing, "train users without a list"),
                                               (seen, "recommended movies the user already rated"))
                if n]
    if problems:
        raise RecommendError("recommendations break the contract: " + "; ".join(problems))
    if totals["short"]:
        log.warning("%d users have fewer than %d unseen movies to recommend", totals["short"], k)
    return int(totals["rows"] or 0), int(totals["users"])


def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    lake, k = cfg.path("lake"), cfg["recommend.k"]
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN).persist(StorageLevel.MEMORY_AND_DISK)
    ranker = load_champion(spark, cfg)
    this_run = f"{t.RUN_DATE} = DATE'{run_date}'"

    with stage(log, f"top-{k} for every train user") as st:
        recs = recommendations(ranker, train, k, run_date)
        delta_io.overwrite(recs, lake, t.RECOMMENDATIONS, replace_where=this_run)
        written = delta_io.read(spark, lake, t.RECOMMENDATIONS).where(this_run)
        st.rows, n_users = check(written, train, k)
    delta_io.overwrite(popular_movies(ranker, k, run_date), lake, t.POPULAR_MOVIES, replace_where=this_run)
    latest = _publish_latest(spark, lake, cfg["recommend.retention_days"])
    summary = {"run_date": run_date, "model": f"{ranker.name} v{ranker.version}", "rows": st.rows,
               "users": n_users, "latest_run_date": str(latest),
               "hybrid": {key: ranker.params[key] for key in ("min_history", "candidates")}}
    if cfg["recommend.publish_postgres"]:
        with stage(log, "publish to PostgreSQL") as st:
            st.rows = _publish_postgres(spark, cfg, lake)
    train.unpersist()
    log.info("recommendations: %s", summary)
    return summary


def _publish_latest(spark: SparkSession, lake, retention_days: int) -> date:
    """Deletes runs past retention, then makes recommendations_latest the newest complete run.
    A rerun of an older date leaves latest on the newest run."""
    runs = delta_io.read(spark, lake, t.RECOMMENDATIONS)
    newest = runs.agg(F.max(t.RUN_DATE)).first()[0]
    horizon = newest - timedelta(days=retention_days)
    for name in (t.RECOMMENDATIONS, t.POPULAR_MOVIES):
        table = delta_io.delta_table(spark, lake, name)
        if table.toDF().where(F.col(t.RUN_DATE) < F.lit(horizon)).limit(1).count():
            table.delete(F.col(t.RUN_DATE) < F.lit(horizon))
            log.info("%s: runs before %s deleted (retention %d days)", name, horizon, retention_days)
    newest_run = runs.where(F.col(t.RUN_DATE) == F.lit(newest))
    delta_io.overwrite(newest_run, lake, t.RECOMMENDATIONS_LATEST)
    return newest


def _publish_postgres(spark: SparkSession, cfg: Config, lake) -> int:
    """Every relation of docs/queries.sql, each swapped in atomically; recommendations last, so
    a reader never sees lists that name movies the movies table lacks."""
    from movierec import postgres

    settings = postgres.connection_settings(cfg)
    relations = serving_sql.serving_relations(spark, lake)
    specs = [postgres.MOVIES, postgres.MOVIE_GENRES, postgres.USER_GENRES, postgres.POPULAR_MOVIES,
             postgres.RECOMMENDATIONS_PREVIOUS, postgres.RECOMMENDATIONS]
    rows = {spec.name: postgres.publish_table(relations[spec.name], spec, settings) for spec in specs}
    return rows[postgres.RECOMMENDATIONS.name]
