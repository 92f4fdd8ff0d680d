"""EASE^R: the closed form against a column-by-column ridge reference, and its lists through
the project's top-K on a hand-made case."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from movierec.core import tables as t
from movierec.model.base import seen_pairs
from movierec.model.ease import Ease, ease_weights


def ridge_reference(x: np.ndarray, reg: float) -> np.ndarray:
    """Column j: argmin ||x_j - X_{-j} b||^2 + reg ||b||^2, with b_j = 0 (what the closed form
    solves all at once)."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        xo = x[:, others]
        b[others, j] = np.linalg.solve(xo.T @ xo + reg * np.eye(n - 1), xo.T @ x[:, j])
    return b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_closed_form_is_a_ridge_regression_of_each_movie_on_the_others(seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((40, 12)) < 0.3).astype(float)
    got = ease_weights(x.T @ x, reg=3.0)
    assert np.diag(got).tolist() == [0.0] * 12
    np.testing.assert_allclose(got, ridge_reference(x, 3.0), atol=1e-5)


def test_a_singular_gram_needs_a_positive_reg():
    with pytest.raises(ValueError, match="reg > 0"):
        ease_weights(np.ones((2, 2)), 0.0)


def test_lists_score_the_liked_row_times_the_weights_and_fall_back_to_popularity(spark, make_cfg):
    day = datetime(2020, 1, 1)
    # liked (>= 3.5): user 1 {1, 2}, user 2 {1, 2, 3}, user 3 {2, 3}; user 1's 2-star movie 4
    # is seen but not liked; movie 4 is also the most rated, so it leads the popularity list
    rows = [(1, 1, 5.0), (1, 2, 4.0), (1, 4, 2.0), (2, 1, 4.0), (2, 2, 5.0), (2, 3, 4.0),
            (3, 2, 4.0), (3, 3, 5.0), (2, 4, 1.0), (3, 4, 1.0), (4, 4, 2.0)]
    ratings = spark.createDataFrame([(u, m, r, day) for u, m, r in rows], t.SCHEMAS[t.RATINGS])
    cfg = make_cfg(train__item_item__min_rating=3.5)
    model = Ease(cfg)
    # 3 movies liked: over a limit of 2 the model is skipped, and says why
    assert "3 movies liked in train, more than train.item_item.max_items=2" in \
        Ease(make_cfg(train__item_item__max_items=2)).skip_reason(ratings)
    fitted = model.fit(ratings, {"reg": 1.0}, {})
    x = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], float)   # users 1-3 x movies 1-3
    b = ridge_reference(x, 1.0)
    users = spark.createDataFrame([(1,), (3,), (5,)], "user_id int")
    got = {(r.user_id, r.rank): (r.movie_id, r.score) for r in
           fitted.recommend(users, 2, seen_pairs(ratings)).collect()}
    # user 1 has seen 1, 2, 4: movie 3 scores b[0, 2] + b[1, 2]; nothing unseen is left after it
    assert got[1, 1][0] == 3 and got[1, 1][1] == pytest.approx(b[0, 2] + b[1, 2], abs=1e-5)
    assert (1, 2) not in got
    # user 3 has seen 2, 3, 4: movie 1 by the model, then nothing
    assert got[3, 1][0] == 1 and got[3, 1][1] == pytest.approx(b[1, 0] + b[2, 0], abs=1e-5)
    # user 5 is unknown: the popularity list (movie 4 rated 4 times, then movie 2 rated 3 times)
    assert [got[5, 1][0], got[5, 2][0]] == [4, 2]
    fitted.release()
