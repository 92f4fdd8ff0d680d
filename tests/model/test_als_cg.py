"""The conjugate-gradient ALS, implicit and explicit: its row solve converges to the exact solve
of Spark's normal equations (foldin.solve_users, which reproduces Spark's own user step), and a
whole fit reaches the objective Spark's ALS reaches on the same data, as an ALSModel that saves
and loads."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.recommendation import ALSModel

from movierec.core import tables as t
from movierec.core.config import load_config
from movierec.model import catalog
from movierec.model.als import factors, fit_als
from movierec.model.als_cg import cg_rows, fit_cg
from movierec.model.foldin import solve_users

REG, ALPHA = 0.1, 5.0


def _csr(rng, n_rows: int, n_cols: int, per_row: tuple[int, int]):
    rows = np.repeat(np.arange(n_rows), rng.integers(*per_row, size=n_rows))
    cols = np.array([rng.integers(n_cols) for _ in rows])
    pairs = np.unique(np.stack([rows, cols], 1), axis=0)
    return pairs[:, 0], pairs[:, 1].astype(np.int32)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize("rank", [1, 7, 16])
def test_cg_rows_converge_to_the_exact_row_solve(rank, implicit):
    rng = np.random.default_rng(rank)
    rows, cols = _csr(rng, 40, 90, (1, 30))
    vals = rng.choice([1.0, 2.0, 0.5, -1.0], size=len(rows)).astype(np.float32)  # r <= 0: p = 0
    Y = (0.4 * rng.standard_normal((90, rank))).astype(np.float32)
    _, exact = solve_users(rows, cols, vals, Y, reg=REG, implicit=implicit, alpha=ALPHA)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=40))]).astype(np.int64)
    gram = Y.T.astype(float) @ Y.astype(float) if implicit else np.zeros((rank, rank))

    def solved(steps: int, start: np.ndarray) -> np.ndarray:
        x = start.copy()
        cg_rows(indptr, cols, vals, x, Y, gram, REG, ALPHA, steps, not implicit)
        return x

    np.testing.assert_allclose(solved(3 * rank, np.zeros((40, rank))), exact, rtol=1e-6, atol=1e-9)
    # warm-started next to the answer, three steps land on it; from zero they only approach it
    near = exact + 1e-3 * rng.standard_normal(exact.shape)
    assert np.abs(solved(3, near) - exact).max() < np.abs(near - exact).max()
    assert np.linalg.norm(solved(3, np.zeros_like(exact)) - exact) < np.linalg.norm(exact)


def _objective(ratings: np.ndarray, X: np.ndarray, Y: np.ndarray, implicit: bool) -> float:
    """Spark's loss: implicit, the sum over all (u, i) of c (p - x.y)^2; explicit, over the rated
    (u, i) of (r - x.y)^2; plus reg * (n_u |x_u|^2 + n_i |y_i|^2)."""
    u, i = ratings[:, 0].astype(int), ratings[:, 1].astype(int)
    if implicit:
        c = np.ones((X.shape[0], Y.shape[0]))
        p = np.zeros_like(c)
        c[u, i], p[u, i] = 1 + ALPHA * ratings[:, 2], 1.0
        fit = (c * (p - X @ Y.T) ** 2).sum()
    else:
        fit = ((ratings[:, 2] - (X[u] * Y[i]).sum(1)) ** 2).sum()
    penalty = (np.bincount(u, minlength=len(X)) * (X ** 2).sum(1)).sum() + \
              (np.bincount(i, minlength=len(Y)) * (Y ** 2).sum(1)).sum()
    return float(fit + REG * penalty)


def _matrix(df, n: int) -> np.ndarray:
    rows = {r[0]: r[1] for r in df.collect()}
    return np.array([rows[k] for k in range(n)], dtype=float)


@pytest.fixture(scope="module")
def liked(spark):
    """150 users x 80 movies with a latent taste; every user and movie has a liked pair."""
    rng = np.random.default_rng(11)
    taste_u, taste_i = rng.normal(size=(150, 3)), rng.normal(size=(80, 3))
    rows = [(u, i, 1.0) for u in range(150) for i in range(80)
            if taste_u[u] @ taste_i[i] > 1.2 or rng.random() < 0.02 or i == u % 80]
    return rows, spark.createDataFrame(rows, f"{t.USER_ID} int, {t.MOVIE_ID} int, {t.RATING} float")


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_a_cg_fit_reaches_sparks_objective_as_an_als_model(spark, liked, tmp_path, implicit):
    liked, df = liked
    if not implicit:   # ratings 1..5 with a pattern to learn, on the same pairs
        liked = [(u, i, float(1 + (u + 2 * i) % 5)) for u, i, _ in liked]
        df = spark.createDataFrame(liked, df.schema)
    common = dict(rank=6, reg=REG, alpha=ALPHA, max_iter=10, seed=5, implicit=implicit)
    ours = fit_cg(df, buckets=3, **common)
    theirs = fit_als(df, blocks=2, **common)
    data = np.array(liked)
    n_users, n_items = len(set(data[:, 0])), len(set(data[:, 1]))
    assert (n_users, n_items) == (150, 80)
    loss = {name: _objective(data, _matrix(users, n_users), _matrix(items, n_items), implicit)
            for name, (users, items) in (("cg", factors(ours)), ("spark", factors(theirs)))}
    start = _objective(data, np.zeros((n_users, 6)), np.zeros((n_items, 6)), implicit)
    assert loss["cg"] < 0.5 * start
    assert loss["cg"] <= 1.02 * loss["spark"], loss
    # an ordinary ALSModel: it predicts dot products, and saves and loads like Spark's own
    ours.write().save(str(tmp_path / "model"))
    loaded = ALSModel.load(str(tmp_path / "model"))
    pairs = spark.createDataFrame([(3, 7), (149, 0)], f"{t.USER_ID} int, {t.MOVIE_ID} int")
    X, Y = _matrix(factors(ours)[0], n_users), _matrix(factors(ours)[1], n_items)
    predicted = {(r[0], r[1]): r["prediction"] for r in
                 loaded.setUserCol(t.USER_ID).setItemCol(t.MOVIE_ID).transform(pairs).collect()}
    assert predicted == pytest.approx({(3, 7): X[3] @ Y[7], (149, 0): X[149] @ Y[0]}, rel=1e-5)


def test_the_als_models_fit_with_the_configured_solver(liked):
    rows, df = liked
    cfg = load_config("test", ["train.implicit.solver=cg", "train.implicit.min_rating=1.0",
                              "train.implicit.max_iter=2", "train.als.solver=cg", "train.als.max_iter=2"])
    models = catalog.build(cfg)
    n = len({r[0] for r in rows})
    for name, params, implicit, section in [
            ("als_implicit", {"rank": 4, "regParam": REG, "alpha": ALPHA}, True, cfg.train.implicit),
            ("als_plain", {"rank": 4, "regParam": REG}, False, cfg.train.als)]:
        fitted = models[name].fit(df, params, {})
        direct = fit_cg(df, rank=4, reg=REG, alpha=params.get("alpha", 1.0), max_iter=section.max_iter,
                        seed=cfg.train.seed, cg_steps=section.cg_steps, implicit=implicit)
        np.testing.assert_array_equal(_matrix(factors(fitted.model)[0], n), _matrix(factors(direct)[0], n))
