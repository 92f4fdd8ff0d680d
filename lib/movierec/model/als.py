"""Spark MLlib ALS three ways: on ratings ("plain"), on what the biases leave ("biased"), and on
ratings as implicit feedback ("implicit"). Lists come from the blocked top-K (topk.top_k), not
from recommendForAllUsers, so seen movies are excluded and ties broken like every other model.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.core.settings import AlsSettings, AlsSolver
from movierec.model.als_cg import fit_cg
from movierec.model.base import PREDICTION, CvMetric, Fitted, Model
from movierec.model.baselines import Biases, residuals, with_baseline
from movierec.model.grids import als_grid
from movierec.model.topk import FEATURES
from movierec.model.topk_blocked import top_k_any_size

RESIDUAL = "residual"


def fit_als(ratings: DataFrame, *, rank: int, reg: float, max_iter: int, seed: int,
            rating_col: str = t.RATING, implicit: bool = False, alpha: float = 1.0,
            blocks: int = 0, solver: AlsSolver = AlsSolver.SPARK, cg_steps: int = 3) -> ALSModel:
    """Spark's ALS, or with solver=cg the same objective by model/als_cg.py (blocks unused)."""
    if solver == AlsSolver.CG:
        return fit_cg(ratings, rank=rank, reg=reg, max_iter=max_iter, seed=seed, implicit=implicit,
                      alpha=alpha, cg_steps=cg_steps, rating_col=rating_col)
    als = ALS(userCol=t.USER_ID, itemCol=t.MOVIE_ID, ratingCol=rating_col, rank=rank,
              regParam=reg, maxIter=max_iter, seed=seed, implicitPrefs=implicit, alpha=alpha,
              coldStartStrategy="nan", nonnegative=False)
    if blocks:   # 0 keeps Spark's default of 10 user and 10 item blocks
        als.setNumBlocks(blocks)
    return als.fit(ratings)


def fit_biased_als(ratings: DataFrame, biases: Biases, **als_params) -> ALSModel:
    """ALS on what the biases leave unexplained: Spark's ALS has no bias terms of its own."""
    return fit_als(residuals(ratings, biases, RESIDUAL), rating_col=RESIDUAL, **als_params)


def predict_biased_als(model: ALSModel, biases: Biases, pairs: DataFrame) -> DataFrame:
    """Bias baseline plus the ALS residual; a pair ALS cannot score keeps the baseline."""
    base = with_baseline(pairs, biases, "_base")
    scored = model.transform(base)
    return scored.withColumn(
        PREDICTION, F.col("_base") + F.coalesce(F.nanvl(F.col(PREDICTION), F.lit(None)), F.lit(0.0))
    ).drop("_base")


def implicit_feedback(ratings: DataFrame, min_rating: float) -> DataFrame:
    """Ratings at or above min_rating as positive feedback of strength 1; ALS's alpha sets confidence."""
    return (ratings.where(F.col(t.RATING) >= min_rating)
            .select(t.USER_ID, t.MOVIE_ID, F.lit(1.0).cast("float").alias(t.RATING)))


def factors(model: ALSModel) -> tuple[DataFrame, DataFrame]:
    users = model.userFactors.select(F.col("id").alias(t.USER_ID), F.col(FEATURES))
    items = model.itemFactors.select(F.col("id").alias(t.MOVIE_ID), F.col(FEATURES))
    return users, items


def als_lists(model: ALSModel, users: DataFrame, seen: DataFrame | None, k: int,
              candidates: DataFrame | None = None, item_bias: dict[int, float] | None = None,
              user_factors: DataFrame | None = None) -> DataFrame:
    """Top-k unseen movies for `users` (user_id) that the model knows; others get no list.
    With `candidates` (movie_id), only those movies are ranked; `item_bias` is added to scores;
    `user_factors` (user_id, features) replaces the model's own (after a fold-in)."""
    own_users, item_factors = factors(model)
    user_factors = own_users if user_factors is None else user_factors
    wanted = user_factors.join(users.select(t.USER_ID).distinct(), t.USER_ID, "inner")
    if candidates is not None:
        item_factors = item_factors.join(candidates.select(t.MOVIE_ID), t.MOVIE_ID, "inner")
    return top_k_any_size(wanted, item_factors, seen, k, item_bias=item_bias)


class FittedAls(Fitted):
    def __init__(self, model: ALSModel):
        self.model = model

    def predict(self, pairs: DataFrame) -> DataFrame:
        return self.model.transform(pairs)

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        return als_lists(self.model, users, exclude, k)


class FittedBiasedAls(FittedAls):
    def __init__(self, model: ALSModel, biases: Biases):
        super().__init__(model)
        self.biases = biases

    def predict(self, pairs: DataFrame) -> DataFrame:
        return predict_biased_als(self.model, self.biases, pairs)

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        # a user's own bias does not change their ranking; the movie's does
        item_bias = {r[0]: float(r[1]) for r in self.biases.items.collect()}
        return als_lists(self.model, users, exclude, k, item_bias=item_bias)


class _Als(Model):
    """The ALS settings every variant shares; `section` names its grid in the config."""
    section: str

    @property
    def settings(self) -> AlsSettings:
        return getattr(self.cfg.train, self.section)

    def grid(self) -> list[dict]:
        return als_grid(rank=self.settings.rank_grid, regParam=self.settings.reg_grid)

    def als_args(self, params: dict) -> dict:
        out = {"rank": params["rank"], "reg": params["regParam"], "max_iter": self.settings.max_iter,
               "seed": self.cfg.train.seed, "blocks": self.cfg.train.als_blocks,
               "solver": self.settings.solver, "cg_steps": self.settings.cg_steps}
        if "alpha" in params:
            out["alpha"] = params["alpha"]
        return out


class AlsPlain(_Als):
    """ALS on the ratings themselves."""
    name, section, rates, ranks, cv_metric = "als_plain", "als", True, True, CvMetric.RMSE

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        return FittedAls(fit_als(ratings, **self.als_args(params)))


class AlsBiased(_Als):
    """ALS on the residuals of the bias model (its chosen damping), predictions bias + ALS."""
    name, section, rates, ranks, cv_metric = "als_biased", "als", True, True, CvMetric.RMSE
    requires = ("bias",)

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        biases = deps["bias"].biases   # a FittedBiases
        return FittedBiasedAls(fit_biased_als(ratings, biases, **self.als_args(params)), biases)


class AlsImplicit(_Als):
    """Implicit-feedback ALS on the liked ratings (train.implicit.min_rating and up)."""
    name, section, ranks, cv_metric = "als_implicit", "implicit", True, CvMetric.NDCG_WARM

    def grid(self) -> list[dict]:
        s = self.cfg.train.implicit
        return als_grid(rank=s.rank_grid, regParam=s.reg_grid, alpha=s.alpha_grid)

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> Fitted:
        liked = implicit_feedback(ratings, self.cfg.train.implicit.min_rating)
        return FittedAls(fit_als(liked, implicit=True, **self.als_args(params)))
