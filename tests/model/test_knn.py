"""Item-kNN's similarities against a plain-Python reference over generated liked matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from movierec.model.knn import knn_weights


def reference(x: np.ndarray, neighbours: int, shrink: float) -> np.ndarray:
    n = x.shape[1]
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            both = float((x[:, i] * x[:, j]).sum())
            if i != j and both:
                cosine = both / math.sqrt(x[:, i].sum() * x[:, j].sum())
                sim[i, j] = cosine * both / (both + shrink)
    for j in range(n):   # column j keeps its `neighbours` best (ties at the cut kept)
        ranked = sorted(sim[:, j], reverse=True)
        cut = ranked[neighbours - 1] if neighbours <= n else -1
        sim[sim[:, j] < cut, j] = 0.0
    return sim


@pytest.mark.parametrize("seed, neighbours, shrink", [(0, 3, 0.0), (1, 2, 5.0), (2, 20, 1.0)])
def test_shrunk_cosine_with_the_top_neighbours_of_each_movie(seed, neighbours, shrink):
    x = (np.random.default_rng(seed).random((30, 9)) < 0.35).astype(float)
    x[:, 0] = 0   # a movie nobody liked (only possible when min_likes lets it in) is like nothing
    got = knn_weights(x.T @ x, neighbours=neighbours, shrink=shrink)
    np.testing.assert_allclose(got, reference(x, neighbours, shrink), atol=1e-6)
    assert np.diag(got).tolist() == [0.0] * 9


def test_by_hand():
    # movies a, b liked by users {1, 2}, {2, 3}: one co-liker, cosine 1/2, shrink 1 halves it
    x = np.array([[1, 0], [1, 1], [0, 1]], float)
    assert knn_weights(x.T @ x, neighbours=1, shrink=1.0).tolist() == [[0.0, 0.25], [0.25, 0.0]]
    with pytest.raises(ValueError, match="neighbours >= 1"):
        knn_weights(x.T @ x, neighbours=0, shrink=1.0)
