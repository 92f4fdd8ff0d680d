"""train_als: cross-validate, fit, evaluate against baselines, track in MLflow, gate the champion.

Every model is fitted on ratings_train only; hyperparameters come from forward-chaining CV on
train (tuning.py); ratings_test is read once, for the final evaluation.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pyspark
from pyspark import StorageLevel
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec import delta_io, metrics, models, plots, schedule, tables as t, tracking
from movierec.baselines import PREDICTION, fit_biases, popularity, trending, with_baseline
from movierec.config import Config
from movierec.errors import UserError
from movierec.logs import stage
from movierec.topk import top_k
from movierec.tuning import Fold, SearchResult, forward_folds, grid, sample_users, search

log = logging.getLogger(__name__)

RANKERS = ("popular", "popular_recent", "trending", "als_plain", "als_biased", "als_implicit", "hybrid")
POPULATIONS = ("all", "warm", "cold")


class TrainError(UserError, ValueError):
    pass


def _als_grid(**axes) -> list[dict]:
    """ALS grid points from Spark ML's ParamGridBuilder, as plain dicts keyed by param name."""
    als, builder = ALS(), ParamGridBuilder()
    for name, values in axes.items():
        builder = builder.addGrid(getattr(als, name), list(values))
    return [{p.name: v for p, v in point.items()} for point in builder.build()]


def warm_pairs(ratings: DataFrame, known: DataFrame) -> DataFrame:
    """Rows of `ratings` whose user and movie both appear in `known`."""
    users = known.select(t.USER_ID).distinct()
    movies = known.select(t.MOVIE_ID).distinct()
    return ratings.join(users, t.USER_ID, "inner").join(movies, t.MOVIE_ID, "inner")


def _seen(train: DataFrame) -> DataFrame:
    return train.select(t.USER_ID, t.MOVIE_ID)


# ------------------------------------------------------------------ cross-validation

def cross_validate(train: DataFrame, cfg: Config) -> dict[str, SearchResult]:
    seed, k = cfg["train.seed"], cfg["train.k"]
    threshold, iters = cfg["train.relevant_threshold"], cfg["train.als.max_iter"]
    sample = sample_users(train, cfg["train.cv.user_sample"], seed)
    folds = forward_folds(sample, cfg["train.cv.folds"], cfg["train.cv.val_frac"])
    warm_val = {f.index: warm_pairs(f.validate, f.fit).persist(StorageLevel.MEMORY_AND_DISK)
                for f in folds}
    results: dict[str, SearchResult] = {}

    def rmse_of(predictions: DataFrame) -> float:
        return metrics.rating_metrics(predictions)["rmse"]

    damping = cfg["train.bias.damping_grid"]
    results["bias"] = search(
        "bias", "rmse", grid(damping_user=damping, damping_item=damping), folds,
        lambda p, f: rmse_of(with_baseline(warm_val[f.index], fit_biases(f.fit, **p))), False)
    fold_biases = {f.index: fit_biases(f.fit, **results["bias"].best) for f in folds}

    als_grid = _als_grid(rank=cfg["train.als.rank_grid"], regParam=cfg["train.als.reg_grid"])
    results["als_biased"] = search(
        "als_biased", "rmse", als_grid, folds,
        lambda p, f: rmse_of(models.predict_biased_als(
            models.fit_biased_als(f.fit, fold_biases[f.index], **_als_args(p, iters, cfg)),
            fold_biases[f.index], warm_val[f.index])), False)
    results["als_plain"] = search(
        "als_plain", "rmse", als_grid, folds,
        lambda p, f: rmse_of(models.predict_als(
            models.fit_als(f.fit, **_als_args(p, iters, cfg)), warm_val[f.index])), False)

    min_rating = cfg["train.implicit.min_rating"]
    implicit_grid = _als_grid(rank=cfg["train.implicit.rank_grid"], regParam=cfg["train.implicit.reg_grid"],
                              alpha=cfg["train.implicit.alpha_grid"])

    def implicit_score(p: dict, f: Fold) -> float:
        model = models.fit_als(models.implicit_feedback(f.fit, min_rating), implicit=True,
                               **_als_args(p, cfg["train.implicit.max_iter"], cfg))
        recs = models.als_lists(model, warm_val[f.index], _seen(f.fit), k)
        return metrics.ranking_metrics(recs, warm_val[f.index], k, relevant_threshold=threshold)["ndcg"]

    results["als_implicit"] = search("als_implicit", "ndcg_warm", implicit_grid, folds,
                                     implicit_score, True)

    best_implicit = results["als_implicit"].best

    def hybrid_score(p: dict, f: Fold) -> float:
        if f.index not in implicit_by_fold:
            implicit_by_fold[f.index] = models.fit_als(
                models.implicit_feedback(f.fit, min_rating), implicit=True,
                **_als_args(best_implicit, cfg["train.implicit.max_iter"], cfg))
        users = f.validate.select(t.USER_ID).distinct()
        lists = models.hybrid(implicit_by_fold[f.index], trending(f.fit, half_life_days=p["half_life_days"]),
                       f.fit, users, k, p)
        return metrics.ranking_metrics(lists, f.validate, k, relevant_threshold=threshold)["ndcg"]

    implicit_by_fold: dict[int, object] = {}
    results["hybrid"] = search(
        "hybrid", "ndcg_all", grid(min_history=cfg["train.hybrid.min_history_grid"],
                                   half_life_days=cfg["train.hybrid.half_life_grid"],
                                   candidates=cfg["train.hybrid.candidates_grid"]),
        folds, hybrid_score, True)
    for f in folds:
        f.fit.unpersist()
        f.validate.unpersist()
        warm_val[f.index].unpersist()
    return results


def _als_args(params: dict, max_iter: int, cfg: Config) -> dict:
    out = {"rank": params["rank"], "reg": params["regParam"], "max_iter": max_iter,
           "seed": cfg["train.seed"], "blocks": cfg["train.als_blocks"]}
    if "alpha" in params:
        out["alpha"] = params["alpha"]
    return out


# ------------------------------------------------------------------ final fit and evaluation

@dataclass
class Fitted:
    mu: float
    biases: object
    als_plain: object
    als_biased: object
    als_implicit: object
    popular: DataFrame
    popular_recent: DataFrame
    trending: DataFrame
    hybrid: dict

    def unpersist(self) -> None:
        for df in (self.biases.users, self.biases.items, self.popular, self.popular_recent, self.trending):
            df.unpersist()


def fit_final(train: DataFrame, cfg: Config, best: dict[str, SearchResult]) -> Fitted:
    iters = cfg["train.als.max_iter"]
    biases = fit_biases(train, **best["bias"].best)
    biases.users.persist()
    biases.items.persist()
    implicit = models.fit_als(models.implicit_feedback(train, cfg["train.implicit.min_rating"]),
                              implicit=True, **_als_args(best["als_implicit"].best,
                                                         cfg["train.implicit.max_iter"], cfg))
    return Fitted(
        mu=biases.mu, biases=biases,
        als_plain=models.fit_als(train, **_als_args(best["als_plain"].best, iters, cfg)),
        als_biased=models.fit_biased_als(train, biases, **_als_args(best["als_biased"].best, iters, cfg)),
        als_implicit=implicit,
        popular=popularity(train).persist(),
        popular_recent=popularity(train, recent_days=cfg["train.popularity.recent_days"]).persist(),
        trending=trending(train, half_life_days=best["hybrid"].best["half_life_days"]).persist(),
        hybrid=best["hybrid"].best,
    )


def ranked_lists(fitted: Fitted, train: DataFrame, users: DataFrame, k: int) -> dict[str, DataFrame]:
    seen = _seen(train)
    item_bias = {r[0]: float(r[1]) for r in fitted.biases.items.collect()}
    user_f, item_f = models.factors(fitted.als_biased)
    wanted = user_f.join(users, t.USER_ID, "inner")
    lists = {
        "popular": models.popularity_lists(fitted.popular, users, seen, k),
        "popular_recent": models.popularity_lists(fitted.popular_recent, users, seen, k),
        "als_plain": models.als_lists(fitted.als_plain, users, seen, k),
        # a user's own bias does not change their ranking; the movie's does
        "als_biased": top_k(wanted, item_f, seen, k, item_bias=item_bias),
        "als_implicit": models.als_lists(fitted.als_implicit, users, seen, k),
    }
    lists["trending"] = models.popularity_lists(fitted.trending, users, seen, k)
    lists["hybrid"] = models.hybrid(fitted.als_implicit, fitted.trending, train, users, k, fitted.hybrid)
    # each list is scored against 3 populations: computed once, not once per population
    return {name: df.persist(StorageLevel.MEMORY_AND_DISK) for name, df in lists.items()}


def evaluate(fitted: Fitted, train: DataFrame, test: DataFrame, cfg: Config,
             n_catalog: int) -> pd.DataFrame:
    """Test metrics: one row per (model, metric, population)."""
    k, threshold = cfg["train.k"], cfg["train.relevant_threshold"]
    rows = []
    warm = warm_pairs(test, train).persist(StorageLevel.MEMORY_AND_DISK)
    rating_models = {
        "global_mean": warm.withColumn(PREDICTION, F.lit(fitted.mu)),
        "bias": with_baseline(warm, fitted.biases),
        "als_plain": models.predict_als(fitted.als_plain, warm),
        "als_biased": models.predict_biased_als(fitted.als_biased, fitted.biases, warm),
    }
    for name, predictions in rating_models.items():
        for metric, value in metrics.rating_metrics(predictions).items():
            rows.append((name, metric, "warm_pairs", float(value)))
    train_users = train.select(t.USER_ID).distinct()
    truth = {"all": test,
             "warm": test.join(train_users, t.USER_ID, "inner"),
             "cold": test.join(train_users, t.USER_ID, "left_anti")}
    lists = ranked_lists(fitted, train, test.select(t.USER_ID).distinct(), k)
    for name, recs in lists.items():
        for population, pop_truth in truth.items():
            result = metrics.ranking_metrics(recs, pop_truth, k, relevant_threshold=threshold,
                                             n_catalog=n_catalog)
            for metric, value in result.items():
                rows.append((name, metric, population, float(value)))
    table = pd.DataFrame(rows, columns=["model", "metric", "population", "value"])
    warm.unpersist()
    for df in lists.values():
        df.unpersist()
    return table


# ------------------------------------------------------------------ the job

@dataclass
class TrainResult:
    mlflow_run_id: str
    best_params: dict[str, dict]
    metrics: pd.DataFrame = field(repr=False)
    gate: object = None

    def value(self, model: str, metric: str, population: str) -> float:
        m = self.metrics
        return float(m[(m.model == model) & (m.metric == metric) & (m.population == population)]["value"].iloc[0])


def _check_inputs(spark: SparkSession, lake, cfg: Config) -> tuple[DataFrame, DataFrame, int]:
    # persisted before the first count, so the count also fills the cache every stage reads
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN).persist(StorageLevel.MEMORY_AND_DISK)
    test = delta_io.read(spark, lake, t.RATINGS_TEST)
    n_train = train.count()
    if n_train < cfg["train.min_train_ratings"]:
        raise TrainError(f"ratings_train has {n_train} ratings, fewer than train.min_train_ratings="
                         f"{cfg['train.min_train_ratings']}: too few to train on; ingest a larger release")
    if test.limit(1).count() == 0:
        raise TrainError("ratings_test is empty: nothing to evaluate on; rerun `split`")
    return train, test, n_train


def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> TrainResult | str:
    run_date = run_date or date.today().isoformat()
    lake = cfg.path("lake")
    due, why = schedule.training_due(spark, cfg, run_date)
    log.info("training %s: %s", "due" if due else "skipped", why)
    if not due:
        return f"skipped: {why}"
    train, test, n_train = _check_inputs(spark, lake, cfg)
    client = tracking.connect(cfg)  # fails fast, before an hour of CV, if the store is unreachable
    n_catalog = delta_io.read(spark, lake, t.MOVIES).count() if delta_io.exists(spark, lake, t.MOVIES) \
        else train.select(t.MOVIE_ID).distinct().count()
    k, primary = cfg["train.k"], cfg["train.primary_metric"]

    with tracking.training_run(cfg, run_date, f"train_als {run_date}") as active:
        run_id = active.info.run_id
        tracking.log_config(cfg)
        mlflow.log_metric("train_ratings", n_train)
        best = _refit_params(client, cfg) if cfg["train.mode"] == "refit" else None
        mlflow.set_tag("train_mode", "full" if best is None else "refit")
        if best is None:
            with stage(log, "cross-validation on train"):
                best = cross_validate(train, cfg)
            cv_table = pd.DataFrame([row for r in best.values() for row in r.rows])
            tracking.log_table(cv_table, "cv_results")
            tracking.log_figure(plots.cv_results(cv_table), "cv_results")
        best_params = {name: r.best for name, r in best.items()}
        mlflow.log_dict(best_params, "best_params.json")
        for name, r in best.items():
            mlflow.log_params({f"best.{name}.{p}": v for p, v in r.best.items()})

        with stage(log, "final fit on all of train"):
            fitted = fit_final(train, cfg, best)
        with stage(log, "evaluation on test") as st:
            table = evaluate(fitted, train, test, cfg, n_catalog)
            st.rows = len(table)
        _log_metrics(table, k)
        _write_metrics(spark, lake, table, run_date, run_id)
        tracking.log_table(table, "test_metrics")
        tracking.log_figure(plots.metrics_vs_baselines(table, k), "metrics_vs_baselines")
        tracking.log_figure(plots.rating_distribution(_rating_counts(train), _rating_counts(test)),
                            "rating_distribution")

        model_uri = _log_ranker(fitted, best_params, k)
        primary_value = _primary(table, primary)
        gate = tracking.register_and_gate(client, model_uri, cfg["mlflow.model_name"], primary,
                                          primary_value, run_id,
                                          min_improvement=cfg["train.gate_min_improvement"])
    fitted.unpersist()
    train.unpersist()
    result = TrainResult(run_id, best_params, table, gate)
    _log_summary(result)
    return result


def _refit_params(client, cfg: Config) -> dict[str, SearchResult] | None:
    """The champion's cross-validated parameters, for a nightly refit without CV; None (so a
    full CV runs) when there is no champion or its run kept no parameters."""
    champion = tracking.current_champion(client, cfg["mlflow.model_name"])
    if champion is None:
        log.info("refit asked for, but there is no champion yet: running the full CV")
        return None
    try:
        params = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/best_params.json")
    except Exception as exc:  # an old or foreign run: CV is the safe answer
        log.warning("refit: champion v%s has no best_params.json (%s): running the full CV",
                    champion.version, exc)
        return None
    log.info("refit with champion v%s's parameters: %s", champion.version, params)
    return {name: SearchResult(name, "refit", p, float("nan"), []) for name, p in params.items()}


def _primary(table: pd.DataFrame, primary: str) -> float:
    """primary_metric is '<metric>_<population>' of the hybrid ranker, e.g. ndcg_all."""
    metric, _, population = primary.rpartition("_")
    hit = table[(table.model == "hybrid") & (table.metric == metric) & (table.population == population)]
    if hit.empty:
        raise TrainError(f"train.primary_metric {primary!r} is not a metric of the hybrid ranker")
    return float(hit["value"].iloc[0])


def _rating_counts(ratings: DataFrame) -> pd.DataFrame:
    return ratings.groupBy(t.RATING).agg(F.count(F.lit(1)).alias("n")).orderBy(t.RATING).toPandas()


def _log_metrics(table: pd.DataFrame, k: int) -> None:
    for row in table.itertuples():
        suffix = "" if row.metric in ("rmse", "mae", "n", "users", "coverage") else f"_at_{k}"
        mlflow.log_metric(f"{row.model}.{row.metric}{suffix}.{row.population}", row.value)


def _write_metrics(spark: SparkSession, lake, table: pd.DataFrame, run_date: str, run_id: str) -> None:
    rows = [(date.fromisoformat(run_date), run_id, r.model, r.metric, r.population, r.value)
            for r in table.itertuples()]
    df = spark.createDataFrame(rows, t.SCHEMAS[t.MODEL_METRICS])
    # one run per date: rerunning a date replaces its rows instead of adding a second set
    delta_io.overwrite(df, lake, t.MODEL_METRICS, replace_where=f"run_date = DATE'{run_date}'")


def _log_ranker(fitted: Fitted, best_params: dict, k: int) -> str:
    """The hybrid ranker: implicit ALS (mlflow.spark) plus its fallback list and threshold."""
    # Explicit requirements: inferring them costs MLflow ~30 s per model.
    info = mlflow.spark.log_model(fitted.als_implicit, artifact_path="model",
                                  pip_requirements=[f"pyspark=={pyspark.__version__}"])
    with tempfile.TemporaryDirectory() as tmp:
        fallback = Path(tmp) / "trending.csv"
        fitted.trending.orderBy(F.col("score").desc(), t.MOVIE_ID).toPandas().to_csv(fallback, index=False)
        mlflow.log_artifact(str(fallback), "ranker")
    mlflow.log_dict({"k": k, **fitted.hybrid, "fallback": "ranker/trending.csv",
                     "best_params": best_params}, "ranker/hybrid.json")
    return info.model_uri


def _log_summary(result: TrainResult) -> None:
    v = result.value
    bias, biased = v("bias", "rmse", "warm_pairs"), v("als_biased", "rmse", "warm_pairs")
    log.info("RMSE on %d warm test pairs: bias %.4f, plain ALS %.4f, biased ALS %.4f (%.1f%% vs bias)",
             int(v("bias", "n", "warm_pairs")), bias, v("als_plain", "rmse", "warm_pairs"), biased,
             100 * (biased - bias) / bias)
    for model in RANKERS:
        log.info("NDCG@k %-15s all %.4f  warm %.4f  cold %.4f", model, v(model, "ndcg", "all"),
                 v(model, "ndcg", "warm"), v(model, "ndcg", "cold"))
    log.info("champion: %s", result.gate.reason if result.gate else "not gated")
