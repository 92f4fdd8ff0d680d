"""Every fitted model on the test split: rating metrics on the warm (user, movie) pairs for the
models that rate; ranking and beyond-accuracy metrics at K over all, warm (train knows them) and
cold test users for those that rank. Every list excludes what the user rated in train.

Each value comes with the number of users (pairs, for the rating metrics) behind it and a 95%
bootstrap interval over users; each ranker's value also with the paired bootstrap interval of
its gain over the baseline model on the same users: when that interval excludes 0, the
difference is beyond noise."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model import beyond, metrics, uncertainty
from movierec.model.base import Fitted, Model, seen_pairs
from movierec.model.tuning import warm_pairs

COLUMNS = ["model", "metric", "population", "value", "n", "ci_low", "ci_high",
           "baseline", "gain_low", "gain_high"]
RATING_POPULATION = "warm_pairs"
PER_USER = metrics.RANKING + beyond.PER_LIST   # the metrics that are means over users


def evaluate(models: Mapping[str, Model], fitted: Mapping[str, Fitted], train: DataFrame,
             test: DataFrame, *, k: int, threshold: float, n_catalog: int,
             movies: DataFrame | None = None, baseline: str | None = None,
             resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Test metrics: one row per (model, metric, population), COLUMNS."""
    rows = []
    raters = [name for name, model in models.items() if model.rates]
    if raters:
        warm = warm_pairs(test, train).persist(StorageLevel.MEMORY_AND_DISK)
        errors = {name: metrics.per_user_errors(fitted[name].predict(warm)) for name in raters}
        warm.unpersist()
        rows += _rating_rows(errors, resamples=resamples, seed=seed)
    rankers = [name for name, model in models.items() if model.ranks]
    if rankers:
        users, seen = test.select(t.USER_ID).distinct(), seen_pairs(train)
        # every ranker's lists, for all, warm (train knows the user) and cold test users, in one pass
        lists = reduce(DataFrame.unionByName, [
            fitted[name].recommend(users, k, seen).select(t.USER_ID, t.MOVIE_ID, metrics.RANK)
            .withColumn(metrics.MODEL, F.lit(name)) for name in rankers])
        per_user = metrics.per_user_ranking(lists, rankers, test, k, known_users=train,
                                            relevant_threshold=threshold)
        facts = beyond.movie_facts(train, movies)
        rows += _ranking_rows(per_user, facts, n_catalog, baseline if baseline in rankers else None,
                              resamples=resamples, seed=seed)
    return pd.DataFrame(rows, columns=COLUMNS)


def _rating_rows(errors: Mapping[str, pd.DataFrame], *, resamples: int, seed: int) -> list[tuple]:
    """rmse and mae with intervals over the users of the warm pairs, and n (pairs)."""
    names = list(errors)
    users = np.unique(np.concatenate([e[t.USER_ID].to_numpy() for e in errors.values()]))
    columns = {}
    for name, e in errors.items():
        at = np.searchsorted(users, e[t.USER_ID].to_numpy())
        for part in ("n", "sse", "sae"):
            columns[name, part] = np.zeros(len(users))
            columns[name, part][at] = e[part].to_numpy()
    num = np.stack([columns[m, part] for m in names for part in ("sse", "sae")], axis=1)
    den = np.stack([columns[m, "n"] for m in names for _ in ("sse", "sae")], axis=1)
    samples = uncertainty.resampled_ratios(num, den, resamples=resamples, seed=seed)
    low, high = uncertainty.percentile_interval(samples)
    rows = []
    for j, name in enumerate(names):
        pairs = int(den[:, 2 * j].sum())
        point = num[:, 2 * j:2 * j + 2].sum(axis=0) / pairs if pairs else [np.nan, np.nan]
        rows.append(_row(name, "rmse", RATING_POPULATION, np.sqrt(point[0]), pairs,
                         np.sqrt(low[2 * j]), np.sqrt(high[2 * j])))
        rows.append(_row(name, "mae", RATING_POPULATION, point[1], pairs, low[2 * j + 1], high[2 * j + 1]))
        rows.append(_row(name, "n", RATING_POPULATION, pairs, pairs))
    return rows


def _ranking_rows(per_user: metrics.PerUser, facts: beyond.MovieFacts, n_catalog: int,
                  baseline: str | None, *, resamples: int, seed: int) -> list[tuple]:
    """The per-user metrics (means over users, intervals, gain over the baseline), then users,
    coverage and Gini (one value per model and population, no interval). What a list shows
    (novelty, diversity, new share) is undefined without one: such users leave that mean, so
    its gain compares the two models' listed users, under the same resampling weights."""
    models, pops = per_user.models, per_user.populations
    values = dict(per_user.scores)
    per_list = [beyond.list_metrics(per_user.lists[j], facts) for j in range(len(models))]
    values.update({name: np.stack([p[name] for p in per_list], axis=1) for name in beyond.PER_LIST})
    keys = [(pop, metric, j) for pop in pops for metric in PER_USER for j in range(len(models))]
    counted = {key: pops[key[0]] & np.isfinite(values[key[1]][:, key[2]]) for key in keys}
    num = np.stack([np.where(counted[key], values[key[1]][:, key[2]], 0.0) for key in keys], axis=1)
    den = np.stack([counted[key].astype(np.float64) for key in keys], axis=1)
    samples = uncertainty.resampled_ratios(num, den, resamples=resamples, seed=seed)
    low, high = uncertainty.percentile_interval(samples)
    column = {key: c for c, key in enumerate(keys)}
    rows = []
    for (pop, metric, j), c in column.items():
        n = int(den[:, c].sum())
        gain = (np.nan, np.nan)
        if baseline is not None and models[j] != baseline:
            b = column[pop, metric, models.index(baseline)]
            gain = uncertainty.percentile_interval((samples[:, c] - samples[:, b])[:, None])
            gain = (gain[0][0], gain[1][0])
        rows.append(_row(models[j], metric, pop, num[:, c].sum() / n if n else np.nan, n,
                         low[c], high[c], baseline, *gain))
    for pop, members in pops.items():
        n = int(members.sum())
        for j, model in enumerate(models):
            rows.append(_row(model, "users", pop, n, n))
            for metric, v in beyond.exposure(per_user.lists[j][members], n_catalog).items():
                rows.append(_row(model, metric, pop, v, n))
    return rows


def _row(model: str, metric: str, population: str, value, n: int, low=np.nan, high=np.nan,
         baseline: str | None = None, gain_low=np.nan, gain_high=np.nan) -> tuple:
    number = lambda v: float(v) if v is not None and np.isfinite(v) else float("nan")  # noqa: E731
    return (model, metric, population, number(value), int(n), number(low), number(high),
            baseline if np.isfinite(gain_low) else None, number(gain_low), number(gain_high))


def value(table: pd.DataFrame, model: str, metric: str, population: str) -> float:
    hit = table[(table.model == model) & (table.metric == metric) & (table.population == population)]
    if hit.empty:
        raise KeyError(f"no {metric} for {model} on {population} in the metrics table")
    return float(hit["value"].iloc[0])


def beyond_noise(row) -> bool:
    """Whether a row's paired interval of the gain over the baseline excludes 0."""
    return bool(np.isfinite(row.gain_low) and (row.gain_low > 0 or row.gain_high < 0))
