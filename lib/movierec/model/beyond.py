"""Beyond accuracy: what the lists show, whatever the users then rated.

Per list (so they get intervals over users like the accuracy metrics):
- novelty: mean self-information of the listed movies, -log2 of the share of train users who
  rated the movie, add-one smoothed so a movie train never saw has the largest finite value;
- diversity: intra-list genre diversity, 1 - the mean cosine similarity of the genre vectors of
  every pair of listed movies (a movie without genres is dissimilar to everything); the pairwise
  mean comes from the squared norm of the sum of unit vectors, so it is linear in the list length;
- new_share: the share of listed movies with no rating in train.
Per model (over all its lists): coverage, the share of the catalogue listed at least once, and
the Gini coefficient of exposure over the catalogue (0: every movie listed equally often, near 1:
a few movies take every slot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t

PER_LIST = ("novelty", "diversity", "new_share")
PER_MODEL = ("coverage", "gini")
NO_MOVIE = -1   # pads a list shorter than k


@dataclass(frozen=True)
class MovieFacts:
    """What the beyond-accuracy metrics know of each movie, indexed by position in `ids`."""
    ids: np.ndarray           # sorted movie ids: the catalogue
    information: np.ndarray   # self-information of the movie in train (bits)
    new: np.ndarray           # no rating in train
    genres: np.ndarray        # (movies, genres) float32, rows of unit length (0 without a genre)

    def positions(self, lists: np.ndarray) -> np.ndarray:
        """lists of movie ids -> positions in ids; NO_MOVIE (and ids outside it) -> -1."""
        pos = np.searchsorted(self.ids, lists)
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where((lists != NO_MOVIE) & (self.ids[pos] == lists), pos, -1)


def movie_facts(train: DataFrame, movies: DataFrame | None) -> MovieFacts:
    """Facts of every movie of `movies` (or of train without it) from the ratings of train."""
    users = train.select(t.USER_ID).distinct().count()
    raters = train.groupBy(t.MOVIE_ID).agg(F.countDistinct(t.USER_ID).alias("raters"))
    catalogue = (movies.select(t.MOVIE_ID, t.GENRES) if movies is not None else
                 train.select(t.MOVIE_ID).distinct().withColumn(t.GENRES, F.array().cast("array<string>")))
    facts = (catalogue.join(raters, t.MOVIE_ID, "left").fillna(0, ["raters"])
             .orderBy(t.MOVIE_ID).toArrow())
    ids = facts.column(t.MOVIE_ID).to_numpy().astype(np.int64)
    raters_n = facts.column("raters").to_numpy().astype(np.float64)
    genre_lists = facts.column(t.GENRES).combine_chunks()
    flat = genre_lists.flatten()
    names, codes = np.unique(np.asarray(flat.to_pylist(), dtype=object).astype(str), return_inverse=True) \
        if len(flat) else (np.array([], str), np.array([], np.int64))
    rows = np.repeat(np.arange(len(ids)), np.diff(genre_lists.offsets.to_numpy()))
    genres = np.zeros((len(ids), len(names)), np.float32)
    genres[rows, codes] = 1.0
    norms = np.linalg.norm(genres, axis=1, keepdims=True)
    genres = np.divide(genres, norms, out=np.zeros_like(genres), where=norms > 0)
    information = -np.log2((raters_n + 1) / (users + 1))
    return MovieFacts(ids, information, raters_n == 0, genres)


def list_metrics(lists: np.ndarray, facts: MovieFacts, chunk: int = 1 << 16) -> dict[str, np.ndarray]:
    """novelty, diversity and new_share of each row of `lists` (movie ids, NO_MOVIE-padded);
    NaN for an empty list (diversity: fewer than 2 movies). Movies outside the catalogue count
    as new, with the information of a movie nobody rated. Rows go `chunk` at a time, so the
    genre vectors of the listed movies stay at chunk x k x genres."""
    parts = [_list_metrics(lists[s:s + chunk], facts) for s in range(0, len(lists), chunk)]
    return {name: np.concatenate([p[name] for p in parts]) if parts else np.empty(0)
            for name in PER_LIST}


def _list_metrics(lists: np.ndarray, facts: MovieFacts) -> dict[str, np.ndarray]:
    pos = facts.positions(lists)
    listed = lists != NO_MOVIE
    length = listed.sum(axis=1).astype(np.float64)
    known = pos >= 0
    unseen_info = float(facts.information.max()) if len(facts.ids) else 0.0
    info = np.where(known, facts.information[np.maximum(pos, 0)], unseen_info) * listed
    new = np.where(known, facts.new[np.maximum(pos, 0)], True) & listed
    vectors = facts.genres[np.maximum(pos, 0)] * known[..., None]        # (lists, k, genres)
    summed = vectors.sum(axis=1, dtype=np.float64)
    self_similarity = (vectors * vectors).sum(axis=(1, 2), dtype=np.float64)
    pairs = length * (length - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"novelty": info.sum(axis=1) / length,
                "diversity": np.where(pairs > 0, 1 - ((summed * summed).sum(axis=1) - self_similarity)
                                      / pairs, np.nan),
                "new_share": new.sum(axis=1) / length}


def exposure(lists: np.ndarray, n_catalog: int) -> dict[str, float]:
    """coverage and Gini of how often each of n_catalog movies is listed, over all `lists`
    (the catalogue's movies never listed count with 0; a listed movie the catalogue lacks, which
    only a lake ingested without its movies file can hold, widens the catalogue)."""
    if n_catalog < 1:
        raise ValueError(f"n_catalog must be positive, got {n_catalog}")
    _, counts = np.unique(lists[lists != NO_MOVIE], return_counts=True)
    n_catalog = max(n_catalog, len(counts))
    shown = np.sort(np.concatenate([np.zeros(n_catalog - len(counts)), counts]))
    total = shown.sum()
    rank = np.arange(1, n_catalog + 1)
    gini = float(((2 * rank - n_catalog - 1) * shown).sum() / (n_catalog * total)) if total else float("nan")
    return {"coverage": len(counts) / n_catalog, "gini": gini}


def padded(prediction: pa.ListArray, k: int) -> np.ndarray:
    """Arrow lists of movie ids -> (rows, k) int64, NO_MOVIE after the end of a shorter list."""
    prediction = prediction.combine_chunks() if isinstance(prediction, pa.ChunkedArray) else prediction
    offsets = prediction.offsets.to_numpy()
    values = prediction.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.full((len(prediction), k), NO_MOVIE, np.int64)
    lengths = np.minimum(np.diff(offsets), k)
    rows = np.repeat(np.arange(len(prediction)), lengths)
    cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = values[np.repeat(offsets[:-1], lengths) + cols]
    return out
