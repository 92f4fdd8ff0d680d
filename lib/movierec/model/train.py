"""train_als: the backtest decides how to train, then the served model learns all it knows.

Backtest: every model of the catalog is fitted on ratings_train only; hyperparameters come from
forward-chaining CV on train (tuning.py), or, in refit mode, from the champion's run;
ratings_test is read once, for the final evaluation (evaluate.py, model_metrics).
Production: the served model (train.served_model, with the models it requires) is fitted again,
with those parameters, on every rating known as of the run date (data/known.py), and that fit
is what is logged, registered and gated. Nothing here names a model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import mlflow
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.core.logs import stage
from movierec.core.settings import TrainMode
from movierec.data.known import known_ratings
from movierec.model import catalog, plots, prequential, schedule, tracking
from movierec.model.base import Fitted, Model
from movierec.model.evaluate import COLUMNS, RATING_POPULATION, beyond_noise, evaluate, value
from movierec.model.gate import PairedVerdict, Verdict
from movierec.model.tuning import chosen_params, cross_validate, describe_grids

log = logging.getLogger(__name__)


class TrainError(UserError, ValueError):
    pass


@dataclass
class TrainResult:
    mlflow_run_id: str
    best_params: dict[str, dict]
    metrics: pd.DataFrame = field(repr=False)
    gate: tracking.GateDecision | None = None
    cv: str = ""   # the grid cross-validation searched (tuning.describe_grids), or why none ran

    def value(self, model: str, metric: str, population: str) -> float:
        return value(self.metrics, model, metric, population)


def _check_inputs(spark: SparkSession, lake, cfg: Config) -> tuple[DataFrame, DataFrame, int]:
    # persisted before the first count, so the count also fills the cache every stage reads
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN).persist(StorageLevel.MEMORY_AND_DISK)
    test = delta_io.read(spark, lake, t.RATINGS_TEST)
    n_train = train.count()
    if n_train < cfg.train.min_train_ratings:
        raise TrainError(f"ratings_train has {n_train} ratings, fewer than train.min_train_ratings="
                         f"{cfg.train.min_train_ratings}: too few to train on; ingest a larger release")
    if test.limit(1).count() == 0:
        raise TrainError("ratings_test is empty: nothing to evaluate on; rerun `split`")
    return train, test, n_train


@job_guard.job("train_als")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> TrainResult | str:
    run_date = run_date or date.today().isoformat()
    lake = cfg.path("lake")
    models = catalog.build(cfg)   # a bad served_model fails here, before any Spark work
    due, why = schedule.training_due(spark, cfg, run_date)
    log.info("training %s: %s", "due" if due else "skipped", why)
    if not due:
        return f"skipped: {why}"
    train, test, n_train = _check_inputs(spark, lake, cfg)
    client = tracking.connect(cfg)  # fails fast, before an hour of CV, if the store is unreachable
    movies = delta_io.read(spark, lake, t.MOVIES) if delta_io.exists(spark, lake, t.MOVIES) else None
    n_catalog = movies.count() if movies is not None else train.select(t.MOVIE_ID).distinct().count()
    k, served = cfg.train.k, cfg.train.served_model

    with tracking.training_run(cfg, run_date, f"train_als {run_date}") as active:
        run_id = active.info.run_id
        tracking.log_config(cfg)
        mlflow.log_metric("train_ratings", n_train)
        params = _refit_params(client, cfg, models) if cfg.train.mode == TrainMode.REFIT else None
        refit = params is not None
        cv = "none: refit with the champion's parameters"
        mlflow.set_tag("train_mode", "refit" if refit else "full")
        if not refit:
            # only the backtest fits every model: a refit fits the served one alone
            models, skipped = catalog.runnable(models, train)
            mlflow.set_tags({f"skipped.{name}": why for name, why in skipped.items()})
            with stage(log, "cross-validation on train"):
                results = cross_validate(train, models, cfg)
            cv = describe_grids(models, cfg)
            mlflow.set_tag("cv.grid", cv)
            cv_table = pd.DataFrame([row for r in results.values() for row in r.rows])
            if not cv_table.empty:   # every grid a single point: nothing was scored
                tracking.log_table(cv_table, "cv_results")
                tracking.log_figure(plots.cv_results(cv_table), "cv_results")
            params = {name: chosen_params(model, results) for name, model in models.items()}
        mlflow.log_dict(params, "best_params.json")
        for name, chosen in params.items():
            mlflow.log_params({f"best.{name}.{p}": v for p, v in chosen.items()})
        if refit:
            # ratings_train and ratings_test never change after the split, so the champion's
            # backtest of these same parameters stands: refitting it would repeat its numbers
            log.info("refit: the backtest is not rerun (train and test are unchanged since the "
                     "champion's run chose these parameters)")
            table = pd.DataFrame(columns=COLUMNS)
        else:
            table = _backtest(spark, lake, models, params, train, test, movies, run_date, run_id,
                              cfg=cfg, n_catalog=n_catalog)
        production, known = _fit_served(spark, lake, models, served, params, run_date)
        model_uri = models[served].log(production[served], params, k)
        evidence: dict = {}

        def judge(champion) -> Verdict:
            if champion is None:
                return Verdict(True, float("nan"), None, "no champion yet: the first model is served")
            verdict, found = prequential.judge(spark, cfg, models, params, run_date, str(champion.version))
            evidence.update(found)
            return verdict

        gate = tracking.register_and_gate(client, model_uri, cfg.mlflow.model_name, run_id,
                                          model=served, primary=cfg.train.primary_metric, judge=judge)
        _record_gate(spark, lake, run_date, run_id, gate, evidence)
    for f in production.values():
        f.release()
    known.unpersist()
    train.unpersist()
    result = TrainResult(run_id, params, table, gate, cv)
    _log_summary(result, models)
    return result


def _backtest(spark: SparkSession, lake, models: Mapping[str, Model], params: Mapping[str, dict],
              train: DataFrame, test: DataFrame, movies: DataFrame | None, run_date: str,
              run_id: str, *, cfg: Config, n_catalog: int) -> pd.DataFrame:
    """Every model fitted on train and scored on test: model_metrics, MLflow, plots."""
    k = cfg.train.k
    with stage(log, "final fit on all of train"):
        fitted = catalog.fit_all(models, train, params)
    with stage(log, "evaluation on test") as st:
        table = evaluate(models, fitted, train, test, k=k, threshold=cfg.train.relevant_threshold,
                         n_catalog=n_catalog, movies=movies, baseline=cfg.train.baseline_model,
                         resamples=cfg.train.metric_bootstrap, seed=cfg.train.seed)
        st.rows = len(table)
    for f in fitted.values():
        f.release()
    _log_metrics(table, k)
    _write_metrics(spark, lake, table, run_date, run_id)
    tracking.log_table(table, "test_metrics")
    tracking.log_figure(plots.metrics_vs_baselines(table, k), "metrics_vs_baselines")
    tracking.log_figure(plots.rating_distribution(_rating_counts(train), _rating_counts(test)),
                        "rating_distribution")
    return table


def _fit_served(spark: SparkSession, lake, models: Mapping[str, Model], served: str,
                params: Mapping[str, dict], run_date: str) -> tuple[dict[str, Fitted], DataFrame]:
    """The served model and what it requires, fitted on every rating known as of run_date
    (returned too: it stays cached while the fitted models use it)."""
    with stage(log, f"served fit on the ratings known as of {run_date}") as st:
        known = known_ratings(spark, lake, run_date).persist(StorageLevel.MEMORY_AND_DISK)
        row = known.agg(F.count(F.lit(1)), F.countDistinct(t.USER_ID), F.max(t.TS)).first()
        st.rows = row[0]
        fitted = catalog.fit_all(catalog.with_requirements(dict(models), served), known, params)
    mlflow.log_metrics({"served.training_ratings": row[0], "served.training_users": row[1]})
    mlflow.set_tags({tracking.SERVED_AS_OF: run_date, "served.newest_rating_ts": str(row[2])})
    log.info("served model %s fitted on %s known ratings of %s users (newest %s)", served,
             f"{row[0]:,}", f"{row[1]:,}", row[2])
    return fitted, known


def _record_gate(spark: SparkSession, lake, run_date: str, run_id: str,
                 gate: tracking.GateDecision, evidence: dict) -> None:
    """One gate_decisions row (a rerun of the date replaces it) and the evidence as run tags."""
    verdict = gate.verdict
    paired = isinstance(verdict, PairedVerdict)
    stamp = lambda v: None if v in (None, "None") else datetime.fromisoformat(v)  # noqa: E731
    day = lambda v: date.fromisoformat(v) if v else None  # noqa: E731
    row = (date.fromisoformat(run_date), run_id, gate.version, gate.champion_version, gate.moved,
           gate.reason, evidence.get("metric"), day(evidence.get("training_cutoff")),
           day(evidence.get("window_end")), evidence.get("window_users"), evidence.get("window_ratings"),
           stamp(evidence.get("training_newest_ts")), stamp(evidence.get("window_oldest_ts")),
           _number(gate.new_value), _number(gate.old_value), _number(verdict.gain) if paired else None,
           _number(verdict.ci[0]) if paired else None, _number(verdict.ci[1]) if paired else None)
    delta_io.overwrite(spark.createDataFrame([row], t.SCHEMAS[t.GATE_DECISIONS]), lake,
                       t.GATE_DECISIONS, replace_where=f"{t.RUN_DATE} = DATE'{run_date}'")
    if evidence:
        mlflow.set_tags({f"gate.{k}": str(v) for k, v in evidence.items()})
        log.info("gate evidence: %s", evidence)


def _with_interval(row) -> str:
    """0.1930 [0.1410, 0.2460] n=16, and the gain over the baseline when beyond noise."""
    text = f"{row.value:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}] n={int(row.n)}"
    if isinstance(row.baseline, str) and beyond_noise(row):
        text += f" ({'above' if row.gain_low > 0 else 'below'} {row.baseline} beyond noise)"
    return text


def _number(v) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _refit_params(client, cfg: Config, models: Mapping[str, Model]) -> dict[str, dict] | None:
    """The champion's cross-validated parameters, for a nightly refit without CV; None (so a
    full CV runs) when there is no champion or its run kept no parameters."""
    champion = tracking.current_champion(client, cfg.mlflow.model_name)
    if champion is None:
        log.info("refit asked for, but there is no champion yet: running the full CV")
        return None
    try:
        kept = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/best_params.json")
    except Exception as exc:  # an old or foreign run: CV is the safe answer
        log.warning("refit: champion v%s has no best_params.json (%s): running the full CV",
                    champion.version, exc)
        return None
    # a refit fits the served model and what it requires, nothing else: a model the backtest
    # skipped (too large here) or added since needs no parameters for it
    fitted = catalog.with_requirements(dict(models), cfg.train.served_model)
    tuned = [name for name, m in fitted.items() if m.cv_metric is not None and name not in kept]
    if tuned:
        log.warning("refit: champion v%s kept no parameters for %s: running the full CV",
                    champion.version, tuned)
        return None
    log.info("refit with champion v%s's parameters: %s", champion.version, kept)
    return {name: kept[name] if name in kept else (m.shared_params(kept) or {})
            for name, m in models.items()}


def _rating_counts(ratings: DataFrame) -> pd.DataFrame:
    return ratings.groupBy(t.RATING).agg(F.count(F.lit(1)).alias("n")).orderBy(t.RATING).toPandas()


def _log_metrics(table: pd.DataFrame, k: int) -> None:
    def name(row) -> str:
        suffix = "" if row.metric in ("rmse", "mae", "n", "users", "coverage") else f"_at_{k}"
        return f"{row.model}.{row.metric}{suffix}.{row.population}"
    # one batch: a call per metric cost about 10 ms each against the SQLite store
    mlflow.log_metrics({name(row): row.value for row in table.itertuples()})


def _write_metrics(spark: SparkSession, lake, table: pd.DataFrame, run_date: str, run_id: str) -> None:
    rows = [(date.fromisoformat(run_date), run_id, r.model, r.metric, r.population, r.value,
             int(r.n), _number(r.ci_low), _number(r.ci_high), r.baseline, _number(r.gain_low),
             _number(r.gain_high)) for r in table.itertuples()]
    df = spark.createDataFrame(rows, t.SCHEMAS[t.MODEL_METRICS])
    # one run per date: rerunning a date replaces its rows instead of adding a second set
    delta_io.overwrite(df, lake, t.MODEL_METRICS, replace_where=f"run_date = DATE'{run_date}'")


def _log_summary(result: TrainResult, models: Mapping[str, Model]) -> None:
    if result.metrics.empty:
        log.info("champion: %s", result.gate.reason if result.gate else "not gated")
        return
    table = result.metrics.set_index(["model", "metric", "population"])
    for name, model in models.items():
        if model.rates:
            log.info("RMSE %-15s %s warm test pairs", name,
                     _with_interval(table.loc[(name, "rmse", RATING_POPULATION)]))
    for name, model in models.items():
        if model.ranks:
            log.info("NDCG@k %-15s %s", name, "  ".join(
                f"{pop} {_with_interval(table.loc[(name, 'ndcg', pop)])}" for pop in ("all", "warm", "cold")))
    log.info("champion: %s", result.gate.reason if result.gate else "not gated")
