"""Every fitted model on the test split: rating metrics on the warm (user, movie) pairs for the
models that rate, ranking metrics at K over all, warm (train knows them) and cold test users for
those that rank. Every list excludes what the user rated in train."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model import metrics
from movierec.model.base import Fitted, Model, seen_pairs
from movierec.model.tuning import warm_pairs

COLUMNS = ["model", "metric", "population", "value"]
RATING_POPULATION = "warm_pairs"


def evaluate(models: Mapping[str, Model], fitted: Mapping[str, Fitted], train: DataFrame,
             test: DataFrame, *, k: int, threshold: float, n_catalog: int) -> pd.DataFrame:
    """Test metrics: one row per (model, metric, population)."""
    rows = []
    warm = warm_pairs(test, train).persist(StorageLevel.MEMORY_AND_DISK)
    for name, model in models.items():
        if model.rates:
            for metric, value in metrics.rating_metrics(fitted[name].predict(warm)).items():
                rows.append((name, metric, RATING_POPULATION, float(value)))
    users, seen = test.select(t.USER_ID).distinct(), seen_pairs(train)
    rankers = [name for name, model in models.items() if model.ranks]
    # every ranker's lists, for all, warm (train knows the user) and cold test users, in one pass
    lists = reduce(DataFrame.unionByName, [
        fitted[name].recommend(users, k, seen).select(t.USER_ID, t.MOVIE_ID, metrics.RANK)
        .withColumn(metrics.MODEL, F.lit(name)) for name in rankers])
    scored = metrics.ranking_metrics_by_model(lists, rankers, test, k, known_users=train,
                                              relevant_threshold=threshold, n_catalog=n_catalog)
    rows.extend((name, metric, population, float(value)) for name in rankers
                for population, result in scored[name].items() for metric, value in result.items())
    warm.unpersist()
    return pd.DataFrame(rows, columns=COLUMNS)


def value(table: pd.DataFrame, model: str, metric: str, population: str) -> float:
    hit = table[(table.model == model) & (table.metric == metric) & (table.population == population)]
    if hit.empty:
        raise KeyError(f"no {metric} for {model} on {population} in the metrics table")
    return float(hit["value"].iloc[0])
