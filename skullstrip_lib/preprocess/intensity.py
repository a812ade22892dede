"""Intensity normalisation: z-score or min-max inside the head, outliers clipped first."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..validate import check_choice

__all__ = [
    "NORMALIZATIONS",
    "normalize_intensity",
]


NORMALIZATIONS = ("zscore", "minmax", "none")
"""Intensity normalisation inside the head (see :func:`normalize_intensity`), or none."""


def normalize_intensity(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    method: Literal["zscore", "minmax"] = "zscore",
    clip_percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Put intensities on a common scale.

    MRI intensities have no unit: the same tissue reads 300 on one scanner and
    3000 on another. Both methods first clip to percentiles computed inside
    ``mask`` (so a few very bright fat or vessel voxels do not set the scale),
    then

    * ``"zscore"``: subtract the mean and divide by the standard deviation inside
      the mask (mean 0, standard deviation 1 in the head);
    * ``"minmax"``: map the clipped range to [0, 1].

    Parameters
    ----------
    data : numpy.ndarray
        3D intensities.
    mask : numpy.ndarray of bool, optional
        Where to compute statistics (the head); the whole volume if omitted.
    method : {"zscore", "minmax"}
        See above.
    clip_percentiles : tuple of 2 floats
        Lower and upper percentiles (0-100) to clip to.

    Returns
    -------
    numpy.ndarray of float32
        Same shape as ``data``.

    Raises
    ------
    InvalidArgumentError
        An unknown ``method`` (a :class:`ValueError`).
    ValueError
        An empty mask, or constant intensities inside it.

    Examples
    --------
    The same head measured on two scales gives the same input:

    >>> rng = np.random.default_rng(0)
    >>> data = rng.normal(300.0, 50.0, (8, 8, 8))
    >>> a, b = normalize_intensity(data), normalize_intensity(10 * data + 5)
    >>> bool(abs(a.mean()) < 1e-6), round(float(a.std()), 4), bool(np.allclose(a, b, atol=1e-5))
    (True, 1.0, True)
    >>> u = normalize_intensity(data, method="minmax")
    >>> float(u.min()), float(u.max())  # the clipped range
    (0.0, 1.0)
    """
    check_choice(method, "method", ("zscore", "minmax"))  # "none" is the caller's to skip
    data = np.asarray(data, dtype=np.float32)
    values = data[mask] if mask is not None else data.ravel()
    if values.size == 0:
        raise ValueError("normalisation mask is empty")
    lo, hi = np.percentile(values, clip_percentiles)
    if hi <= lo:
        raise ValueError("intensities are constant inside the mask")
    clipped = np.clip(data, lo, hi)
    if method == "minmax":
        return ((clipped - lo) / (hi - lo)).astype(np.float32)
    inside = clipped[mask] if mask is not None else clipped  # "zscore"
    return ((clipped - inside.mean()) / inside.std()).astype(np.float32)
