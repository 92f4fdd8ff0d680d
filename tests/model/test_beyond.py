"""Beyond-accuracy metrics: hand cases, and parity with a plain-Python reference over
generated lists."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from movierec.core import tables as t
from movierec.model.beyond import NO_MOVIE, MovieFacts, exposure, list_metrics, movie_facts, padded

GENRES = ["Comedy", "Drama", "Horror"]


def facts_of(genres: dict[int, list[str]], raters: dict[int, int], users: int) -> MovieFacts:
    """The reference's MovieFacts, built by hand."""
    ids = np.array(sorted(genres))
    vectors = np.array([[g in genres[m] for g in GENRES] for m in ids], np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    counts = np.array([raters.get(m, 0) for m in ids], float)
    return MovieFacts(ids, -np.log2((counts + 1) / (users + 1)), counts == 0, vectors)


def test_facts_from_train_and_movies_by_hand(spark):
    # 3 train users: movie 1 rated by all, movie 2 by one (twice), movie 3 by none
    train = spark.createDataFrame([(1, 1), (2, 1), (3, 1), (1, 2), (1, 2)], "user_id int, movie_id int")
    movies = spark.createDataFrame([(1, ["Drama"]), (2, ["Drama", "Comedy"]), (3, [])],
                                   f"{t.MOVIE_ID} int, {t.GENRES} array<string>")
    facts = movie_facts(train, movies)
    assert facts.ids.tolist() == [1, 2, 3]
    assert facts.information.tolist() == pytest.approx([0.0, 1.0, 2.0])   # -log2 of 4/4, 2/4, 1/4
    assert facts.new.tolist() == [False, False, True]
    lists = np.array([[1, 2], [1, 3], [2, NO_MOVIE], [NO_MOVIE, NO_MOVIE]])
    got = list_metrics(lists, facts)
    assert got["novelty"][:3] == pytest.approx([0.5, 1.0, 1.0]) and np.isnan(got["novelty"][3])
    # cos(Drama, Drama+Comedy) = 1/sqrt(2); a movie without genres is like nothing
    assert got["diversity"][:2] == pytest.approx([1 - 1 / math.sqrt(2), 1.0])
    assert np.isnan(got["diversity"][2:]).all()
    assert got["new_share"][:3] == pytest.approx([0.0, 0.5, 0.0])


def test_exposure_by_hand():
    # movie 1 listed twice, 2 and 3 once, 4 never: sorted [0, 1, 1, 2] over 4 slots
    got = exposure(np.array([[1, 2], [1, 3]]), 4)
    assert got["coverage"] == 0.75
    assert got["gini"] == pytest.approx((-3 * 0 - 1 * 1 + 1 * 1 + 3 * 2) / (4 * 4))
    assert exposure(np.array([[1, 2], [3, 4]]), 4)["gini"] == 0.0
    # three movies listed from a catalogue said to hold two: the catalogue is at least three
    assert exposure(np.array([[1, 2, 3]]), 2) == {"coverage": 1.0, "gini": 0.0}


def test_padded_lists():
    arrow = pa.array([[5, 6, 7], [], [8]], pa.list_(pa.int32()))
    assert padded(arrow, 3).tolist() == [[5, 6, 7], [NO_MOVIE] * 3, [8, NO_MOVIE, NO_MOVIE]]


def reference(lists, genres, raters, users):
    out = []
    for row in lists:
        movies = [m for m in row if m != NO_MOVIE]
        info = [-math.log2((raters.get(m, 0) + 1) / (users + 1)) for m in movies]
        pairs = list(itertools.permutations(movies, 2))

        def cos(a, b):
            ga, gb = set(genres[a]), set(genres[b])
            return len(ga & gb) / math.sqrt(len(ga) * len(gb)) if ga and gb else 0.0
        out.append((sum(info) / len(movies) if movies else math.nan,
                    1 - sum(cos(a, b) for a, b in pairs) / len(pairs) if pairs else math.nan,
                    sum(raters.get(m, 0) == 0 for m in movies) / len(movies) if movies else math.nan))
    return out


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_list_metrics_match_the_plain_python_reference(data):
    n = data.draw(st.integers(1, 8))
    genres = {m: data.draw(st.lists(st.sampled_from(GENRES), unique=True, max_size=3))
              for m in range(1, n + 1)}
    raters = {m: data.draw(st.integers(0, 5)) for m in genres}
    k = data.draw(st.integers(1, 5))
    rows = data.draw(st.lists(st.lists(st.integers(1, n), unique=True, max_size=min(k, n)),
                              min_size=1, max_size=6))
    lists = np.array([r + [NO_MOVIE] * (k - len(r)) for r in rows])
    got = list_metrics(lists, facts_of(genres, raters, 5), chunk=2)
    for i, want in enumerate(reference(lists, genres, raters, 5)):
        for name, w in zip(("novelty", "diversity", "new_share"), want):
            assert got[name][i] == pytest.approx(w, abs=1e-6, nan_ok=True)
