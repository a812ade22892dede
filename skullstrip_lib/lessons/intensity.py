"""Intensity normalisation beyond the pipeline's z-score (chapter 5).

White-stripe normalisation, the source article's 0-255 rescale (a defect,
shown), and a measure of how far apart heads' intensities lie.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .._docs import fill_doc


def white_matter_peak(data: np.ndarray, mask: np.ndarray, *, bins: int = 256) -> float:
    """Intensity of the brightest peak of the histogram in a mask.

    Inside the brain on a T1-weighted scan that peak is white matter (CSF,
    grey matter and white matter are the three peaks, in that order). The
    histogram (between the 1st and 99.5th percentiles) is smoothed, and the
    highest-intensity local maximum that reaches a tenth of the tallest is taken,
    as in WhiteStripe (Shinohara et al., 2014).

    Parameters
    ----------
    data : numpy.ndarray
        Intensities.
    mask : numpy.ndarray of bool
        Same shape: the brain (the head's fat is brighter than white matter).
    bins : int
        Histogram bins.

    Returns
    -------
    float
        The peak's intensity, in the units of ``data``.

    Examples
    --------
    Three tissues (CSF, grey and white matter) around 30, 60 and 90:

    >>> rng = np.random.default_rng(0)
    >>> csf, gm, wm = rng.normal(30, 3, 1000), rng.normal(60, 3, 2000), rng.normal(90, 3, 3000)
    >>> data = np.concatenate([csf, gm, wm]).astype("float32").reshape(6, 10, 100)
    >>> brain = np.ones(data.shape, bool)
    >>> round(white_matter_peak(data, brain))
    90
    """
    values = np.asarray(data, dtype=np.float32)[mask]
    if values.size == 0:
        raise ValueError("the mask is empty")
    lo, hi = np.percentile(values, (1, 99.5))
    if hi <= lo:
        raise ValueError("intensities are constant inside the mask")
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), 2.0)
    inner = smooth[1:-1]
    peaks = np.flatnonzero((inner >= smooth[:-2]) & (inner > smooth[2:])
                           & (inner >= 0.1 * smooth.max())) + 1
    top = int(peaks[-1]) if peaks.size else int(smooth.argmax())
    return float((edges[top] + edges[top + 1]) / 2)


@fill_doc
def white_stripe_mask(data: np.ndarray, mask: np.ndarray, *, width: float = 0.05) -> np.ndarray:
    """The "white stripe": voxels whose intensity is close to the white-matter peak.

    Following Shinohara et al. (2014): find the white-matter peak
    (:func:`white_matter_peak`), take its quantile ``q`` among the voxels in
    ``mask``, and keep the voxels between the ``q - width`` and ``q + width``
    quantiles. On a clean scan that is normal-appearing white matter.

    Parameters
    ----------
    %(data_brain)s
    width : float
        Half-width of the stripe in quantiles (0.05: about 10 % of the brain).

    Returns
    -------
    numpy.ndarray of bool
        Same shape, inside ``mask``.

    Examples
    --------
    The same three tissues: 10 % of the brain (600 voxels) around the white-matter peak.

    >>> rng = np.random.default_rng(0)
    >>> csf, gm, wm = rng.normal(30, 3, 1000), rng.normal(60, 3, 2000), rng.normal(90, 3, 3000)
    >>> data = np.concatenate([csf, gm, wm]).astype("float32").reshape(6, 10, 100)
    >>> brain = np.ones(data.shape, bool)
    >>> stripe = white_stripe_mask(data, brain)
    >>> int(stripe.sum()), round(float(data[stripe].min())), round(float(data[stripe].max()))
    (600, 89, 90)
    """
    values = np.asarray(data, dtype=np.float32)[mask]
    peak = white_matter_peak(data, mask)
    q = float(np.mean(values <= peak))
    lo, hi = np.quantile(values, [max(q - width, 0.0), min(q + width, 1.0)])
    return mask & (data >= lo) & (data <= hi)


@fill_doc
def white_stripe_normalize(data: np.ndarray, mask: np.ndarray, *,
                           width: float = 0.05) -> np.ndarray:
    """WhiteStripe normalisation: z-score with the white stripe's mean and deviation.

    White matter gets mean 0 and unit spread in every scan, so tissues line up
    across scanners without a training set of histograms (unlike Nyúl & Udupa's
    landmark matching). It needs the brain (skull-stripped), so it suits steps
    after brain extraction, not the input of a brain-extraction network.

    Parameters
    ----------
    %(data_brain)s
    width : float
        See :func:`white_stripe_mask`.

    Returns
    -------
    numpy.ndarray of float32
        Same shape.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> csf, gm, wm = rng.normal(30, 3, 1000), rng.normal(60, 3, 2000), rng.normal(90, 3, 3000)
    >>> data = np.concatenate([csf, gm, wm]).astype("float32").reshape(6, 10, 100)
    >>> brain = np.ones(data.shape, bool)
    >>> z = white_stripe_normalize(data, brain)
    >>> stripe = white_stripe_mask(data, brain)
    >>> round(float(z[stripe].mean()), 3) + 0.0, round(float(z[stripe].std()), 3)
    (0.0, 1.0)
    """
    stripe = np.asarray(data, dtype=np.float64)[white_stripe_mask(data, mask, width=width)]
    if stripe.size < 2 or stripe.std() == 0:
        raise ValueError("the white stripe is empty or constant")
    return ((np.asarray(data, dtype=np.float32) - stripe.mean()) / stripe.std()).astype(np.float32)


def rescale_0_255(data: np.ndarray) -> np.ndarray:
    """The source article's "z-score": a min-max rescale of the whole volume to 0-255.

    Kept to show its defect: the scale is set by the single darkest and single
    brightest voxel, so one outlier (a spike, a bright vessel, an artefact)
    squeezes the whole brain into a few grey levels, and the scale changes
    from scan to scan with whatever happens to be brightest. It is not a
    z-score (mean 0, standard deviation 1); see :func:`normalize_intensity`.

    Parameters
    ----------
    data : numpy.ndarray
        Intensities, not constant.

    Returns
    -------
    numpy.ndarray of float32
        Same shape, from 0 to 255.

    Examples
    --------
    >>> rescale_0_255(np.array([10.0, 20.0, 30.0])).tolist()
    [0.0, 127.5, 255.0]
    """
    data = np.asarray(data, dtype=np.float32)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        raise ValueError("intensities are constant")
    return ((data - lo) * np.float32(255.0 / (hi - lo))).astype(np.float32)


def intensity_spread(images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """How much several scans disagree on a tissue's intensity, in units of its contrast.

    The standard deviation across scans of the median intensity in each mask,
    divided by the mean across scans of the interquartile range in the mask.
    Dimensionless, so raw and normalised images can be compared: scans that
    differ only by a gain ``g`` give ``median / IQR * std(g) / mean(g)`` raw and
    0 once normalised.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        One volume per scan (the shapes may differ).
    masks : sequence of numpy.ndarray of bool
        The region to compare in each (e.g. the brain), same shapes.

    Returns
    -------
    float
        0 when every scan has the same median; larger is worse.

    Examples
    --------
    >>> x = np.arange(1.0, 101.0)
    >>> m = np.ones(100, bool)
    >>> intensity_spread([x, x], [m, m])
    0.0
    """
    if len(images) != len(masks) or len(images) < 2:
        raise ValueError("need two or more images, each with its mask")
    q = np.array([np.percentile(np.asarray(im, dtype=np.float64)[m], (25, 50, 75))
                  for im, m in zip(images, masks, strict=True)])
    return float(q[:, 1].std() / (q[:, 2] - q[:, 0]).mean())
