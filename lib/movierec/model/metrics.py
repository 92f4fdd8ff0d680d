"""Evaluation metrics for the recommender: DataFrames in, plain dicts out (each call runs Spark actions).

Ranking metrics follow Spark's `RankingMetrics` (used through `pyspark.ml.evaluation.RankingEvaluator`),
checked against the Spark 4.2 source and behaviour. For one user, with `rec` the recommended ids in rank
order truncated to the top k (it may be shorter than k, or empty) and `rel` the set of relevant ids
(non-empty for every evaluated user):

- precision@k = |rec ∩ rel| / k            (always divided by k, even when fewer than k were recommended)
- recall@k    = |rec ∩ rel| / |rel|
- ndcg@k      = DCG / IDCG with binary relevance: DCG = sum over positions i = 1..len(rec) with
                rec[i] in rel of 1 / log(i + 1); IDCG = sum over i = 1..min(|rel|, k) of 1 / log(i + 1)
- map@k       = (sum over positions i with rec[i] in rel of precision@i) / min(|rel|, k)
                (Spark >= 3.0 divides by min(|rel|, k), not by |rel|)
- hit_rate@k  = 1 if rec ∩ rel is non-empty, else 0 (not in Spark: computed here with DataFrame ops)

Each is averaged over the evaluated users. Positions are taken from the order of `rank`, so ranks are
expected to run 1..n with no gaps.
"""

from __future__ import annotations

from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t

RANK = "rank"
_SPARK_RANKING = {
    "precision": "precisionAtK",
    "recall": "recallAtK",
    "ndcg": "ndcgAtK",
    "map": "meanAveragePrecisionAtK",
}


def _require(df: DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; it has {df.columns}")


def rating_metrics(predictions: DataFrame, *, label: str = "rating",
                   prediction: str = "prediction") -> dict[str, float]:
    """rmse, mae and n (number of rows with a non-null, non-NaN prediction) using
    pyspark.ml.evaluation.RegressionEvaluator. Rows whose prediction is null/NaN are dropped first
    (and not counted)."""
    _require(predictions, [label, prediction], "predictions")
    scored = (
        predictions
        .select(F.col(label).cast("double").alias(label), F.col(prediction).cast("double").alias(prediction))
        .where(F.col(prediction).isNotNull() & ~F.isnan(prediction))
        .cache()
    )
    try:
        n = scored.count()
        if n == 0:
            return {"rmse": float("nan"), "mae": float("nan"), "n": 0}
        evaluator = RegressionEvaluator(labelCol=label, predictionCol=prediction)
        return {
            "rmse": evaluator.evaluate(scored, {evaluator.metricName: "rmse"}),
            "mae": evaluator.evaluate(scored, {evaluator.metricName: "mae"}),
            "n": n,
        }
    finally:
        scored.unpersist()


def ranking_metrics(recs: DataFrame, truth: DataFrame, k: int, *, relevant_threshold: float = 4.0,
                    n_catalog: int | None = None) -> dict[str, float]:
    """recs: (user_id, movie_id, rank) with rank 1..k (rank 1 best; rows with rank > k ignored);
    truth: test ratings (user_id, movie_id, rating). The evaluated users are the users of `truth`
    with at least one relevant item (rating >= relevant_threshold). A user with no recs counts with
    all metrics 0. Returns precision, recall, ndcg, map, hit_rate (all @k, averaged over evaluated
    users), users (number of evaluated users), and coverage = distinct movies recommended to the
    evaluated users / n_catalog (only when n_catalog is given)."""
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    _require(recs, [t.USER_ID, t.MOVIE_ID, RANK], "recs")
    _require(truth, [t.USER_ID, t.MOVIE_ID, t.RATING], "truth")

    relevant = (
        truth
        .where(F.col(t.RATING) >= relevant_threshold)
        .groupBy(t.USER_ID)
        .agg(F.collect_set(F.col(t.MOVIE_ID).cast("double")).alias("label"))
    )
    top_k = recs.where(F.col(RANK) <= k)
    # collect_list order is not guaranteed: sort (rank, movie_id) structs, then keep the ids.
    ranked = (
        top_k
        .groupBy(t.USER_ID)
        .agg(F.array_sort(F.collect_list(F.struct(RANK, t.MOVIE_ID))).alias("recs"))
        .select(t.USER_ID, F.transform("recs", lambda r: r[t.MOVIE_ID].cast("double")).alias("prediction"))
    )
    per_user = (
        relevant
        .join(ranked, on=t.USER_ID, how="left")
        .select(
            t.USER_ID,
            F.coalesce("prediction", F.array().cast("array<double>")).alias("prediction"),
            "label",
        )
        .cache()
    )
    try:
        users, hit_rate = per_user.agg(
            F.count(F.lit(1)),
            F.avg(F.arrays_overlap("prediction", "label").cast("double")),
        ).first()
        result: dict[str, float] = {}
        if users == 0:
            result.update({name: float("nan") for name in _SPARK_RANKING})
        else:
            evaluator = RankingEvaluator(predictionCol="prediction", labelCol="label", k=k)
            for name, spark_name in _SPARK_RANKING.items():
                result[name] = evaluator.evaluate(per_user, {evaluator.metricName: spark_name})
        result["hit_rate"] = float("nan") if hit_rate is None else hit_rate
        result["users"] = users
        if n_catalog is not None:
            recommended = per_user.select(F.explode("prediction")).distinct().count()
            result["coverage"] = recommended / n_catalog
        return result
    finally:
        per_user.unpersist()
