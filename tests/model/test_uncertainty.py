"""The Poisson bootstrap behind model_metrics' intervals: exact degenerate cases and the
coverage it promises, checked over generated samples."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.model.uncertainty import percentile_interval, resampled_ratios


def test_a_constant_metric_has_a_zero_width_interval_and_a_model_against_itself_no_gain():
    values = np.full((50, 1), 0.25)
    samples = resampled_ratios(np.hstack([values, values]), np.ones((50, 2)), resamples=300, seed=1)
    low, high = percentile_interval(samples)
    assert low == pytest.approx([0.25, 0.25]) and high == pytest.approx([0.25, 0.25])
    gain_low, gain_high = percentile_interval((samples[:, :1] - samples[:, 1:]))
    assert (gain_low[0], gain_high[0]) == (0.0, 0.0)


def test_a_ratio_weights_users_by_their_pairs():
    # user 0: 1 pair, squared error 4; user 1: 3 pairs, squared errors summing to 0: the mean
    # over pairs is 1, not the mean of the user means (2); every resample lies in [0, 4]
    samples = resampled_ratios(np.array([[4.0], [0.0]]), np.array([[1.0], [3.0]]),
                               resamples=2000, seed=3)
    finite = samples[np.isfinite(samples)]
    assert finite.min() >= 0 and finite.max() <= 4
    assert np.median(finite) == pytest.approx(1.0)


def test_an_empty_population_gives_nan_bounds_not_an_error():
    samples = resampled_ratios(np.zeros((5, 1)), np.zeros((5, 1)), resamples=50, seed=0)
    low, high = percentile_interval(samples)
    assert np.isnan(low[0]) and np.isnan(high[0])


def test_the_95_percent_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered, trials = 0, 300
    for trial in range(trials):
        # skewed like per-user NDCG: most users 0, some near 1
        sample = rng.binomial(1, 0.3, 120) * rng.uniform(0.2, 1.0, 120)
        low, high = percentile_interval(resampled_ratios(sample[:, None], np.ones((120, 1)),
                                                         resamples=400, seed=trial))
        covered += low[0] <= 0.3 * 0.6 <= high[0]
    assert 0.90 <= covered / trials <= 0.99


def test_shapes_that_differ_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        resampled_ratios(np.zeros((3, 2)), np.zeros((3, 1)), resamples=10, seed=0)
