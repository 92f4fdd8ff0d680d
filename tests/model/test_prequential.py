"""The prequential gate on a small hand-made lake: the challenger is really fitted on what was
known at the cutoff, the champion is scored on the lists it served before it, both on the
window's arrivals. (The nightly DAG run's gate takes the no-lists-before-the-cutoff path.)"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from movierec.core import delta_io, tables as t
from movierec.core.config import load_config
from movierec.model import catalog, prequential
from movierec.model.gate import PairedVerdict

START = datetime(2020, 1, 1, tzinfo=timezone.utc)
SERVED_ON, BETWEEN, TONIGHT = "2026-03-01", "2026-03-02", "2026-03-04"   # window: 2 days
HITS = {1: 31, 2: 32}           # the champion showed these users, at rank 1, what they rated in the window
WINDOW_USERS = (1, 2, 3, 4, 5)  # each rates one movie 5 stars in the window


def _ts(day: float) -> datetime:
    return START + timedelta(days=day)


@pytest.fixture(scope="module")
def judged(spark, tmp_path_factory):
    lake = tmp_path_factory.mktemp("prequential") / "lake"
    rng = np.random.default_rng(5)
    train = [(u, int(m), float(rng.integers(1, 6)), _ts(d)) for u in range(1, 31)
             for d, m in enumerate(rng.choice(np.arange(1, 31), size=8, replace=False))]
    test = [(u, 30 + u % 5, 4.0, _ts(20 + u / 10)) for u in range(6, 16)]
    between = [(u, 35, 5.0, _ts(30), date.fromisoformat(BETWEEN), None, "a") for u in range(20, 26)]
    window = [(u, HITS.get(u, 36 + u), 5.0, _ts(31 + u / 10), date.fromisoformat(TONIGHT), None, "b")
              for u in WINDOW_USERS]
    write = lambda rows, name: delta_io.overwrite(  # noqa: E731
        spark.createDataFrame(rows, t.SCHEMAS[name]), lake, name)
    write(train, t.RATINGS_TRAIN)
    write(test, t.RATINGS_TEST)
    write(between + window, t.RATINGS_INCREMENTS)
    served = date.fromisoformat(SERVED_ON)
    # champion v1's lists of SERVED_ON for users 1-4 (user 5 had none: popular_movies for them)
    lists = [(served, u, r, HITS[u] if r == 1 and u in HITS else 20 + r, 1.0 / r, "model", "m", "1")
             for u in (1, 2, 3, 4) for r in range(1, 11)]
    write(lists, t.RECOMMENDATIONS)
    write([(served, r, 10 + r, 1.0, "1") for r in range(1, 11)], t.POPULAR_MOVIES)
    cfg = load_config("test", [f"lake={lake}", "train.gate_window_days=2", "train.gate_min_users=3"])
    models = catalog.with_requirements(dict(catalog.build(cfg)), cfg.train.served_model)
    params = {name: m.grid()[0] for name, m in models.items()}
    verdict, evidence = prequential.judge(spark, cfg, models, params, TONIGHT, "1")
    return cfg, verdict, evidence, len(train) + len(test) + len(between)


def test_the_challenger_learned_up_to_the_cutoff_and_the_window_came_after(judged):
    _, _, evidence, known_at_cutoff = judged
    assert (evidence["training_cutoff"], evidence["window_end"]) == (BETWEEN, TONIGHT)
    assert evidence["training_cutoff"] < evidence["window_end"]
    # the arrivals between the champion's lists and the cutoff are learned; the window is not
    assert evidence["training_ratings"] == known_at_cutoff
    assert evidence["training_newest_ts"] < evidence["window_oldest_ts"]
    assert (evidence["window_ratings"], evidence["window_users"]) == (5, 5)


def test_the_champion_is_scored_on_the_lists_it_served_before_the_window(judged):
    cfg, verdict, _, _ = judged
    assert isinstance(verdict, PairedVerdict) and verdict.users == len(WINDOW_USERS)
    # NDCG@k by hand: users 1 and 2 had their one window movie at rank 1 (1.0 each); users 3
    # and 4 had lists without it, user 5 the popular list without it (0.0 each)
    assert verdict.old_value == pytest.approx(2 / 5)
    assert 0.0 <= verdict.new_value <= 1.0
    assert verdict.ci[0] <= verdict.gain <= verdict.ci[1]
    assert verdict.moved == (verdict.ci[0] > cfg.train.gate_min_improvement)
