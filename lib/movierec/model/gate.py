"""The champion gate's decisions, pure functions tested by hand cases; tracking.py applies them
to the registry.

- `decide`: on two backtest metric tables (model, metric, population, value).
- `decide_paired`: the nightly prequential gate (model/prequential.py), on per-user scores of
  the same users, with a paired bootstrap so that noise never moves the champion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class PairedVerdict(Verdict):
    users: int = 0
    gain: float = float("nan")
    ci: tuple[float, float] = (float("nan"), float("nan"))


def decide_paired(challenger: np.ndarray, champion: np.ndarray, *, metric: str,
                  champion_version: str | None, min_users: int, min_improvement: float = 0.0,
                  resamples: int = 2000, seed: int = 0, level: float = 0.95) -> PairedVerdict:
    """The prequential gate: `challenger[i]` and `champion[i]` score the same user i on ratings
    neither model was trained on. The challenger moves in only when the lower end of the paired
    bootstrap interval of the mean gain exceeds min_improvement; with fewer than min_users users
    the sample is too small to tell, and the champion stays."""
    new_scores, old_scores = np.asarray(challenger, float), np.asarray(champion, float)
    if new_scores.shape != old_scores.shape:
        raise ValueError(f"paired scores differ in shape: {new_scores.shape} vs {old_scores.shape}")
    n = len(new_scores)
    new = float(new_scores.mean()) if n else float("nan")
    old = float(old_scores.mean()) if n else float("nan")
    label = f"champion v{champion_version}" if champion_version else "the champion"
    if n < min_users:
        return PairedVerdict(False, new, old, f"{n} users in the window, fewer than "
                             f"train.gate_min_users={min_users}: too few to decide, {label} stays", n)
    diff = new_scores - old_scores
    low, high = bootstrap_interval(diff, resamples=resamples, seed=seed, level=level)
    gain = float(diff.mean())
    summary = (f"{metric} {new:.4f} vs {label}'s {old:.4f} on {n} window users: gain {gain:+.4f}, "
               f"{level:.0%} paired bootstrap [{low:+.4f}, {high:+.4f}]")
    if low > min_improvement:
        return PairedVerdict(True, new, old, f"{summary} is beyond noise", n, gain, (low, high))
    return PairedVerdict(False, new, old, f"{summary} is within noise (needs the interval above "
                         f"{min_improvement:g})", n, gain, (low, high))


def bootstrap_interval(values: np.ndarray, *, resamples: int, seed: int, level: float = 0.95,
                       chunk: int = 200) -> tuple[float, float]:
    """Percentile interval of the mean of `values` over bootstrap resamples, drawn in chunks so
    memory stays at chunk x n whatever the number of resamples."""
    rng, n, means = np.random.default_rng(seed), len(values), []
    for start in range(0, resamples, chunk):
        picks = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        means.append(values[picks].mean(axis=1))
    tail = (1 - level) / 2
    low, high = np.quantile(np.concatenate(means), [tail, 1 - tail])
    return float(low), float(high)
