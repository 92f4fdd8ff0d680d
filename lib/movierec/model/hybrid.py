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
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.als import factors, implicit_feedback
from movierec.model.base import CvMetric, Fitted, Servable, ServedModel
from movierec.model.baselines import SCORE, trending
from movierec.model.foldin import fold_in
from movierec.model.grids import product
from movierec.model.topk_blocked import top_k_any_size

log = logging.getLogger(__name__)

ARTIFACTS = "ranker"                    # the run's folder of hybrid.json and trending.csv


def top_movies(scores: DataFrame, n: int) -> DataFrame | None:
    """The n best-scoring movie_ids (ties to the lower id), or None for n <= 0: no restriction."""
    if n <= 0:
        return None
    return scores.orderBy(F.col(SCORE).desc(), F.col(t.MOVIE_ID)).limit(n).select(t.MOVIE_ID)


def history_counts(ratings: DataFrame) -> DataFrame:
    return ratings.groupBy(t.USER_ID).agg(F.count(F.lit(1)).alias("n"))


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
        """Users with min_history ratings and factors: the model's list of the candidates;
        everyone: topped up to k (or given whole) from the trending list, in one top-K."""
        own, items = factors(self.als)
        user_factors = own if self.user_factors is None else self.user_factors
        candidates = top_movies(self.trend, self.params["candidates"])
        if candidates is not None:
            items = items.join(candidates, t.MOVIE_ID, "inner")
        trusted = history_counts(self.history).where(F.col("n") >= self.params["min_history"])
        scored = (users.select(t.USER_ID).distinct()
                  .join(user_factors.join(trusted, t.USER_ID, "left_semi"), t.USER_ID, "left"))
        return top_k_any_size(scored, items, exclude, k, fallback=self.trend)

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

