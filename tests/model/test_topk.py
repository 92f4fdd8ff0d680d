"""top_k against a brute-force reference, by hand, and against Spark's recommendForAllUsers; its
selection and fallback steps against plain loops over generated blocks."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.recommendation import ALS
from pyspark.testing import assertDataFrameEqual

from movierec.core import tables as t
from movierec.model.topk import OUTPUT_SCHEMA, SOURCED_SCHEMA, first_allowed, top_k, top_of_block
from movierec.model.topk_blocked import MAX_BROADCAST_CONF, top_k_any_size, top_k_blocked

K = 10


def _factors(spark, ids, matrix, id_col):
    rows = [(int(i), [float(x) for x in v]) for i, v in zip(ids, matrix)]
    return spark.createDataFrame(rows, f"{id_col} int, features array<float>")


def _brute_force(users, u, movies, v, seen: dict[int, set[int]], k, bias=None):
    """user -> [(movie, score)] by a full sort of every unseen item: score desc, movie asc."""
    scores = u.astype(np.float64) @ v.astype(np.float64).T
    if bias is not None:
        scores += bias
    out = {}
    for user, row in zip(users, scores):
        unseen = [(-s, m) for m, s in zip(movies, row) if m not in seen.get(user, set())]
        out[int(user)] = [(int(m), -s) for s, m in sorted(unseen)[:k]]
    return out


def _topped_up(lists: dict[int, list], users, fallback: dict[int, float], seen, k):
    """user -> [(movie, score, source)]: the user's list, then the fallback's best movies (score
    desc, movie asc) neither seen nor listed, up to k."""
    order = sorted(fallback, key=lambda m: (-fallback[m], m))
    out = {}
    for user in map(int, users):
        mine = [(m, s, "model") for m, s in lists.get(user, [])]
        listed = {m for m, _, _ in mine} | seen.get(user, set())
        mine += [(m, fallback[m], "fallback") for m in order if m not in listed][:k - len(mine)]
        out[user] = mine
    return out


def _by_user(df) -> dict[int, list[tuple[int, float]]]:
    out: dict[int, list] = {}
    for r in sorted(df.collect(), key=lambda r: (r[t.USER_ID], r["rank"])):
        out.setdefault(r[t.USER_ID], []).append((r[t.MOVIE_ID], r["rank"], r["score"]))
    return out


@pytest.fixture(scope="module")
def catalog():
    """300 users x 500 items x rank 8 with scattered ids and seen sets of every size."""
    rng = np.random.default_rng(7)
    users = rng.choice(np.arange(1, 100_000), 300, replace=False)
    movies = rng.choice(np.arange(1, 200_000), 500, replace=False)  # not sorted: top_k sorts
    seen: dict[int, set[int]] = {}
    for i, user in enumerate(users):
        if i == 0:
            continue  # a user with nothing seen
        if i == 1:
            n = len(movies) - 3  # has seen all but 3
        elif i % 10 == 0:
            n = int(rng.integers(200, 480))  # heavy users
        else:
            n = int(rng.integers(0, 30))
        seen[int(user)] = set(int(m) for m in rng.choice(movies, n, replace=False))
    seen[int(users[2])].add(999_999)  # not in the catalog: ignored
    seen[123_456_789] = {int(movies[0])}  # a user with no factors: ignored
    bias = {int(m): float(b) for m, b in zip(movies, rng.normal(0, 0.5, len(movies)))}
    return rng, users, movies, seen, bias


def _seen_df(spark, seen):
    return spark.createDataFrame([(u, m) for u, ms in seen.items() for m in sorted(ms)],
                                 f"{t.USER_ID} int, {t.MOVIE_ID} int")


@pytest.mark.parametrize("sliced", [False, True], ids=["broadcast", "item_slices"])
def test_parity_with_brute_force_on_exact_ties(spark, catalog, sliced):
    # Factors on a 0.5 grid make every score exact in float32 and float64, with many ties, so the
    # whole result -- items, order, scores -- must match the reference exactly, whether the items
    # are broadcast or cut into slices (topk_blocked, for catalogues too big to broadcast).
    rng, users, movies, seen, _ = catalog
    u = rng.integers(-2, 3, (len(users), 8)) / 2
    v = rng.integers(-2, 3, (len(movies), 8)) / 2
    bias_vec = rng.integers(-2, 3, len(movies)) / 4
    bias = {int(m): float(b) for m, b in zip(movies, bias_vec)}
    args = (_factors(spark, users, u, t.USER_ID), _factors(spark, movies, v, t.MOVIE_ID),
            _seen_df(spark, seen), K)
    got = (top_k_blocked(*args, item_slices=3, user_chunks=2, item_bias=bias, block_size=64)
           if sliced else top_k(*args, item_bias=bias, block_size=64))
    expected = _brute_force(users, u, movies, v, seen, K, bias_vec)
    rows = [(u_, m, rank, float(s)) for u_, ms in expected.items() for rank, (m, s) in enumerate(ms, 1)]
    assertDataFrameEqual(got, spark.createDataFrame(rows, OUTPUT_SCHEMA))


@pytest.mark.parametrize("sliced", [False, True], ids=["broadcast", "item_slices"])
def test_lists_topped_up_from_a_fallback_match_the_reference(spark, catalog, sliced):
    # Every third user has no factors (the fallback alone), the others a model list of the 40
    # candidate movies, topped up from a fallback ranking with ties; as exact as the test above.
    rng, users, movies, seen, _ = catalog
    u = rng.integers(-2, 3, (len(users), 8)) / 2
    v = rng.integers(-2, 3, (40, 8)) / 2
    fallback = {int(m): float(s) for m, s in zip(movies, rng.integers(0, 30, len(movies)))}
    with_factors = [i % 3 != 0 for i in range(len(users))]
    rows = [(int(x), [float(f) for f in row] if keep else None)
            for x, row, keep in zip(users, u, with_factors)]
    user_factors = spark.createDataFrame(rows, f"{t.USER_ID} int, features array<float>")
    scores = spark.createDataFrame(list(fallback.items()), f"{t.MOVIE_ID} int, score float")
    if sliced:
        spark.conf.set(MAX_BROADCAST_CONF, "0.0005")   # 524 bytes: under the factors' 1,280
    try:
        got = top_k_any_size(user_factors, _factors(spark, movies[:40], v, t.MOVIE_ID),
                             _seen_df(spark, seen), K, fallback=scores)
        got = got.collect()
    finally:
        spark.conf.unset(MAX_BROADCAST_CONF)
    modelled = [x for x, keep in zip(users, with_factors) if keep]
    lists = _brute_force(modelled, u[with_factors], movies[:40], v, seen, K)
    expected = _topped_up(lists, users, fallback, seen, K)
    rows = [(x, m, rank, float(s), source) for x, ms in expected.items()
            for rank, (m, s, source) in enumerate(ms, 1)]
    assertDataFrameEqual(got, spark.createDataFrame(rows, SOURCED_SCHEMA))


@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_top_of_block_matches_a_full_sort_of_each_row(k):
    # The selection reads again only the column groups whose maximum reaches a bound: on rows
    # with ties, seen (-inf) items and widths around the group size and k groups it must still
    # pick exactly what a sort of every row picks.
    rng = np.random.default_rng(k)
    for n in (k, k + 1, 64 * k - 1, 64 * k, 64 * k + 1, 4 * 64 * k + 13, 7919):
        if n < k:
            continue
        scores = rng.integers(0, 12, (17, n)).astype(np.float32)
        scores[rng.random(scores.shape) < 0.3] = -np.inf
        scores[0] = -np.inf                      # nothing left to recommend
        scores[1, : n - min(n, k) // 2] = -np.inf  # fewer than k left
        rows, cols, position = top_of_block(scores, k)
        expected = [(r, c, p) for r, row in enumerate(scores)
                    for p, c in enumerate(sorted(np.flatnonzero(np.isfinite(row)),
                                                 key=lambda c: (-row[c], c))[:k])]
        assert list(zip(rows.tolist(), cols.tolist(), position.tolist())) == expected, (n, k)


def test_first_allowed_matches_a_plain_loop():
    rng = np.random.default_rng(5)
    for n in (0, 1, 5, 300, 5000):
        need = rng.integers(0, 40, 50)
        banned = {r: set(rng.choice(max(n, 1), int(rng.integers(0, max(n, 1) + 1)), replace=False).tolist())
                  if n and r % 4 else set() for r in range(50)}
        banned[1] = set(range(min(n, 3000)))   # banned from the whole window, again and again
        rows = np.array([r for r, b in banned.items() for _ in b], dtype=np.int64)
        positions = np.array([p for b in banned.values() for p in b], dtype=np.int64)
        got = first_allowed(need, rows, positions, n)
        expected = [(r, p, i + 1) for r in range(50)
                    for i, p in enumerate([p for p in range(n) if p not in banned[r]][:need[r]])]
        assert sorted(zip(*(g.tolist() for g in got))) == expected, n


def test_item_factors_over_the_broadcast_limit_are_sliced(spark):
    items = _factors(spark, [10, 20, 30, 40], np.eye(4)[:, :2], t.MOVIE_ID)   # 4 x 2 x 4 bytes
    users = _factors(spark, [1], [[1.0, 0.0]], t.USER_ID)
    plan = lambda df: df._jdf.queryExecution().optimizedPlan().toString()  # noqa: E731
    assert "FlatMapCoGroupsInPandas" not in plan(top_k_any_size(users, items, None, 2))
    spark.conf.set(MAX_BROADCAST_CONF, "0.00001")   # 10 bytes: under the factors' 32
    try:
        assert "FlatMapCoGroupsInPandas" in plan(top_k_any_size(users, items, None, 2))
    finally:
        spark.conf.unset(MAX_BROADCAST_CONF)


@pytest.mark.parametrize("with_bias", [False, True])
def test_parity_with_brute_force_gaussian(spark, catalog, with_bias):
    rng, users, movies, seen, bias = catalog
    u = rng.normal(0, 1, (len(users), 8)).astype(np.float32)
    v = rng.normal(0, 1, (len(movies), 8)).astype(np.float32)
    bias_vec = np.array([bias[int(m)] for m in movies], dtype=np.float32) if with_bias else None
    got = _by_user(top_k(_factors(spark, users, u, t.USER_ID), _factors(spark, movies, v, t.MOVIE_ID),
                         _seen_df(spark, seen), K, item_bias=bias if with_bias else None,
                         block_size=64))
    expected = _brute_force(users, u, movies, v, seen, K, bias_vec)
    assert set(got) == set(expected)
    for user, ref in expected.items():
        assert [m for m, _, _ in got[user]] == [m for m, _ in ref], user
        np.testing.assert_allclose([s for _, _, s in got[user]], [s for _, s in ref], rtol=1e-5, atol=1e-5)

    # Invariants, checked on the output alone.
    catalog_ids = set(int(m) for m in movies)
    for user, recs in got.items():
        unseen = len(catalog_ids - seen.get(user, set()))
        assert [r for _, r, _ in recs] == list(range(1, min(K, unseen) + 1))
        assert not {m for m, _, _ in recs} & seen.get(user, set())
        scores = [s for _, _, s in recs]
        assert all(a >= b for a, b in zip(scores, scores[1:]))
    assert len(got[int(users[1])]) == 3
    assert len(got[int(users[0])]) == K


def test_hand_made_with_ties(spark):
    items = spark.createDataFrame(
        [(10, [1.0, 0.0]), (20, [0.0, 1.0]), (30, [1.0, 0.0]), (40, [0.5, 0.5])],
        f"{t.MOVIE_ID} int, features array<float>")
    users = spark.createDataFrame([(1, [1.0, 0.0]), (2, [0.0, 2.0])],
                                  f"{t.USER_ID} int, features array<float>")
    seen = spark.createDataFrame([(2, 20), (2, 99)], f"{t.USER_ID} int, {t.MOVIE_ID} int")
    # User 1: 10 and 30 tie at 1.0 (10 first); user 2 has seen 20 (score 2), then 40 scores 1,
    # and 10 and 30 tie at 0 for the last place: 10 wins.
    expected = spark.createDataFrame(
        [(1, 10, 1, 1.0), (1, 30, 2, 1.0), (2, 40, 1, 1.0), (2, 10, 2, 0.0)], OUTPUT_SCHEMA)
    assertDataFrameEqual(top_k(users, items, seen, 2), expected)
    # With a bias the tie on user 1 goes to the biased item.
    expected_bias = spark.createDataFrame([(1, 30, 1, 1.5), (1, 10, 2, 1.0)], OUTPUT_SCHEMA)
    assertDataFrameEqual(top_k(users.where("user_id = 1"), items, None, 2, item_bias={30: 0.5}),
                         expected_bias)
    # k beyond the catalog returns every unseen item.
    assert top_k(users, items, seen, 10).where("user_id = 2").count() == 3


def test_rejects_bad_input(spark):
    users = spark.createDataFrame([(1, [1.0])], f"{t.USER_ID} int, features array<float>")
    items = spark.createDataFrame([(1, [1.0])], f"{t.MOVIE_ID} int, features array<float>")
    with pytest.raises(ValueError, match="k must be"):
        top_k(users, items, None, 0)
    with pytest.raises(ValueError, match="lacks columns"):
        top_k(users.withColumnRenamed(t.USER_ID, "id"), items, None, 1)


def test_agrees_with_spark_recommend_for_all_users(spark):
    rng = np.random.default_rng(3)
    rows = [(int(u), int(m), float(rng.integers(1, 6)))
            for u in range(60) for m in rng.choice(40, 15, replace=False)]
    ratings = spark.createDataFrame(rows, f"{t.USER_ID} int, {t.MOVIE_ID} int, rating float")
    model = ALS(rank=4, maxIter=3, regParam=0.1, seed=1, numUserBlocks=2, numItemBlocks=2,
                userCol=t.USER_ID, itemCol=t.MOVIE_ID, ratingCol="rating").fit(ratings)
    theirs = {r[t.USER_ID]: [(x[t.MOVIE_ID], x["rating"]) for x in r["recommendations"]]
              for r in model.recommendForAllUsers(K).collect()}
    ours = _by_user(top_k(model.userFactors.withColumnRenamed("id", t.USER_ID),
                          model.itemFactors.withColumnRenamed("id", t.MOVIE_ID), None, K))
    assert set(ours) == set(theirs)
    for user, recs in ours.items():
        their = sorted(theirs[user], key=lambda x: -x[1])
        np.testing.assert_allclose([s for _, _, s in recs], [s for _, s in their], atol=1e-4)
        # Items may differ only among scores tied with the k-th (within tolerance).
        kth = recs[-1][2]
        assert ({m for m, _, s in recs if s > kth + 1e-4} == {m for m, s in their if s > kth + 1e-4}), user
