"""What EASE^R and item-kNN share: a movie-by-movie weight matrix B learned from the users'
liked movies X (rating >= train.item_item.min_rating, as 0/1; movies liked by fewer than
train.item_item.min_likes users are left out), and a user's score of a movie = their liked row
times the movie's column of B. That is top_k's dot product with X_u as the user's "factors" and
B's columns as the movies', so exclusion, ties and the popularity top-up are the other models'.
B is dense, n x n in the movies liked in train, and broadcast to score: a model of this kind is
skipped, and says so, above train.item_item.max_items.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.base import CvMetric, Fitted, Model
from movierec.model.baselines import popularity
from movierec.model.topk import FEATURES, top_k_of_matrix

_LIKED = "_liked"


def liked(ratings: DataFrame, min_rating: float, min_likes: int = 1) -> DataFrame:
    """(user_id, movie_id) rated at least min_rating, of the movies liked by min_likes users or
    more (a column of B fitted on one user's row is noise, and costs n^2 all the same)."""
    pairs = ratings.where(F.col(t.RATING) >= min_rating).select(t.USER_ID, t.MOVIE_ID)
    if min_likes <= 1:
        return pairs
    movies = pairs.groupBy(t.MOVIE_ID).count().where(F.col("count") >= min_likes).select(t.MOVIE_ID)
    return pairs.join(movies, t.MOVIE_ID, "left_semi")


def gram_matrix(pairs: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(movie ids ascending, G = X'X) from distinct (user_id, movie_id) pairs on the driver."""
    users = pairs.column(t.USER_ID).to_numpy()
    movies = pairs.column(t.MOVIE_ID).to_numpy()
    ids, col = np.unique(movies, return_inverse=True)
    _, row = np.unique(users, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(row), np.float64), (row, col)), shape=(row.max(initial=-1) + 1, len(ids)))
    return ids.astype(np.int32), (x.T @ x).toarray()


class FittedItemItem(Fitted):
    def __init__(self, ids: np.ndarray, weights: np.ndarray, liked_lists: DataFrame, fallback: DataFrame):
        # movie j's "factors" are column j of B, so that X_u . factors_j = (X_u B)_j
        self.ids, self.columns = ids, np.ascontiguousarray(weights.T)
        self.liked_lists, self.fallback = liked_lists.persist(), fallback.persist()

    def recommend(self, users: DataFrame, k: int, exclude: DataFrame | None) -> DataFrame:
        rows = _dense_rows(users.select(t.USER_ID).distinct().join(self.liked_lists, t.USER_ID, "left"),
                           self.ids)
        return top_k_of_matrix(rows, self.ids, self.columns, exclude, k, fallback=self.fallback
                               ).drop(t.SOURCE)

    def release(self) -> None:
        self.liked_lists.unpersist()
        self.fallback.unpersist()


def _dense_rows(lists: DataFrame, ids: np.ndarray) -> DataFrame:
    """(user_id, _liked movie ids or null) -> (user_id, features): the user's 0/1 row over `ids`,
    null for a user who liked none of them (top_k gives them the fallback list)."""
    n = len(ids)

    def densify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            movies = batch.column(_LIKED)
            offsets = movies.offsets.to_numpy()
            flat = movies.values.to_numpy(zero_copy_only=False)
            dense = np.zeros((batch.num_rows, n), np.float32)
            rows = np.repeat(np.arange(batch.num_rows), np.diff(offsets))
            at = np.searchsorted(ids, flat)
            hit = (at < n) & (ids[np.minimum(at, n - 1)] == flat)
            dense[rows[hit], at[hit]] = 1.0
            empty = ~dense.any(axis=1)
            features = pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1)), n)
            features = pa.ListArray.from_arrays(pa.array(np.arange(batch.num_rows + 1) * n, pa.int32()),
                                                features.flatten(), mask=pa.array(empty))
            yield pa.RecordBatch.from_arrays([batch.column(t.USER_ID), features], [t.USER_ID, FEATURES])

    return lists.select(F.col(t.USER_ID).cast("int"), F.coalesce(_LIKED, F.array().cast("array<int>"))
                        .alias(_LIKED)).mapInArrow(densify, f"{t.USER_ID} int, {FEATURES} array<float>")


class ItemItemModel(Model):
    """A ranker whose weights come from the Gram matrix G = X'X of the liked movies; CV on NDCG."""
    ranks, cv_metric = True, CvMetric.NDCG_ALL
    method: str   # what the n x n matrix costs, for the skip message

    @abstractmethod
    def weights(self, gram: np.ndarray, params: dict) -> np.ndarray:
        """B (n x n float32) from G and one grid point."""

    def skip_reason(self, ratings: DataFrame) -> str | None:
        s = self.cfg.train.item_item
        n = liked(ratings, s.min_rating, s.min_likes).select(t.MOVIE_ID).distinct().count()
        if n > s.max_items:
            return (f"{n:,} movies liked in train, more than train.item_item.max_items="
                    f"{s.max_items:,} ({self.method} of {n:,} x {n:,})")
        return None

    def fit(self, ratings: DataFrame, params: dict, deps: Mapping[str, Fitted]) -> FittedItemItem:
        s = self.cfg.train.item_item
        pairs = liked(ratings, s.min_rating, s.min_likes)
        ids, gram = gram_matrix(pairs.toArrow())
        if len(ids) > s.max_items:
            raise ValueError(f"{self.name} over {len(ids):,} movies: more than "
                             f"train.item_item.max_items={s.max_items:,}")
        lists = pairs.groupBy(t.USER_ID).agg(F.collect_list(t.MOVIE_ID).alias(_LIKED))
        return FittedItemItem(ids, self.weights(gram, params), lists, popularity(ratings))
