"""The champion gate's decision: a pure function of the challenger's and the champion's metric
tables (model, metric, population, value), so it is tested by hand cases. tracking.py applies
it to the registry."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Verdict:
    moved: bool               # the challenger becomes champion
    new_value: float
    old_value: float | None   # None: no champion, or none with a usable value
    reason: str


def primary_value(table: pd.DataFrame | None, model: str, primary: str) -> float | None:
    """The `primary` metric ('<metric>_<population>', e.g. ndcg_all) of `model`, if the table
    has a finite one."""
    if table is None:
        return None
    metric, _, population = primary.rpartition("_")
    hit = table[(table.model == model) & (table.metric == metric) & (table.population == population)]
    if hit.empty:
        return None
    value = float(hit["value"].iloc[0])
    return value if math.isfinite(value) else None


def decide(challenger: pd.DataFrame, champion: pd.DataFrame | None, *, model: str, primary: str,
           champion_version: str | None = None, higher_is_better: bool = True,
           min_improvement: float = 0.0) -> Verdict:
    """Whether the challenger replaces the champion: only when its `primary` metric of `model`
    beats the champion's by more than min_improvement (a tie never moves it). With no champion,
    or one without a usable value, the challenger wins; a non-finite challenger never does."""
    metric, _, population = primary.rpartition("_")
    hit = challenger[(challenger.model == model) & (challenger.metric == metric)
                     & (challenger.population == population)]
    new = float(hit["value"].iloc[0]) if not hit.empty else float("nan")
    old = primary_value(champion, model, primary)
    label = f"champion v{champion_version}" if champion_version else "the champion"
    direction = "higher" if higher_is_better else "lower"
    if not math.isfinite(new):
        return Verdict(False, new, old, f"{primary}={new!r} is not a number")
    if champion is None:
        return Verdict(True, new, None, f"no champion yet: {primary}={new!r}")
    if old is None:
        return Verdict(True, new, None, f"{label} has no usable {primary!r} value to compare with")
    gain = new - old if higher_is_better else old - new
    if gain > min_improvement:
        return Verdict(True, new, old, f"{primary}={new!r} beats {label}'s {old!r} by {gain:.6g} "
                                       f"({direction} is better, min improvement {min_improvement:g})")
    return Verdict(False, new, old, f"{primary}={new!r} does not beat {label}'s {old!r} by more "
                                    f"than {min_improvement:g} ({direction} is better)")
