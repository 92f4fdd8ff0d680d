"""The recommenders compared by training: ALS variants and the lists they and the baselines make.

Every list comes from the same blocked top-K (topk.top_k), so every model excludes the same
seen items and breaks ties the same way; popularity is a rank-1 "factor model" (user = 1,
item = its popularity) so it goes through the same code.
"""

from __future__ import annotations

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movierec import tables as t
from movierec.baselines import PREDICTION, SCORE, Biases, residuals, with_baseline
from movierec.topk import top_k

RESIDUAL = "residual"
FEATURES = "features"
MODEL, FALLBACK = "model", "fallback"   # values of `source` in a hybrid list


def fit_als(ratings: DataFrame, *, rank: int, reg: float, max_iter: int, seed: int,
            rating_col: str = t.RATING, implicit: bool = False, alpha: float = 1.0,
            blocks: int = 0) -> ALSModel:
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


def predict_als(model: ALSModel, pairs: DataFrame) -> DataFrame:
    return model.transform(pairs)


def implicit_feedback(ratings: DataFrame, min_rating: float) -> DataFrame:
    """Ratings at or above min_rating as positive feedback of strength 1; ALS's alpha sets confidence."""
    return (ratings.where(F.col(t.RATING) >= min_rating)
            .select(t.USER_ID, t.MOVIE_ID, F.lit(1.0).cast("float").alias(t.RATING)))


def factors(model: ALSModel) -> tuple[DataFrame, DataFrame]:
    users = model.userFactors.select(F.col("id").alias(t.USER_ID), F.col(FEATURES))
    items = model.itemFactors.select(F.col("id").alias(t.MOVIE_ID), F.col(FEATURES))
    return users, items


def als_lists(model: ALSModel, users: DataFrame, seen: DataFrame, k: int,
              candidates: DataFrame | None = None) -> DataFrame:
    """Top-k unseen movies for `users` (user_id) that the model knows; others get no list.
    With `candidates` (movie_id), only those movies are ranked."""
    user_factors, item_factors = factors(model)
    wanted = user_factors.join(users.select(t.USER_ID).distinct(), t.USER_ID, "inner")
    if candidates is not None:
        item_factors = item_factors.join(candidates.select(t.MOVIE_ID), t.MOVIE_ID, "inner")
    return top_k(wanted, item_factors, seen, k)


def top_movies(scores: DataFrame, n: int) -> DataFrame | None:
    """The n best-scoring movie_ids (ties to the lower id), or None for n <= 0: no restriction."""
    if n <= 0:
        return None
    return scores.orderBy(F.col(SCORE).desc(), F.col(t.MOVIE_ID)).limit(n).select(t.MOVIE_ID)


def popularity_lists(scores: DataFrame, users: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """Top-k unseen movies by popularity `scores` (movie_id, score) for every user in `users`."""
    ones = users.select(t.USER_ID).distinct().withColumn(FEATURES, F.array(F.lit(1.0).cast("float")))
    items = scores.select(t.MOVIE_ID, F.array(F.col(SCORE).cast("float")).alias(FEATURES))
    return top_k(ones, items, seen, k)


def hybrid_lists(model_lists: DataFrame, fallback_lists: DataFrame, history: DataFrame,
                 min_history: int, k: int) -> DataFrame:
    """The model's list for users with at least min_history train ratings and a model list;
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


def hybrid(model: ALSModel, trend: DataFrame, train: DataFrame, users: DataFrame, k: int,
           params: dict) -> DataFrame:
    """The hybrid ranker's lists, as training evaluates them and serving publishes them: for
    users with min_history train ratings the model re-ranks the `candidates` most trending
    movies (all movies if 0); everyone else, and any short list, gets trending movies."""
    seen = train.select(t.USER_ID, t.MOVIE_ID)
    model_lists = als_lists(model, users, seen, k, top_movies(trend, params["candidates"]))
    fallback = popularity_lists(trend, users, seen, k)
    return hybrid_lists(model_lists, fallback, history_counts(train), params["min_history"], k)


def history_counts(train: DataFrame) -> DataFrame:
    return train.groupBy(t.USER_ID).agg(F.count(F.lit(1)).alias("n"))

