"""Hyperparameter search by cross-validation on the training data only, for any model.

Folds respect time (forward chaining): fold i fits on every train rating before a cut point and
validates on the slice of train that follows it, the way the model is used: trained on the past,
judged on what comes next. The test split is never read here. Each model's grid is searched in
catalog order, on its declared CvMetric; a model that builds on others gets them fitted on the
same fold with the parameters already chosen for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.core.config import Config
from movierec.data.split import at_or_before, kth_key
from movierec.model import metrics
from movierec.model.base import CvMetric, Fitted, Model, seen_pairs

log = logging.getLogger(__name__)


@dataclass
class Fold:
    index: int
    fit: DataFrame
    validate: DataFrame
    warm: DataFrame | None = None   # validation pairs whose user and movie the fit knows


def forward_folds(train: DataFrame, folds: int, val_frac: float) -> list[Fold]:
    """`folds` consecutive validation slices of `val_frac` of train each, ending at train's end."""
    n = train.count()
    cuts = [round(n * (1 - val_frac * (folds - i))) for i in range(folds + 1)]
    if cuts[0] < 1:
        raise ValueError(f"{folds} folds of {val_frac:.0%} leave nothing to fit on")
    keys = [kth_key(train, c) for c in cuts[:-1]] + [None]
    out = []
    for i in range(folds):
        before = at_or_before(keys[i])
        upto = at_or_before(keys[i + 1]) if keys[i + 1] else F.lit(True)
        fit = train.where(before).persist(StorageLevel.MEMORY_AND_DISK)
        val = train.where(~before & upto).persist(StorageLevel.MEMORY_AND_DISK)
        out.append(Fold(i, fit, val))
    return out


def sample_users(ratings: DataFrame, n_users: int, seed: int) -> DataFrame:
    """Ratings of about n_users users, picked by a seeded hash so every run picks the same ones."""
    if n_users <= 0:
        return ratings
    total = ratings.select(t.USER_ID).distinct().count()
    if n_users >= total:
        return ratings
    bucket = F.abs(F.xxhash64(F.col(t.USER_ID), F.lit(seed))) % 1_000_000
    return ratings.where(bucket < int(1_000_000 * n_users / total))


def warm_pairs(ratings: DataFrame, known: DataFrame) -> DataFrame:
    """Rows of `ratings` whose user and movie both appear in `known`."""
    users = known.select(t.USER_ID).distinct()
    movies = known.select(t.MOVIE_ID).distinct()
    return ratings.join(users, t.USER_ID, "inner").join(movies, t.MOVIE_ID, "inner")


@dataclass
class SearchResult:
    model: str
    metric: str
    best: dict
    best_score: float
    rows: list[dict]   # one per (params, fold): the CV table


def search(model: str, metric: str, candidates: list[dict], folds: list[Fold],
           score: Callable[[dict, Fold], float], higher_is_better: bool) -> SearchResult:
    rows, means = [], []
    for params in candidates:
        scores = []
        for fold in folds:
            value = score(params, fold)
            scores.append(value)
            rows.append({"model": model, "params": _label(params), "fold": fold.index,
                         "metric": metric, "value": value})
        mean = sum(scores) / len(scores)
        means.append(mean)
        log.info("cv %s %s: %s %.4f (folds %s)", model, _label(params), metric, mean,
                 ", ".join(f"{s:.4f}" for s in scores))
    pick = max if higher_is_better else min
    best_i = means.index(pick(means))
    log.info("cv %s: best %s with %s %.4f", model, _label(candidates[best_i]), metric, means[best_i])
    return SearchResult(model, metric, candidates[best_i], means[best_i], rows)


def _label(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


# ------------------------------------------------------------------ any model, by its CvMetric


def score(metric: CvMetric, fitted: Fitted, fold: Fold, k: int, threshold: float) -> float:
    if metric is CvMetric.RMSE:
        return metrics.rating_metrics(fitted.predict(fold.warm))["rmse"]
    truth = fold.warm if metric is CvMetric.NDCG_WARM else fold.validate
    recs = fitted.recommend(truth.select(t.USER_ID).distinct(), k, seen_pairs(fold.fit))
    return metrics.ranking_metrics(recs, truth, k, relevant_threshold=threshold)["ndcg"]


def describe_grids(models: Mapping[str, Model], cfg: Config) -> str:
    """Which grid cross-validation searches, in a line: what a run's summary says it tried."""
    searched, fixed = [], []
    for model in models.values():
        grid = model.grid() if model.cv_metric is not None else []
        if len(grid) == 1:
            fixed.append(model.name)
        elif grid:
            axes = {key: list(dict.fromkeys(point[key] for point in grid)) for key in grid[0]}
            varied = " x ".join(f"{key} {'/'.join(map(str, values))}"
                                for key, values in axes.items() if len(values) > 1)
            searched.append(f"{model.name} {len(grid)} points ({varied})")
    return (f"{cfg.train.cv.folds} forward folds, profile {cfg.profile}: "
            f"searched {', '.join(searched) or 'nothing'}; one point: {', '.join(fixed) or 'none'}")


def chosen_params(model: Model, results: Mapping[str, SearchResult]) -> dict:
    """A model's parameters once the models before it are tuned: its own search's best, else
    what it shares with another model, else none."""
    if model.name in results:
        return results[model.name].best
    shared = model.shared_params({name: r.best for name, r in results.items()})
    return shared if shared is not None else {}


def cross_validate(train: DataFrame, models: Mapping[str, Model], cfg: Config) -> dict[str, SearchResult]:
    """The best parameters of every tuned model (models in catalog order), by forward-chaining
    CV on a seeded user sample of train."""
    k, threshold = cfg.train.k, cfg.train.relevant_threshold
    sample = sample_users(train, cfg.train.cv.user_sample, cfg.train.seed)
    folds = forward_folds(sample, cfg.train.cv.folds, cfg.train.cv.val_frac)
    for f in folds:
        f.warm = warm_pairs(f.validate, f.fit).persist(StorageLevel.MEMORY_AND_DISK)
    results: dict[str, SearchResult] = {}
    deps: dict[tuple[str, int], Fitted] = {}   # a required model, fitted once per fold

    def dependencies(model: Model, fold: Fold) -> dict[str, Fitted]:
        for name in model.requires:
            if (name, fold.index) not in deps:
                needed = models[name]
                deps[(name, fold.index)] = needed.fit(fold.fit, chosen_params(needed, results),
                                                      dependencies(needed, fold))
        return {name: deps[(name, fold.index)] for name in model.requires}

    for model in models.values():
        if model.cv_metric is None:
            continue
        grid = model.grid()
        if len(grid) == 1:   # nothing to choose: its fits would only cost time (3-5 s each here)
            log.info("cv %s: one grid point (%s), nothing to choose", model.name, _label(grid[0]))
            results[model.name] = SearchResult(model.name, model.cv_metric.value, grid[0],
                                               float("nan"), [])
            continue

        def fold_score(params: dict, fold: Fold, model: Model = model) -> float:
            fitted = model.fit(fold.fit, params, dependencies(model, fold))
            try:
                return score(model.cv_metric, fitted, fold, k, threshold)
            finally:
                fitted.release()

        results[model.name] = search(model.name, model.cv_metric.value, grid, folds,
                                     fold_score, model.cv_metric.higher_is_better)
    for fitted in deps.values():
        fitted.release()
    for f in folds:
        for df in (f.fit, f.validate, f.warm):
            df.unpersist()
    return results
