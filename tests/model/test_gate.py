"""The champion gate's decisions, by hand: pure functions of two metric tables, or of paired per-user scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from movierec.model.gate import bootstrap_interval, decide, decide_paired, primary_value


def table(**values: float) -> pd.DataFrame:
    """hybrid's metrics as metric_population=value, plus a distractor model."""
    rows = [{"model": "hybrid", "metric": k.rsplit("_", 1)[0], "population": k.rsplit("_", 1)[1],
             "value": v} for k, v in values.items()]
    rows.append({"model": "popular", "metric": "ndcg", "population": "all", "value": 0.9})
    return pd.DataFrame(rows)


def gate(new, old, **kwargs):
    return decide(new, old, model="hybrid", primary="ndcg_all", champion_version="3", **kwargs)


def test_no_champion_lets_any_finite_challenger_in():
    v = gate(table(ndcg_all=0.1), None)
    assert v.moved and v.old_value is None and v.reason == "no champion yet: ndcg_all=0.1"


def test_a_better_challenger_moves_a_tie_or_a_worse_one_does_not():
    old = table(ndcg_all=0.30, ndcg_warm=0.5)
    better, tie, worse = (gate(table(ndcg_all=x), old) for x in (0.31, 0.30, 0.29))
    assert (better.moved, tie.moved, worse.moved) == (True, False, False)
    assert better.reason.startswith("ndcg_all=0.31 beats champion v3's 0.3 by 0.01")
    assert "does not beat champion v3's 0.3" in worse.reason
    assert (better.new_value, better.old_value) == (0.31, 0.30)


def test_the_gain_must_exceed_the_minimum_improvement():
    old = table(ndcg_all=0.30)
    assert not gate(table(ndcg_all=0.3005), old, min_improvement=0.001).moved
    assert gate(table(ndcg_all=0.302), old, min_improvement=0.001).moved


def test_lower_is_better_turns_the_comparison_around():
    old = table(ndcg_all=1.0)
    assert gate(table(ndcg_all=0.8), old, higher_is_better=False).moved
    assert not gate(table(ndcg_all=1.2), old, higher_is_better=False).moved


def test_a_champion_without_the_metric_is_replaced_and_a_nan_challenger_never_wins():
    v = gate(table(ndcg_all=0.2), table(ndcg_warm=0.9))
    assert v.moved and "champion v3 has no usable 'ndcg_all'" in v.reason
    assert gate(table(ndcg_all=0.2), table(ndcg_all=float("nan"))).moved
    nan = gate(table(ndcg_all=float("nan")), None)
    assert not nan.moved and math.isnan(nan.new_value)
    missing = gate(table(ndcg_warm=0.5), table(ndcg_all=0.1))
    assert not missing.moved and "is not a number" in missing.reason


def test_only_the_named_model_and_metric_count():
    assert primary_value(table(ndcg_all=0.2, recall_all=0.7), "hybrid", "recall_all") == 0.7
    assert primary_value(table(ndcg_all=0.2), "popular", "ndcg_all") == 0.9
    assert primary_value(table(ndcg_all=0.2), "absent", "ndcg_all") is None
    assert primary_value(None, "hybrid", "ndcg_all") is None


@pytest.mark.parametrize("primary", ["hit_rate_all", "map_cold"])
def test_metric_names_with_underscores_split_at_the_population(primary):
    metric, population = primary.rsplit("_", 1)
    t = pd.DataFrame([{"model": "hybrid", "metric": metric, "population": population, "value": 0.4}])
    assert primary_value(t, "hybrid", primary) == 0.4


def _paired(new, old, **kwargs):
    defaults = dict(metric="ndcg@10", champion_version="3", min_users=5, resamples=2000, seed=1)
    return decide_paired(np.array(new, float), np.array(old, float), **{**defaults, **kwargs})


def test_too_few_window_users_keep_the_champion_and_say_so():
    v = _paired([1.0] * 4, [0.0] * 4)
    assert not v.moved and v.users == 4 and "too few to decide, champion v3 stays" in v.reason


def test_a_gain_every_user_shares_moves_the_champion_with_its_interval():
    v = _paired([0.5] * 10, [0.2] * 10)    # every resample's mean gain is exactly 0.3
    assert v.moved and v.users == 10
    assert v.gain == pytest.approx(0.3) and v.ci == pytest.approx((0.3, 0.3))
    assert (v.new_value, v.old_value) == pytest.approx((0.5, 0.2))


def test_a_gain_carried_by_one_user_is_noise():
    # one user gains 1.0, nine lose nothing: the mean gain is 0.1, but about a third of the
    # resamples leave that user out ((9/10)^10 = 0.35), so the interval reaches 0
    v = _paired([1.0] + [0.0] * 9, [0.0] * 10)
    assert not v.moved and v.gain == pytest.approx(0.1)
    assert v.ci[0] == 0.0 and "within noise" in v.reason


def test_the_interval_matches_a_plain_python_bootstrap():
    values = np.array([0.3, -0.1, 0.2, 0.0, 0.4, 0.1])
    rng = np.random.default_rng(7)
    means = [values[rng.integers(0, 6, size=6)].mean() for _ in range(500)]
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_interval(values, resamples=500, seed=7, chunk=1) == pytest.approx(expected)
