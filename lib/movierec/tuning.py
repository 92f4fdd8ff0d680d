"""Hyperparameter search by cross-validation on the training data only.

Folds respect time (forward chaining): fold i fits on every train rating before a cut point and
validates on the slice of train that follows it, the way the model is used: trained on the past,
judged on what comes next. The test split is never read here.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec import tables as t
from movierec.split import at_or_before, kth_key

log = logging.getLogger(__name__)


@dataclass
class Fold:
    index: int
    fit: DataFrame
    validate: DataFrame


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


def grid(**axes: Iterable) -> list[dict]:
    """Every combination of the axes' values, as dicts."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


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
