"""The one interface every model implements, so tuning, evaluation, the final fit and serving
loop over models instead of naming them.

A `Model` is built from the config, declares its parameter grid and how cross-validation scores
it, and `fit`s ratings into a `Fitted` model; a fitted model `predict`s ratings for (user, movie)
pairs if it rates, and `recommend`s top-k lists if it ranks. A model may build on others
(`requires`): they are fitted first, on the same ratings with their own chosen parameters, and
handed to `fit`. The served model is also `Servable`: it saves itself into the MLflow run and is
loaded back from the registry by the recommend job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar

from pyspark.sql import DataFrame, SparkSession

from movierec.core import tables as t
from movierec.core.config import Config

PREDICTION = "prediction"   # the column predict() adds


class CvMetric(StrEnum):
    """How cross-validation scores a grid point on a fold's validation slice."""
    RMSE = "rmse"            # predictions for the (user, movie) pairs both known to the fit
    NDCG_WARM = "ndcg_warm"  # lists for the users of those pairs, judged on them
    NDCG_ALL = "ndcg_all"    # lists for every validation user, judged on all of their ratings

    @property
    def higher_is_better(self) -> bool:
        return self is not CvMetric.RMSE


class Fitted(ABC):
    """A model fitted on some ratings."""

    def predict(self, pairs: DataFrame) -> DataFrame:
        """`pairs` (user_id, movie_id, ...) with a `prediction` column added."""
        raise NotImplementedError(f"{type(self).__name__} does not rate")

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        """(user_id, movie_id, rank 1..k, score) for `users` (user_id), never a movie of
        `exclude` (user_id, movie_id pairs): the k best per user, ties to the lower movie_id."""
        raise NotImplementedError(f"{type(self).__name__} does not rank")

    def release(self) -> None:
        """Drops what the fit cached."""


class Model(ABC):
    """A model the project compares: its config, its grid, and how it fits."""

    name: ClassVar[str]
    rates: ClassVar[bool] = False                # has predict()
    ranks: ClassVar[bool] = False                # has recommend()
    requires: ClassVar[tuple[str, ...]] = ()     # models fitted first and handed to fit()
    cv_metric: ClassVar[CvMetric | None] = None  # None: not tuned by cross-validation

    def __init__(self, cfg: Config):
        self.cfg = cfg

    def grid(self) -> list[dict]:
        """The parameter sets cross-validation tries (one empty set: nothing to tune)."""
        return [{}]

    def skip_reason(self, ratings: DataFrame) -> str | None:
        """Why the model cannot run on `ratings` (too large for its method), or None."""
        return None

    def shared_params(self, best: Mapping[str, dict]) -> dict | None:
        """Parameters taken from other models' chosen ones instead of a search of its own."""
        return None

    @abstractmethod
    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        """Fits `ratings` (user_id, movie_id, rating, ts) with `params`, one of grid()."""


class Servable(Model):
    """The served model: saved into the active MLflow run, loaded back by the recommend job."""

    @abstractmethod
    def log(self, fitted: Fitted, best_params: dict[str, dict], k: int) -> str:
        """Logs `fitted` into the active MLflow run; returns the model URI to register."""

    @abstractmethod
    def load(self, spark: SparkSession, run_id: str, model_uri: str,
             history: DataFrame) -> ServedModel:
        """The model a registry version holds, knowing the users' ratings in `history`."""


class ServedModel(Fitted):
    """A fitted servable model; its lists carry `source` (model or fallback)."""

    params: dict

    @abstractmethod
    def fallback(self) -> DataFrame:
        """(movie_id, score): what a user the model does not know (a new sign-up) is shown."""

    def fold_in(self, ratings: DataFrame) -> int:
        """Fresh user factors for the users of `ratings` (all their known ratings), without a
        refit; returns how many users were folded in. A model without factors needs none."""
        return 0


def seen_pairs(ratings: DataFrame) -> DataFrame:
    return ratings.select(t.USER_ID, t.MOVIE_ID)
