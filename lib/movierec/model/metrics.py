"""Evaluation metrics for the recommender: DataFrames in, plain dicts out (each call runs Spark actions).

Ranking metrics follow Spark's `RankingMetrics` (pyspark.ml.evaluation.RankingEvaluator) exactly,
checked against the Spark 4.2 source and, in tests, against RankingEvaluator itself. For one
user, with `rec` the recommended ids in rank order truncated to the top k (it may be shorter
than k, or empty) and `rel` the set of relevant ids (non-empty for every evaluated user):

- precision@k = |rec ∩ rel| / k            (always divided by k, even when fewer than k were recommended)
- recall@k    = |rec ∩ rel| / |rel|
- ndcg@k      = DCG / IDCG with binary relevance: DCG = sum over positions i = 1..len(rec) with
                rec[i] in rel of 1 / log(i + 1); IDCG = sum over i = 1..min(|rel|, k) of 1 / log(i + 1)
- map@k       = (sum over positions i with rec[i] in rel of precision@i) / min(|rel|, k)
                (Spark >= 3.0 divides by min(|rel|, k), not by |rel|)
- hit_rate@k  = 1 if rec ∩ rel is non-empty, else 0 (not in Spark)

Each is averaged over the evaluated users. Positions are taken from the order of `rank`, so ranks are
expected to run 1..n with no gaps. All five come from one pass over the per-user lists (array
expressions), collected by Arrow, rather than RankingEvaluator's one job per metric: evaluation
scores 7 rankers on 3 populations, and at small scale Spark's fixed cost per job dominated. The
means, their bootstrap intervals (uncertainty.py) and the beyond-accuracy metrics of the same
lists (beyond.py) are then computed on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model import beyond

RANK = "rank"
MODEL = "model"   # which model's list a row of recs belongs to (ranking_metrics_by_model)
RANKING = ("precision", "recall", "ndcg", "map", "hit_rate")

# Per evaluated user, from `prediction` (the top-k ids in rank order) and `label` (the relevant
# ids): `flags` marks each recommended position that is relevant.
_FLAGS = "transform(prediction, x -> CAST(array_contains(label, x) AS INT))"
_HITS = f"aggregate({_FLAGS}, 0, (a, b) -> a + b)"
_PER_USER = {
    "precision": "{hits} / {k}D",
    "recall": "{hits} / size(label)",
    "ndcg": ("aggregate(transform({flags}, (f, i) -> f / ln(i + 2)), 0D, (a, b) -> a + b)"
             " / aggregate(transform(sequence(0, least(size(label), {k}) - 1), i -> 1D / ln(i + 2)),"
             " 0D, (a, b) -> a + b)"),
    "map": ("aggregate(transform({flags}, (f, i) -> f * aggregate(slice({flags}, 1, i + 1), 0,"
            " (a, b) -> a + b) / (i + 1D)), 0D, (a, b) -> a + b) / least(size(label), {k})"),
    "hit_rate": "IF({hits} > 0, 1D, 0D)",
}


def _require(df: DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {df.columns}")


def rating_metrics(predictions: DataFrame, *, label: str = "rating",
                   prediction: str = "prediction") -> dict[str, float]:
    """rmse, mae and n (number of rows with a non-null, non-NaN prediction), as
    pyspark.ml.evaluation.RegressionEvaluator defines them, in one aggregate. Rows whose
    prediction is null/NaN are dropped first (and not counted)."""
    scored, error = _errors(predictions, label, prediction)
    row = scored.agg(F.count(F.lit(1)).alias("n"), F.sqrt(F.avg(error * error)).alias("rmse"),
                     F.avg(F.abs(error)).alias("mae")).first()
    if row["n"] == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "n": 0}
    return {"rmse": float(row["rmse"]), "mae": float(row["mae"]), "n": int(row["n"])}


def per_user_errors(predictions: DataFrame, *, label: str = "rating",
                    prediction: str = "prediction") -> pd.DataFrame:
    """(user_id, n, sse, sae) on the driver: the pairs, squared and absolute errors that
    rating_metrics sums, per user, so that an interval can resample users."""
    scored, error = _errors(predictions, label, prediction)
    return scored.groupBy(t.USER_ID).agg(
        F.count(F.lit(1)).alias("n"), F.sum(error * error).alias("sse"),
        F.sum(F.abs(error)).alias("sae")).toPandas()


def _errors(predictions: DataFrame, label: str, prediction: str):
    _require(predictions, [label, prediction], "predictions")
    error = F.col(prediction).cast("double") - F.col(label).cast("double")
    return predictions.where(F.col(prediction).isNotNull() & ~F.isnan(prediction)), error


def ranking_metrics(recs: DataFrame, truth: DataFrame, k: int, *, relevant_threshold: float = 4.0,
                    n_catalog: int | None = None) -> dict[str, float]:
    """recs: (user_id, movie_id, rank) with rank 1..k (rank 1 best; rows with rank > k ignored);
    truth: test ratings (user_id, movie_id, rating). The evaluated users are the users of `truth`
    with at least one relevant item (rating >= relevant_threshold). A user with no recs counts with
    all metrics 0. Returns precision, recall, ndcg, map, hit_rate (all @k, averaged over evaluated
    users), users (number of evaluated users), and coverage = distinct movies recommended to the
    evaluated users / n_catalog (only when n_catalog is given)."""
    by_model = ranking_metrics_by_model(recs.withColumn(MODEL, F.lit("")), [""], truth, k,
                                        relevant_threshold=relevant_threshold, n_catalog=n_catalog)
    return by_model[""]["all"]


@dataclass(frozen=True)
class PerUser:
    """Every model's list and ranking metrics for every evaluated user, on the driver: row i of
    every array is the same user, users in ascending id order."""
    models: list[str]
    populations: dict[str, np.ndarray]   # name -> (users,) bool: "all", and "warm"/"cold" if known
    scores: dict[str, np.ndarray]        # metric of RANKING -> (users, models)
    lists: np.ndarray                    # (models, users, k) movie ids, beyond.NO_MOVIE-padded

    def summary(self, n_catalog: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
        """{model: {population: {metric: mean, "users": n[, "coverage": share]}}}."""
        result: dict[str, dict[str, dict[str, float]]] = {m: {} for m in self.models}
        for pop, members in self.populations.items():
            n = int(members.sum())
            for j, model in enumerate(self.models):
                values = {name: float(self.scores[name][members, j].mean()) if n else float("nan")
                          for name in RANKING}
                values["users"] = n
                if n_catalog is not None:
                    values["coverage"] = beyond.exposure(self.lists[j][members], n_catalog)["coverage"]
                result[model][pop] = values
        return result


def ranking_metrics_by_model(recs: DataFrame, models: list[str], truth: DataFrame, k: int, *,
                             known_users: DataFrame | None = None, relevant_threshold: float = 4.0,
                             n_catalog: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """ranking_metrics of every model's lists at once: recs has a `model` column naming one of
    `models`; {model: {"all": ..., "warm": ..., "cold": ...}}, warm users being those in
    known_users (user_id), cold the others (only "all" without known_users)."""
    return per_user_ranking(recs, models, truth, k, known_users=known_users,
                            relevant_threshold=relevant_threshold).summary(n_catalog)


def per_user_ranking(recs: DataFrame, models: list[str], truth: DataFrame, k: int, *,
                     known_users: DataFrame | None = None, relevant_threshold: float = 4.0) -> PerUser:
    """Every model's metrics for every evaluated user, in one Spark pass collected by Arrow. A
    user's relevant items depend neither on the model nor on the population, so one pass serves
    them all; every model is judged on the same users."""
    per_user = _lists_and_labels(recs, models, truth, k, relevant_threshold)
    warm = F.lit(None).cast("boolean")
    if known_users is not None:
        known = known_users.select(t.USER_ID).distinct().withColumn("warm", F.lit(True))
        per_user = per_user.join(known, on=t.USER_ID, how="left")
        warm = F.coalesce(F.col("warm"), F.lit(False))
    table = per_user.select(MODEL, t.USER_ID, warm.alias("warm"), "prediction", *[
        _formula(name, k).alias(name) for name in RANKING]).toArrow()
    names = table.column(MODEL).to_numpy(zero_copy_only=False).astype(str)
    all_users = table.column(t.USER_ID).to_numpy(zero_copy_only=False)
    order = np.lexsort((all_users, names))   # by model, then user
    rows = {m: order[names[order] == m] for m in models}
    first = rows[models[0]]
    populations = {"all": np.ones(len(first), bool)}
    if known_users is not None:
        populations["warm"] = table.column("warm").to_numpy(zero_copy_only=False)[first].astype(bool)
        populations["cold"] = ~populations["warm"]
    lists = beyond.padded(table.column("prediction"), k)
    scores = {name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
              for name in RANKING}
    return PerUser(list(models), populations,
                   {name: np.stack([v[rows[m]] for m in models], axis=1) for name, v in scores.items()},
                   np.stack([lists[rows[m]] for m in models]))


def per_user_scores(recs: DataFrame, truth: DataFrame, k: int, metric: str, *,
                    relevant_threshold: float = 4.0) -> DataFrame:
    """(user_id, score): `metric` (one of RANKING) @k of each evaluated user of `truth` (those
    with a relevant item), 0 for a user without a list: what a paired comparison needs."""
    if metric not in _PER_USER:
        raise ValueError(f"unknown ranking metric {metric!r}; known: {list(_PER_USER)}")
    per_user = _lists_and_labels(recs.withColumn(MODEL, F.lit("")), [""], truth, k, relevant_threshold)
    return per_user.select(t.USER_ID, _formula(metric, k).alias("score"))


def _formula(metric: str, k: int):
    return F.expr(_PER_USER[metric].format(flags=_FLAGS, hits=_HITS, k=k))


def _lists_and_labels(recs: DataFrame, models: list[str], truth: DataFrame, k: int,
                      relevant_threshold: float) -> DataFrame:
    """(model, user_id, prediction, label) for every model and every user with a relevant item in
    truth: prediction the model's top-k ids in rank order (empty without a list), label the
    user's relevant ids."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    _require(recs, [MODEL, t.USER_ID, t.MOVIE_ID, RANK], "recs")
    _require(truth, [t.USER_ID, t.MOVIE_ID, t.RATING], "truth")
    relevant = (truth.where(F.col(t.RATING) >= relevant_threshold)
                .groupBy(t.USER_ID).agg(F.collect_set(t.MOVIE_ID).alias("label")))
    # collect_list order is not guaranteed: sort (rank, movie_id) structs, then keep the ids.
    ranked = (recs.where(F.col(RANK) <= k)
              .groupBy(MODEL, t.USER_ID)
              .agg(F.array_sort(F.collect_list(F.struct(RANK, t.MOVIE_ID))).alias("recs"))
              .select(MODEL, t.USER_ID, F.transform("recs", lambda r: r[t.MOVIE_ID]).alias("prediction")))
    names = recs.sparkSession.createDataFrame([(m,) for m in models], f"{MODEL} string")
    # every model is judged on every evaluated user, with or without a list for them
    return (relevant.crossJoin(F.broadcast(names))
            .join(ranked, on=[MODEL, t.USER_ID], how="left")
            .withColumn("prediction", F.coalesce("prediction", F.array().cast("array<int>"))))
