"""Bias fields made on purpose, and how to measure one (chapter 3).

A simulated smooth field multiplies a clean head, so the true field is known
and N4's estimate (:func:`skullstrip_lib.preprocess.n4_correct`) can be
scored against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def simulate_bias_field(shape: Sequence[int], *, strength: float = 0.2, n_terms: int = 3,
                        seed: int = 0, mask: np.ndarray | None = None) -> np.ndarray:
    """A smooth random multiplicative bias field on a voxel grid.

    The log of the field is a sum of low-frequency cosines across the grid (a
    discrete cosine basis, the model SPM uses for the bias field) with random
    weights that fall off with frequency. It is scaled so that its largest
    absolute value (in ``mask``, if given) is ``log(1 + strength)``: there
    the gain stays between ``1 / (1 + strength)`` and ``1 + strength``. Every
    cosine but the constant sums to zero over the grid's voxel centres, so the
    field's geometric mean over the grid is exactly 1.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid size in voxels, ``(X, Y, Z)``.
    strength : float
        Peak relative amplitude (0.2: gains from 1/1.2 to 1.2; 0: no field).
    n_terms : int
        Cosines per axis, including the constant; 3 gives at most one full
        period across the field of view, as smooth as a receive coil's profile.
    seed : int
        Seed of the random weights.
    mask : numpy.ndarray of bool, optional
        Shape ``shape``: where the peak amplitude is reached (e.g. the brain, so
        that the whole ``strength`` falls on it); the whole grid by default.
        Outside it the gain may go further.

    Returns
    -------
    numpy.ndarray of float32
        Shape ``shape``, positive; multiply a clean image by it.

    Examples
    --------
    >>> field = simulate_bias_field((32, 32, 24), strength=0.25, seed=1)
    >>> round(float(np.exp(np.log(field).mean())), 6)
    1.0
    >>> round(float(max(field.max(), 1 / field.min())), 4)
    1.25
    """
    if strength < 0 or n_terms < 2:
        raise ValueError("strength must be >= 0 and n_terms >= 2")
    if strength == 0:
        return np.ones(tuple(int(s) for s in shape), np.float32)
    rng = np.random.default_rng(seed)
    k = np.arange(int(n_terms))
    weights = rng.standard_normal((k.size,) * 3) / (1.0 + k[:, None, None] + k[None, :, None]
                                                     + k[None, None, :])
    weights[0, 0, 0] = 0.0
    bx, by, bz = (np.cos(np.pi * np.outer((np.arange(int(s)) + 0.5) / int(s), k))
                  for s in shape)
    # Separable sum: contract one axis at a time (cheap even on a 256x256x192 grid).
    part = np.einsum("abc,zc->abz", weights, bz)
    part = np.einsum("abz,yb->ayz", part, by)
    log_field = np.tensordot(bx, part, axes=(1, 0)).astype(np.float32)
    peak = np.abs(log_field[mask] if mask is not None else log_field).max()
    log_field *= np.float32(np.log1p(strength) / peak)
    return np.exp(log_field)


def log_field_correlation(estimate: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """How well an estimated bias field follows the true one: Pearson r of their logs.

    N4 fixes a field only up to a constant factor, and the correlation ignores
    that factor (and any overall gain).

    Parameters
    ----------
    estimate, truth : numpy.ndarray
        Positive multiplicative fields, same shape.
    mask : numpy.ndarray of bool
        Where to compare them (the brain or the head).

    Returns
    -------
    float
        In [-1, 1]; 1 means the same shape of field.

    Examples
    --------
    >>> x = np.linspace(0.8, 1.2, 27).reshape(3, 3, 3)
    >>> round(log_field_correlation(2 * x, x, np.ones(x.shape, bool)), 6)
    1.0
    """
    a = np.log(np.asarray(estimate, dtype=np.float64)[mask])
    b = np.log(np.asarray(truth, dtype=np.float64)[mask])
    return float(np.corrcoef(a, b)[0, 1])


def intensity_cv(data: np.ndarray, mask: np.ndarray) -> float:
    """Coefficient of variation (standard deviation / mean) of intensities in a mask.

    In one tissue (white matter) it measures non-uniformity: a bias field
    spreads the tissue's intensities, a good correction narrows them again.

    Parameters
    ----------
    data : numpy.ndarray
        Intensities.
    mask : numpy.ndarray of bool
        Same shape, non-empty.

    Returns
    -------
    float
        Dimensionless (0.05 = 5 %).

    Examples
    --------
    >>> intensity_cv(np.array([9.0, 11.0]), np.array([True, True]))
    0.1
    """
    values = np.asarray(data, dtype=np.float64)[mask]
    if values.size == 0:
        raise ValueError("the mask is empty")
    return float(values.std() / values.mean())
