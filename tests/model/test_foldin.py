"""Fold-in: a folded-in user's factors are what one ALS user step computes against the same
item factors. Spark's ALS ends every iteration with that user step, so folding in the users it
trained on must give back its own user factors."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.model.als import factors, fit_als
from movierec.model.foldin import fold_in, solve_users


@pytest.fixture(scope="module")
def ratings(spark):
    """120 users x 60 movies, each user rating 12 of them, 1 to 5 stars with a latent signal."""
    rng = np.random.default_rng(3)
    users, movies = rng.normal(size=(120, 3)), rng.normal(size=(60, 3))
    rows = []
    for u in range(120):
        for m in rng.choice(60, size=12, replace=False):
            stars = float(np.clip(np.round(3 + users[u] @ movies[m]), 1, 5))
            rows.append((u + 1, int(m) + 1, stars))
    return spark.createDataFrame(rows, f"{t.USER_ID} int, {t.MOVIE_ID} int, {t.RATING} float")


def _as_dict(df) -> dict[int, np.ndarray]:
    return {r[0]: np.array(r[1]) for r in df.select(t.USER_ID, "features").collect()}


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_fold_in_of_trained_users_gives_back_sparks_user_factors(ratings, implicit):
    reg, alpha = 0.1, 4.0
    model = fit_als(ratings, rank=4, reg=reg, max_iter=6, seed=1, implicit=implicit, alpha=alpha, blocks=2)
    own_users, items = factors(model)
    folded = _as_dict(fold_in(ratings, items, reg=reg, implicit=implicit, alpha=alpha))
    own = _as_dict(own_users)
    assert set(folded) == set(own) and len(own) == 120
    worst = max(float(np.max(np.abs(folded[u] - own[u]))) for u in own)
    scale = max(float(np.max(np.abs(v))) for v in own.values())
    assert worst <= 1e-4 * scale, (worst, scale)    # float32 factors, float64 normal equations


def test_solve_users_matches_the_normal_equations_written_out():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(5, 2)).astype(np.float32)
    users, items = np.array([7, 7, 7, 9]), np.array([0, 2, 4, 1])
    stars = np.array([5.0, 1.0, 3.0, 4.0])
    ids, x = solve_users(users, items, stars, Y, reg=0.5, implicit=True, alpha=2.0)
    Yd = Y.astype(float)
    for row, user in enumerate(ids):
        mine = users == user
        c = 2.0 * stars[mine]
        Yu = Yd[items[mine]]
        A = Yd.T @ Yd + Yu.T @ np.diag(c) @ Yu + 0.5 * mine.sum() * np.eye(2)
        b = Yu.T @ (1.0 + c)
        assert x[row] == pytest.approx(np.linalg.solve(A, b))
    assert list(ids) == [7, 9]


def test_ratings_of_movies_without_factors_are_ignored(spark, ratings):
    model = fit_als(ratings, rank=3, reg=0.1, max_iter=3, seed=1, blocks=2)
    _, items = factors(model)
    extra = spark.createDataFrame([(1, 999, 5.0)], ratings.schema)
    with_unknown = _as_dict(fold_in(ratings.unionByName(extra).where(F.col(t.USER_ID) == 1), items,
                                    reg=0.1, implicit=False))
    without = _as_dict(fold_in(ratings.where(F.col(t.USER_ID) == 1), items, reg=0.1, implicit=False))
    assert np.array_equal(with_unknown[1], without[1])
