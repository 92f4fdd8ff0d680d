"""recommend: the champion's top-K for every user with a known rating, to Delta and PostgreSQL.

Known means known as of the run date (data/known.py: the initial load plus every arrival so
far); no list names a movie the user has rated in any known rating.

The champion is the registry's `champion` alias (train_als moves it). The served model
(train.served_model) loads it back and lists exactly as training evaluated it; for the hybrid:
the implicit ALS model re-ranks the most trending movies for users with enough history,
everyone else gets the trending list, and every list is topped up to K from it.
`popular_movies` is the model's fallback list, for users who are not in the table at all (new
sign-ups).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

import mlflow
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.core.logs import stage
from movierec.core.masking import mask_uri
from movierec.data.known import arrivals, known_ratings, known_users
from movierec.model import catalog, plots, tracking
from movierec.model.base import ServedModel, seen_pairs
from movierec.serve import (pg_carry_over, pg_publish, pg_schema, pg_settings, serving_metrics,
                            serving_sql)

log = logging.getLogger(__name__)


class RecommendError(UserError, RuntimeError):
    pass


@dataclass
class Champion:
    name: str
    version: str
    model: ServedModel
    known_as_of: str | None   # the run date whose known ratings it was fitted on


def load_champion(spark: SparkSession, cfg: Config, history: DataFrame) -> Champion:
    """The registry's champion as the served model, knowing the users' ratings in `history`."""
    client = tracking.connect(cfg)
    name = cfg.mlflow.model_name
    version = tracking.current_champion(client, name)
    if version is None:
        raise RecommendError(f"model {name!r} has no champion in the registry at "
                             f"{mask_uri(tracking.tracking_uri(cfg))}: run `train_als` first")
    model = catalog.served(cfg).load(spark, version.run_id, f"models:/{name}/{version.version}", history)
    log.info("champion: %s v%s (run %s): %s", name, version.version, version.run_id,
             {k: v for k, v in model.params.items() if not isinstance(v, dict)})
    fitted_as_of = client.get_run(version.run_id).data.tags.get(tracking.SERVED_AS_OF)
    return Champion(name, str(version.version), model, fitted_as_of)


def fold_in_changed(spark: SparkSession, lake, champion: Champion, known: DataFrame,
                    run_date: str) -> dict[str, int]:
    """Folds into the champion every user with ratings that arrived after the run date it was
    fitted as of, so that they get a personal list tonight without a refit."""
    if champion.known_as_of is None or champion.known_as_of >= run_date:
        return {"changed": 0, "folded_in": 0, "new_users": 0}
    changed = arrivals(spark, lake, after=champion.known_as_of, until=run_date).select(t.USER_ID).distinct()
    before = known_users(spark, lake, champion.known_as_of)
    counts = {"changed": changed.count(), "folded_in": 0,
              "new_users": changed.join(before, t.USER_ID, "left_anti").count()}
    if counts["changed"]:
        with stage(log, f"fold-in of users with ratings after {champion.known_as_of}") as st:
            st.rows = champion.model.fold_in(known.join(changed, t.USER_ID, "left_semi"))
        counts["folded_in"] = st.rows
    log.info("fold-in: %s", counts)
    return counts


def recommendations(champion: Champion, known: DataFrame, k: int, run_date: str) -> DataFrame:
    users = known.select(t.USER_ID).distinct()
    lists = champion.model.recommend(users, k, seen_pairs(known))
    return _stamp(lists, champion, run_date).withColumn(t.MODEL_NAME, F.lit(champion.name))


def popular_movies(champion: Champion, k: int, run_date: str) -> DataFrame:
    best_first = [F.col(t.SCORE).desc(), F.col(t.MOVIE_ID)]
    ranked = (champion.model.fallback().orderBy(*best_first).limit(k)
              .withColumn(t.RANK, F.row_number().over(Window.orderBy(*best_first))))
    return _stamp(ranked, champion, run_date)


def _stamp(df: DataFrame, champion: Champion, run_date: str) -> DataFrame:
    return (df.withColumn(t.RUN_DATE, F.lit(run_date).cast("date"))
            .withColumn(t.MODEL_VERSION, F.lit(champion.version)))


def check(recs: DataFrame, known: DataFrame, k: int) -> tuple[int, int]:
    """The published contract: every user with a known rating has ranks 1..k (k rows, unless the
    catalog minus what they rated is smaller), no movie twice, no rated movie, no list for a
    user with no known rating. Returns (rows, users)."""
    # One shuffle by user of the lists and the known pairs together: a (user, movie) group
    # then a user group need no second exchange, where separate joins of the lists with the
    # known users and the known pairs would shuffle each side again.
    pairs = (recs.select(t.USER_ID, t.MOVIE_ID, t.RANK, F.lit(1).alias("listed"))
             .unionByName(seen_pairs(known).select(t.USER_ID, t.MOVIE_ID, F.lit(None).cast("int").alias(t.RANK),
                                                   F.lit(0).alias("listed")))
             .repartition(t.USER_ID)
             .groupBy(t.USER_ID, t.MOVIE_ID)
             .agg(F.sum("listed").alias("times"), F.min(t.RANK).alias("lo"), F.max(t.RANK).alias("hi"),
                  F.max(1 - F.col("listed")).alias("rated")))
    per_user = pairs.groupBy(t.USER_ID).agg(
        F.sum("times").alias("n"), F.sum((F.col("times") > 0).cast("int")).alias("movies"),
        F.min("lo").alias("lo"), F.max("hi").alias("hi"), F.max("rated").alias("known"),
        F.sum(((F.col("times") > 0) & (F.col("rated") == 1)).cast("int")).alias("seen"))
    listed = F.col("n") > 0
    broken = listed & ((F.col("n") != F.col("movies")) | (F.col("lo") != 1) | (F.col("hi") != F.col("n")))
    totals = per_user.agg(
        F.sum("n").alias("rows"), F.sum(listed.cast("int")).alias("users"),
        F.sum(broken.cast("int")).alias("bad"), F.sum("seen").alias("seen"),
        F.sum(((F.col("known") == 1) & ~listed).cast("int")).alias("missing"),
        F.sum((listed & (F.col("known") == 0)).cast("int")).alias("unknown"),
        F.sum((listed & (F.col("n") < k)).cast("int")).alias("short")).first()
    problems = [f"{n:,} {what}" for n, what in ((totals["bad"], "users with gaps or repeats in ranks"),
                                               (totals["missing"], "known users without a list"),
                                               (totals["seen"], "recommended movies the user already rated"),
                                               (totals["unknown"], "lists for users with no known rating"))
                if n]
    if problems:
        raise RecommendError("recommendations break the contract: " + "; ".join(problems))
    if totals["short"]:
        log.warning("%d users have fewer than %d unseen movies to recommend", totals["short"], k)
    return int(totals["rows"] or 0), int(totals["users"] or 0)


def preflight(cfg: Config) -> pg_settings.PgSettings | None:
    """PostgreSQL first: a server that is down or misconfigured fails before the top-K (and,
    under spark-submit, before the Spark session starts)."""
    if not cfg.recommend.publish_postgres:
        return None
    return pg_settings.reachable(pg_settings.connection_settings(cfg))


@job_guard.job("recommend")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    lake, k = cfg.path("lake"), cfg.recommend.k
    pg = preflight(cfg)
    known = known_ratings(spark, lake, run_date).persist(StorageLevel.MEMORY_AND_DISK)
    champion = load_champion(spark, cfg, known)
    folded = fold_in_changed(spark, lake, champion, known, run_date)
    this_run = f"{t.RUN_DATE} = DATE'{run_date}'"

    with stage(log, f"top-{k} for every known user") as st:
        # checked before it is written: a run that breaks the contract never reaches the table,
        # so it can never become latest (nor previous) later
        recs = recommendations(champion, known, k, run_date).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            st.rows, n_users = check(recs, known, k)
            delta_io.overwrite(recs, lake, t.RECOMMENDATIONS, replace_where=this_run)
        finally:
            recs.unpersist()
    # after tonight's lists passed their check, so that a night which fails it writes nothing;
    # it scores the lists of earlier nights, which tonight's do not change
    live = record_serving_metrics(spark, cfg, run_date)
    delta_io.overwrite(popular_movies(champion, k, run_date), lake, t.POPULAR_MOVIES, replace_where=this_run)
    latest = _publish_latest(spark, lake, cfg.recommend.retention_days)
    summary = {"run_date": run_date, "model": f"{champion.name} v{champion.version}", "rows": st.rows,
               "users": n_users, "latest_run_date": str(latest), **folded, "live_lists": live,
               "params": {key: v for key, v in champion.model.params.items()
                          if key in ("min_history", "candidates")}}
    if pg is not None:
        with stage(log, "publish to PostgreSQL") as st:
            st.rows = publish_postgres(spark, lake, pg)
    champion.model.release()
    known.unpersist()
    log.info("recommendations: %s", summary)
    return summary


def record_serving_metrics(spark: SparkSession, cfg: Config, run_date: str) -> dict | None:
    """serving_metrics rows for tonight (a rerun replaces them), their MLflow run in the
    `<experiment>-serving` experiment, and the plot over all nights in its artifacts."""
    lake, k = cfg.path("lake"), cfg.recommend.k
    with stage(log, "score the live lists on tonight's arrivals") as st:
        table = serving_metrics.score_live_lists(spark, lake, run_date, k, cfg.train.relevant_threshold)
        st.rows = 0 if table is None else len(table)
    if table is None:
        log.info("serving metrics: no earlier run or no arrivals before %s: nothing to score", run_date)
        return None
    delta_io.overwrite(spark.createDataFrame(table, t.SCHEMAS[t.SERVING_METRICS]), lake,
                       t.SERVING_METRICS, replace_where=f"{t.RUN_DATE} = DATE'{run_date}'")
    history = delta_io.read(spark, lake, t.SERVING_METRICS).toPandas()
    serving = cfg.with_overrides({"mlflow.experiment": f"{cfg.mlflow.experiment}-serving"})
    values = dict(zip(table["metric"], table["value"]))
    with tracking.training_run(serving, run_date, f"serving {run_date}",
                               tags={"live_run_date": str(table["live_run_date"].iloc[0])}):
        mlflow.log_metrics({f"serving.{m}_at_{k}": v for m, v in values.items() if v == v})
        tracking.log_figure(plots.serving_over_nights(history), "serving_metrics")
    return {m: round(v, 4) for m, v in values.items()}


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


def publish_postgres(spark: SparkSession, lake, settings: pg_settings.PgSettings) -> int:
    """Every relation of docs/queries.sql, all swapped in in one transaction (a reader never sees
    tonight's movies beside last night's lists); returns the recommendations' row count. The
    previous run is the live lists renamed when they hold exactly it (pg_carry_over)."""
    relations = serving_sql.serving_relations(spark, lake)
    live, previous = pg_schema.RECOMMENDATIONS, pg_schema.RECOMMENDATIONS_PREVIOUS
    carry_over = [(live, previous)] if pg_carry_over.live_holds(settings, live, relations[previous.name]) else []
    tables = [(relations[spec.name], spec) for spec in pg_schema.SERVED_TABLES
              if not (carry_over and spec == previous)]
    rows = pg_publish.publish_many(tables, settings, carry_over=carry_over)
    return rows[live.name]
