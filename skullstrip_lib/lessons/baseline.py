"""A classical brain mask, no learning: BET's idea in a few lines (chapter 11).

FSL's BET (Smith, 2002) finds the brain from intensities and shape alone: a
robust intensity range of the head, a threshold between dark (air, bone, CSF)
and bright tissue, a start inside the head, and a surface grown outwards that
stays smooth. The version here keeps the same ingredients with morphology in
place of BET's deformable surface:

1. the head (:func:`skullstrip_lib.preprocess.head_mask`);
2. tissue: head voxels above ``p2 + fraction (p98 - p2)``, with ``p2`` and
   ``p98`` the head's 2nd and 98th intensity percentiles (BET's robust range);
3. an erosion by a ball of ``erode_mm``: it cuts the thin bridges (vessels,
   the optic nerves, tissue under the skull base) between brain and scalp;
4. the largest connected piece: the brain, now apart from scalp and muscle;
5. a dilation by the same ball, inside the tissue mask: the brain's own
   voxels given back, nothing beyond the threshold;
6. a closing and a filling of holes: sulci and ventricles are dark but inside.

Every step is a decision a network learns for itself, which is the point of
chapter 11: it measures where this baseline holds up and where it does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from .._docs import fill_doc
from ..preprocess import head_mask

__all__ = ["ball", "classical_brain_mask", "dilate", "erode", "largest_component"]


@fill_doc
def ball(radius_mm: float, zooms: Sequence[float]) -> np.ndarray:
    """A ball of ``radius_mm`` as a structuring element on a grid of voxel size ``zooms``.

    Parameters
    ----------
    radius_mm : float
        Radius in mm, > 0.
    %(zooms)s

    Returns
    -------
    numpy.ndarray of bool
        Odd side lengths, the ball's centre at the middle voxel.

    Examples
    --------
    >>> ball(2.0, (1.0, 1.0, 1.0)).shape, int(ball(1.0, (1.0, 1.0, 1.0)).sum())
    ((5, 5, 5), 7)
    >>> ball(4.0, (1.0, 1.0, 2.0)).shape  # fewer voxels along the coarse axis
    (9, 9, 5)
    """
    if not radius_mm > 0:
        raise ValueError(f"radius_mm must be > 0, got {radius_mm!r}")
    half = [max(1, round(radius_mm / z)) for z in zooms]
    grid = np.ogrid[tuple(slice(-k, k + 1) for k in half)]
    return sum((g * z) ** 2 for g, z in zip(grid, zooms, strict=True)) <= radius_mm**2


def erode(mask: np.ndarray, radius_mm: float, zooms: Sequence[float]) -> np.ndarray:
    """Erosion by a ball of ``radius_mm``: the voxels farther than that from the background.

    The same result as ``ndimage.binary_erosion(mask, ball(radius_mm, zooms))``
    away from the array's edges (a voxel is kept when every voxel within
    ``radius_mm`` of it is in the mask), computed with one Euclidean distance
    transform, whose cost does not grow with the radius.

    Examples
    --------
    >>> m = np.zeros((9, 9, 9), bool); m[1:8, 1:8, 1:8] = True
    >>> bool(np.array_equal(erode(m, 2.0, (1, 1, 1)),
    ...                     ndimage.binary_erosion(m, ball(2.0, (1, 1, 1)))))
    True
    """
    return ndimage.distance_transform_edt(mask, sampling=zooms) > radius_mm


def dilate(mask: np.ndarray, radius_mm: float, zooms: Sequence[float]) -> np.ndarray:
    """Dilation by a ball of ``radius_mm``: the voxels within that distance of the mask.

    Examples
    --------
    >>> m = np.zeros((9, 9, 9), bool); m[4, 4, 4] = True
    >>> bool(np.array_equal(dilate(m, 2.0, (1, 1, 1)),
    ...                     ndimage.binary_dilation(m, ball(2.0, (1, 1, 1)))))
    True
    """
    return ndimage.distance_transform_edt(~mask, sampling=zooms) <= radius_mm


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected piece of a boolean mask (an empty mask stays empty).

    Examples
    --------
    >>> m = np.zeros((7, 1, 1), bool); m[0:2] = m[3:6] = True
    >>> largest_component(m)[:, 0, 0].astype(int).tolist()
    [0, 0, 0, 1, 1, 1, 0]
    """
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    return labels == sizes.argmax()


def _box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """The bounding box of a non-empty mask, widened by ``margin`` voxels (within the array)."""
    box = []
    for axis, m in enumerate(margin):
        found = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(0, found[0] - m), min(mask.shape[axis], found[-1] + 1 + m)))
    return tuple(box)


@fill_doc
def classical_brain_mask(data: np.ndarray, zooms: Sequence[float] = (1.0, 1.0, 1.0), *,
                         fraction: float = 0.3, erode_mm: float = 3.0,
                         close_mm: float = 3.0) -> np.ndarray:
    """A brain mask from intensities and morphology alone (see the module docstring).

    Parameters
    ----------
    data : numpy.ndarray
        A T1-weighted head, shape ``(X, Y, Z)``, any intensity unit (the
        threshold is relative to the head's own range).
    %(zooms)s
    fraction : float
        Where the threshold sits in the head's robust range, in (0, 1): 0.3 is
        30 % of the way from the 2nd to the 98th percentile.
    erode_mm : float
        Radius in mm of the erosion that separates brain from scalp, and of the
        dilation that gives it back.
    close_mm : float
        Radius in mm of the final closing (0: none).

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``data``: one connected piece without holes, inside the head.

    Raises
    ------
    ValueError
        A parameter out of range, or nothing stands out from the background.

    Examples
    --------
    A ball of "brain" (1000) inside a dark ring (skull, 50) inside a grey shell
    (scalp, 600) is found, and the scalp is not:

    >>> from skullstrip_lib.lessons.evaluation_lab import sphere
    >>> from skullstrip_lib.metrics import dice
    >>> shape = (48, 48, 48)
    >>> data = np.where(sphere(shape, (24, 24, 24), 21), 600.0, 0.0)
    >>> data[sphere(shape, (24, 24, 24), 17)] = 50.0
    >>> brain = sphere(shape, (24, 24, 24), 14)
    >>> data[brain] = 1000.0
    >>> found = classical_brain_mask(data, (2.0, 2.0, 2.0), erode_mm=4.0)
    >>> round(dice(found, brain), 3), bool((found & (data == 600.0)).any())
    (0.998, False)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if close_mm < 0:
        raise ValueError(f"close_mm must be >= 0, got {close_mm!r}")
    data = np.asarray(data, dtype=np.float32)
    head = head_mask(data, zooms)
    p2, p98 = np.percentile(data[head], (2, 98))
    # Work inside the head's box, with a margin for the closing: a third of the volume or
    # less, and the same result, since nothing outside the head can become brain.
    box = _box(head, [int(np.ceil(close_mm / z)) + 1 for z in zooms])
    crop, in_head = data[box], head[box]
    tissue = in_head & (crop > p2 + fraction * (p98 - p2))
    core = largest_component(erode(tissue, erode_mm, zooms))
    brain = dilate(core, erode_mm, zooms) & tissue
    if close_mm > 0:
        brain = erode(dilate(brain, close_mm, zooms), close_mm, zooms)
    out = np.zeros(data.shape, dtype=bool)
    out[box] = ndimage.binary_fill_holes(largest_component(brain))
    return out
