"""The hybrid ranker, the served model: implicit ALS re-ranks the most trending movies for users
with enough history; everyone else, and any list short of k, gets trending movies.

Training evaluates it and serving publishes it through the same `FittedHybrid.recommend`. In
MLflow it is the implicit ALS model (mlflow.spark) plus `ranker/trending.csv` (the fallback) and
`ranker/hybrid.json` (its parameters).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

import mlflow
import pandas as pd
import pyspark
from mlflow.artifacts import download_artifacts
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.als import als_lists, factors, implicit_feedback
from movierec.model.base import CvMetric, Fitted, Servable, ServedModel
from movierec.model.baselines import SCORE, popularity_lists, trending
from movierec.model.foldin import fold_in
from movierec.model.grids import product

log = logging.getLogger(__name__)

MODEL, FALLBACK = "model", "fallback"   # values of `source` in a hybrid list
ARTIFACTS = "ranker"                    # the run's folder of hybrid.json and trending.csv


def top_movies(scores: DataFrame, n: int) -> DataFrame | None:
    """The n best-scoring movie_ids (ties to the lower id), or None for n <= 0: no restriction."""
    if n <= 0:
        return None
    return scores.orderBy(F.col(SCORE).desc(), F.col(t.MOVIE_ID)).limit(n).select(t.MOVIE_ID)


def history_counts(ratings: DataFrame) -> DataFrame:
    return ratings.groupBy(t.USER_ID).agg(F.count(F.lit(1)).alias("n"))


def hybrid_lists(model_lists: DataFrame, fallback_lists: DataFrame, history: DataFrame,
                 min_history: int, k: int) -> DataFrame:
    """The model's list for users with at least min_history ratings and a model list;
    the fallback list for everyone else (new and thin users); short lists topped up."""
    trusted = history.where(F.col("n") >= min_history).select(t.USER_ID)
    return fill_lists(model_lists.join(trusted, t.USER_ID, "inner"), fallback_lists, k)


def fill_lists(primary: DataFrame, fallback: DataFrame, k: int) -> DataFrame:
    """Each user's primary list topped up to k rows from their fallback list (movies not already
    in it), ranks 1..k without gaps; users with no primary list get their fallback list.
    Adds `source`: model or fallback. Both inputs: (user_id, movie_id, rank, score)."""
    order = "_order"
    first = primary.withColumn(t.SOURCE, F.lit(MODEL)).withColumn(order, F.col(t.RANK))
    rest = (fallback.join(primary.select(t.USER_ID, t.MOVIE_ID), [t.USER_ID, t.MOVIE_ID], "left_anti")
            .withColumn(t.SOURCE, F.lit(FALLBACK)).withColumn(order, F.col(t.RANK) + k))
    by_user = Window.partitionBy(t.USER_ID).orderBy(order)
    return (first.unionByName(rest)
            .withColumn(t.RANK, F.row_number().over(by_user))
            .where(F.col(t.RANK) <= k).drop(order))


class FittedHybrid(ServedModel):
    def __init__(self, als: ALSModel, trend: DataFrame, history: DataFrame, params: dict,
                 fold_in_params: dict | None = None):
        """als: implicit ALS; trend: (movie_id, score) trending scores; history: the ratings
        whose per-user counts decide who is trusted to the model (min_history);
        fold_in_params: the implicit ALS's regParam and alpha and the liked-rating threshold
        (min_rating), which a loaded model needs to fold users in."""
        self.als, self.trend, self.history, self.params = als, trend.persist(), history, params
        self.fold_in_params, self.user_factors = fold_in_params, None

    def fold_in(self, ratings: DataFrame) -> int:
        if self.fold_in_params is None:
            raise ValueError("this hybrid was not loaded with its ALS parameters: cannot fold in")
        p = self.fold_in_params
        liked = implicit_feedback(ratings, p["min_rating"])
        folded = fold_in(liked, factors(self.als)[1], reg=p["regParam"], implicit=True,
                         alpha=p["alpha"]).persist()
        own = factors(self.als)[0].join(ratings.select(t.USER_ID).distinct(), t.USER_ID, "left_anti")
        self.user_factors = own.unionByName(folded).persist()
        n = folded.count()
        folded.unpersist()
        return n

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        model_lists = als_lists(self.als, users, exclude, k,
                                top_movies(self.trend, self.params["candidates"]),
                                user_factors=self.user_factors)
        fallback = popularity_lists(self.trend, users, exclude, k)
        return hybrid_lists(model_lists, fallback, history_counts(self.history),
                            self.params["min_history"], k)

    def fallback(self) -> DataFrame:
        return self.trend

    def release(self) -> None:
        self.trend.unpersist()
        if self.user_factors is not None:
            self.user_factors.unpersist()


class Hybrid(Servable):
    """min_history, the trending half-life and the number of candidates chosen by CV on NDCG
    over all validation users, with the implicit ALS model of its own CV."""
    name, ranks, cv_metric = "hybrid", True, CvMetric.NDCG_ALL
    requires = ("als_implicit",)

    def grid(self) -> list[dict]:
        s = self.cfg.train.hybrid
        return product(min_history=s.min_history_grid, half_life_days=s.half_life_grid,
                       candidates=s.candidates_grid)

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> FittedHybrid:
        return FittedHybrid(deps["als_implicit"].model,
                            trending(ratings, half_life_days=params["half_life_days"]),
                            ratings, params)

    def log(self, fitted: Fitted, best_params: dict[str, dict], k: int) -> str:
        # Explicit requirements: inferring them costs MLflow ~30 s per model.
        info = mlflow.spark.log_model(fitted.als, artifact_path="model",
                                      pip_requirements=[f"pyspark=={pyspark.__version__}"])
        with tempfile.TemporaryDirectory() as tmp:
            fallback = Path(tmp) / "trending.csv"
            (fitted.trend.orderBy(F.col(SCORE).desc(), t.MOVIE_ID).toPandas()
             .to_csv(fallback, index=False))
            mlflow.log_artifact(str(fallback), ARTIFACTS)
        mlflow.log_dict({"k": k, **fitted.params, "fallback": f"{ARTIFACTS}/trending.csv",
                         "best_params": best_params}, f"{ARTIFACTS}/hybrid.json")
        return info.model_uri

    def load(self, spark: SparkSession, run_id: str, model_uri: str,
             history: DataFrame) -> FittedHybrid:
        pipeline = mlflow.spark.load_model(model_uri)
        folder = Path(download_artifacts(run_id=run_id, artifact_path=ARTIFACTS))
        params = json.loads((folder / "hybrid.json").read_text())
        trend = (pd.read_csv(folder / "trending.csv")
                 .astype({t.MOVIE_ID: "int32", SCORE: "float32"})[[t.MOVIE_ID, SCORE]])
        als = params["best_params"]["als_implicit"]
        fold = {"regParam": als["regParam"], "alpha": als["alpha"],
                "min_rating": self.cfg.train.implicit.min_rating}
        return FittedHybrid(pipeline.stages[0], spark.createDataFrame(trend), history, params, fold)

