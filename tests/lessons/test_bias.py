"""Tests of skullstrip_lib.lessons.bias: simulated fields and their measures."""

from __future__ import annotations

import numpy as np
import pytest

from skullstrip_lib.lessons import bias


def test_simulated_bias_field_is_smooth_bounded_and_centred():
    shape = (48, 40, 32)
    field = bias.simulate_bias_field(shape, strength=0.3, seed=4)
    assert field.shape == shape and field.dtype == np.float32 and field.min() > 0
    log = np.log(field.astype(np.float64))
    assert abs(log.mean()) < 1e-6  # geometric mean 1 over the grid
    assert np.abs(log).max() == pytest.approx(np.log(1.3), rel=1e-5)
    # Smooth: neighbouring voxels differ by a small fraction of the field's range.
    steps = max(np.abs(np.diff(log, axis=a)).max() for a in range(3))
    assert steps < 0.1 * (log.max() - log.min())
    np.testing.assert_array_equal(field, bias.simulate_bias_field(shape, strength=0.3, seed=4))
    assert not np.allclose(field, bias.simulate_bias_field(shape, strength=0.3, seed=5))
    # With a mask, the peak amplitude is reached inside it.
    inner = np.zeros(shape, bool)
    inner[12:36, 10:30, 8:24] = True
    masked = bias.simulate_bias_field(shape, strength=0.2, seed=4, mask=inner)
    assert np.abs(np.log(masked[inner])).max() == pytest.approx(np.log(1.2), rel=1e-5)
    np.testing.assert_array_equal(bias.simulate_bias_field(shape, strength=0.0), 1.0)
    with pytest.raises(ValueError):
        bias.simulate_bias_field(shape, strength=-0.1)


def test_field_correlation_and_cv_known_answers():
    truth = bias.simulate_bias_field((20, 20, 20), strength=0.2, seed=0)
    mask = np.ones(truth.shape, bool)
    assert bias.log_field_correlation(3.0 * truth, truth, mask) == pytest.approx(1.0)
    assert bias.log_field_correlation(1.0 / truth, truth, mask) == pytest.approx(-1.0)
    assert bias.intensity_cv(np.array([8.0, 12.0]), np.array([True, True])) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="empty"):
        bias.intensity_cv(np.ones(3), np.zeros(3, bool))
