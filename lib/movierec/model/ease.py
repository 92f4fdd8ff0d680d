"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): a linear
item-item model in closed form, the strong simple ranker the field measures against.

With G = X'X of the liked movies (model/item_item.py), the weights minimise
||X - XB||^2 + reg ||B||^2 with a zero diagonal (no movie explains itself):
B = I - P diag(1/diag(P)), P = (G + reg I)^-1, a dense inverse, n^3 in the movies.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from movierec.model.grids import product
from movierec.model.item_item import ItemItemModel


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """B (float32) from G = X'X: B = I - P diag(1/diag(P)), P = (G + reg I)^-1, so column j is
    the ridge regression of movie j on the others and B_jj = 0. A Cholesky inverse, on every
    core of the driver (no Spark task runs meanwhile)."""
    if reg <= 0:
        raise ValueError(f"EASE needs reg > 0 (G alone is singular whenever two movies are liked "
                         f"by the same users), got {reg}")
    a = np.array(gram, dtype=np.float64)
    a[np.diag_indices_from(a)] += reg
    with threadpool_limits(limits=os.cpu_count() or 1, user_api="blas"):
        factor, info = lapack.dpotrf(a, lower=False, overwrite_a=True)
        if info == 0:
            p, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"G + {reg} I is not positive definite (LAPACK info {info})")
    p = np.triu(p) + np.triu(p, 1).T
    b = p / -np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


class Ease(ItemItemModel):
    """EASE^R on liked movies, reg chosen by CV on NDCG; popularity fills what it cannot."""
    name, method = "ease", "a dense inverse"

    def grid(self) -> list[dict]:
        return product(reg=self.cfg.train.ease.reg_grid)

    def weights(self, gram: np.ndarray, params: dict) -> np.ndarray:
        return ease_weights(gram, params["reg"])
