"""Item-kNN, the other strong simple ranker: a movie's score for a user is the summed similarity
of the movies they liked to it, over its top-N neighbours only.

Similarity is the cosine of two movies' liked-by vectors, shrunk towards 0 when few users liked
both (Koren's n_ij / (n_ij + shrink)), from the same Gram matrix as EASE^R (model/item_item.py):
s_ij = G_ij / sqrt(G_ii G_jj) * G_ij / (G_ij + shrink), s_jj = 0. Column j keeps its `neighbours`
largest entries (ties at the cut are kept), so a user's score of movie j sums s_ij over the
neighbours i of j they liked.
"""

from __future__ import annotations

import numpy as np

from movierec.model.grids import product
from movierec.model.item_item import ItemItemModel


def knn_weights(gram: np.ndarray, *, neighbours: int, shrink: float) -> np.ndarray:
    """The pruned similarity matrix (float32), column j the neighbours of movie j."""
    if neighbours < 1 or shrink < 0:
        raise ValueError(f"item-kNN needs neighbours >= 1 and shrink >= 0, got {neighbours}, {shrink}")
    g = np.asarray(gram, np.float64)
    norms = np.sqrt(np.diag(g))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = g / np.outer(norms, norms) * (g / (g + shrink))
    sim = np.nan_to_num(sim, nan=0.0, posinf=0.0)
    np.fill_diagonal(sim, 0.0)
    n = len(sim)
    if neighbours < n - 1:
        cut = np.partition(sim, n - neighbours, axis=0)[n - neighbours]   # per column
        sim[sim < cut] = 0.0
    return sim.astype(np.float32)


class ItemKnn(ItemItemModel):
    """Item-kNN on liked movies, neighbours and shrinkage chosen by CV on NDCG."""
    name, method = "item_knn", "a dense similarity matrix"

    def grid(self) -> list[dict]:
        s = self.cfg.train.knn
        return product(neighbours=s.neighbours_grid, shrink=s.shrink_grid)

    def weights(self, gram: np.ndarray, params: dict) -> np.ndarray:
        return knn_weights(gram, neighbours=int(params["neighbours"]), shrink=float(params["shrink"]))
