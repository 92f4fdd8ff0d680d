"""95% intervals for the backtest's metrics: a Poisson bootstrap over users.

Each resample weights every user by an independent Poisson(1) count, the large-sample form of
the classic bootstrap's multinomial counts. One draw of weights serves every model, metric and
population, so one matrix product gives all their resampled means, and the difference of two
models under the same weights is the paired bootstrap of their gain. A metric that is a ratio
of per-user sums (RMSE over a user's pairs) is resampled the same way: users, not pairs, are the
unit, because one user's pairs are not independent of each other.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.95


def resampled_ratios(num: np.ndarray, den: np.ndarray, *, resamples: int, seed: int,
                     chunk: int = 100) -> np.ndarray:
    """(resamples, columns): in resample b, column j is sum_u w_bu num[u, j] / sum_u w_bu den[u, j],
    with w_bu ~ Poisson(1). A column whose weighted denominator is 0 in a resample is NaN there."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if num.shape != den.shape or num.ndim != 2:
        raise ValueError(f"num and den must be matrices of one shape, got {num.shape} and {den.shape}")
    rng, out = np.random.default_rng(seed), []
    for start in range(0, resamples, chunk):
        w = rng.poisson(1.0, size=(min(chunk, resamples - start), num.shape[0])).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append((w @ num) / (w @ den))
    return np.concatenate(out) if out else np.empty((0, num.shape[1]))


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the (1 - level) / 2 and (1 + level) / 2 quantiles, NaN resamples ignored
    (a column with no finite resample gives NaN bounds)."""
    tail = (1 - level) / 2
    finite = np.isfinite(samples)
    low, high = np.full(samples.shape[1], np.nan), np.full(samples.shape[1], np.nan)
    for j in np.flatnonzero(finite.any(axis=0)):
        low[j], high[j] = np.quantile(samples[finite[:, j], j], [tail, 1 - tail])
    return low, high
