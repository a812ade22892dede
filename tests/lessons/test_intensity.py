"""Tests of skullstrip_lib.lessons.intensity: white stripe, the 0-255 rescale, spread."""

from __future__ import annotations

import numpy as np
import pytest

from skullstrip_lib import preprocess
from skullstrip_lib.lessons import intensity


@pytest.fixture(scope="module")
def three_tissues():
    """A 'brain' of CSF (0.2), GM (0.6) and WM (1.0) with 3 % noise, GM the largest."""
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=(40, 40, 40), p=[0.15, 0.5, 0.35])
    clean = np.array([0.2, 0.6, 1.0])[labels] * 700.0
    data = (clean * (1 + 0.03 * rng.standard_normal(labels.shape))).astype(np.float32)
    mask = np.ones(labels.shape, bool)
    mask[:, :, :2] = False
    return data, mask, labels



def test_white_matter_peak_and_stripe(three_tissues):
    data, mask, labels = three_tissues
    # The brightest peak, not the tallest (grey matter).
    assert intensity.white_matter_peak(data, mask) == pytest.approx(700.0, rel=0.03)
    stripe = intensity.white_stripe_mask(data, mask, width=0.05)
    assert not (stripe & ~mask).any()
    assert stripe.sum() / mask.sum() == pytest.approx(0.10, abs=0.01)
    assert np.all(labels[stripe] == 2)
    norm = intensity.white_stripe_normalize(data, mask)
    assert abs(norm[stripe].mean()) < 1e-4 and norm[stripe].std() == pytest.approx(1.0, rel=1e-3)
    # A gain does not change the result.
    np.testing.assert_allclose(intensity.white_stripe_normalize(5 * data, mask), norm, atol=1e-3)


def test_rescale_0_255_and_one_outlier():
    rng = np.random.default_rng(2)
    data = rng.normal(500, 50, (30, 30, 30)).astype(np.float32)
    out = intensity.rescale_0_255(data)
    assert out.min() == 0.0 and out.max() == pytest.approx(255.0)
    spiked = data.copy()
    spiked[0, 0, 0] = 20 * data.max()
    # One voxel of 27,000 squeezes everything else into a few grey levels ...
    assert np.percentile(intensity.rescale_0_255(spiked), 99) < 0.1 * np.percentile(out, 99)
    # ... where the clipped z-score barely moves.
    z, zs = preprocess.normalize_intensity(data), preprocess.normalize_intensity(spiked)
    assert np.abs(z - zs).ravel()[1:].max() < 0.01
    with pytest.raises(ValueError, match="constant"):
        intensity.rescale_0_255(np.ones(4))


def test_intensity_spread_of_scans_that_differ_by_a_gain(three_tissues):
    data, mask, _ = three_tissues
    gains = np.array([0.5, 1.0, 4.0])
    images = [g * data for g in gains]
    q25, q50, q75 = np.percentile(data[mask], (25, 50, 75))
    expected = q50 / (q75 - q25) * gains.std() / gains.mean()
    assert intensity.intensity_spread(images, [mask] * 3) == pytest.approx(expected, rel=1e-5)
    normalised = [preprocess.normalize_intensity(x, mask) for x in images]
    assert intensity.intensity_spread(normalised, [mask] * 3) < 1e-4
    with pytest.raises(ValueError):
        intensity.intensity_spread([data], [mask])
