"""Overlap and distance between two binary masks.

All functions take two boolean arrays of the same shape: ``pred`` (what a
method produced) and ``ref`` (the reference, e.g. the expert-corrected NFBS
mask). Distances and volumes use the voxel size, so pass ``spacing`` in mm:
a 2 mm grid and a 1 mm grid give the same answer in mm.

Conventions for empty masks (there is no universal rule; these are this
library's): two empty masks agree perfectly (Dice = IoU = 1, HD95 = 0); one
empty and one not disagree completely (Dice = IoU = 0, HD95 = inf). Other
tools differ: MONAI's ``DiceMetric`` returns NaN for an empty reference by
default (``ignore_empty=True``), so such cases leave its averages.

HD95 (:func:`hausdorff95`) pools the surface distances of both directions and
takes the 95th percentile of the pool, as MedPy's ``hd95`` does; MONAI's
Hausdorff distance with ``percentile=95`` takes the larger of the two directed
95th percentiles instead, which is never smaller (up to interpolation). Check
which definition a published number used before comparing it with these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ._docs import fill_doc

__all__ = [
    "dice",
    "dice_by_height",
    "dice_lowest_third",
    "evaluate_masks",
    "hausdorff95",
    "height_slabs",
    "iou",
    "surface_distances",
    "volume_difference",
]


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    if pred.shape != ref.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {ref.shape}")
    return pred, ref


def _spacing(spacing: float | Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,))
    if np.any(spacing <= 0):
        raise ValueError(f"voxel spacing must be positive, got {tuple(spacing)}")
    return spacing


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient, ``2 |P ∩ R| / (|P| + |R|)``, in [0, 1].

    Examples
    --------
    >>> a = np.zeros(10, bool); a[:4] = True
    >>> b = np.zeros(10, bool); b[2:6] = True
    >>> dice(a, b)
    0.5
    """
    pred, ref = _pair(pred, ref)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Intersection over union (Jaccard index), ``|P ∩ R| / |P ∪ R|``, in [0, 1].

    Related to Dice by ``IoU = D / (2 - D)``: a Dice of 0.92 is an IoU of 0.85.

    Examples
    --------
    >>> a = np.zeros(10, bool); a[:4] = True
    >>> b = np.zeros(10, bool); b[2:6] = True
    >>> round(iou(a, b), 4)
    0.3333
    """
    pred, ref = _pair(pred, ref)
    union = int(np.logical_or(pred, ref).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(pred, ref).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    # Surface voxels: in the mask with at least one face-neighbour outside it.
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1),
                                    border_value=0)
    return mask & ~eroded


@fill_doc
def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: float | Sequence[float] = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of one mask to the other's surface.

    Parameters
    ----------
    pred, ref : numpy.ndarray of bool
        3D masks of the same shape, both non-empty.
    %(spacing)s

    Returns
    -------
    pred_to_ref, ref_to_pred : numpy.ndarray of float
        One distance per surface voxel of ``pred`` (resp. ``ref``), in mm.

    Examples
    --------
    A 3x3x3 cube of 2 mm voxels against itself moved one voxel along x: the
    faces that still meet are 0 mm apart, the others 2 mm.

    >>> ref = np.zeros((5, 5, 5), bool)
    >>> ref[1:4, 1:4, 1:4] = True
    >>> to_ref, to_pred = surface_distances(np.roll(ref, 1, axis=0), ref, spacing=2.0)
    >>> len(to_ref), sorted(set(to_ref.tolist()))
    (26, [0.0, 2.0])
    """
    pred, ref = _pair(pred, ref)
    spacing = _spacing(spacing, pred.ndim)
    if not pred.any() or not ref.any():
        raise ValueError("surface distances need two non-empty masks")
    # Work in the bounding box of both masks (plus a margin) instead of the whole
    # volume: the distance transform then costs a fraction of the time.
    both = np.argwhere(pred | ref)
    lo = np.maximum(both.min(axis=0) - 1, 0)
    hi = np.minimum(both.max(axis=0) + 2, pred.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sp, sr = _surface(pred[box]), _surface(ref[box])
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return to_ref[sp], to_pred[sr]


@fill_doc
def hausdorff95(pred: np.ndarray, ref: np.ndarray,
                spacing: float | Sequence[float] = 1.0) -> float:
    """95th percentile of the symmetric surface distance, in mm.

    The distances from every surface voxel of ``pred`` to the surface of ``ref``
    and from every surface voxel of ``ref`` to the surface of ``pred`` are pooled;
    the 95th percentile of that pool is returned (as MedPy's ``hd95``). Unlike
    the plain Hausdorff distance (the maximum), it ignores the 5 % worst
    voxels, so one stray voxel does not dominate.

    Parameters
    ----------
    pred, ref : numpy.ndarray of bool
        3D masks of the same shape.
    %(spacing)s

    Returns
    -------
    float
        Distance in mm; 0 if both masks are empty, ``inf`` if exactly one is.

    Examples
    --------
    >>> a = np.zeros((5, 5, 5), bool); a[1, 2, 2] = True
    >>> b = np.zeros((5, 5, 5), bool); b[4, 2, 2] = True
    >>> hausdorff95(a, b, spacing=(2.0, 1.0, 1.0))
    6.0
    """
    pred, ref = _pair(pred, ref)
    if not pred.any() and not ref.any():
        return 0.0
    if not pred.any() or not ref.any():
        return float("inf")
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    return float(np.percentile(np.concatenate([d_pr, d_rp]), 95))


def volume_difference(pred: np.ndarray, ref: np.ndarray,
                      spacing: float | Sequence[float] = 1.0) -> float:
    """Signed volume difference ``vol(pred) - vol(ref)``, in millilitres (cm³).

    Positive means the prediction is too large (skull or dura kept), negative
    too small (brain cut away).

    Examples
    --------
    >>> a = np.ones((10, 10, 10), bool); b = np.zeros((10, 10, 10), bool); b[:5] = True
    >>> volume_difference(a, b, spacing=2.0)  # 1000 vs 500 voxels of 8 mm³
    4.0
    """
    pred, ref = _pair(pred, ref)
    voxel_ml = float(np.prod(_spacing(spacing, pred.ndim))) / 1000.0
    return (int(pred.sum()) - int(ref.sum())) * voxel_ml


def dice_by_height(pred: np.ndarray, ref: np.ndarray, affine: np.ndarray | None = None,
                   parts: int = 3) -> list[float]:
    """Dice in horizontal slabs of the reference's height, bottom to top.

    The reference's extent along the world's inferior-superior axis (RAS+ z of
    the voxel centres through `affine`) is cut into `parts` equal slabs; the
    lowest slab also takes everything below the reference, the highest
    everything above, so a prediction's voxels in the neck count in the lowest
    slab. Each slab's Dice compares the two masks' voxels in it. Where a brain
    mask goes wrong on real heads, through the skull base into the fossae,
    orbits and neck, shows as a low first value while the middle stays high.

    Parameters
    ----------
    pred, ref : numpy.ndarray of bool
        Masks on the same 3D voxel grid.
    affine : (4, 4) numpy.ndarray or None
        Voxel-to-world affine of that grid (None: the third voxel axis points up).
    parts : int
        Number of slabs (>= 1).

    Returns
    -------
    list of float
        `parts` Dice values, lowest slab first (1.0 for a slab both masks leave
        empty; an empty reference gives ``[dice(pred, ref)] * parts``).

    Examples
    --------
    >>> ref = np.zeros((4, 4, 9), bool); ref[1:3, 1:3, 3:9] = True
    >>> pred = ref.copy(); pred[1:3, 1:3, 0:3] = True  # a leak below the reference
    >>> [round(d, 3) for d in dice_by_height(pred, ref)]
    [0.571, 1.0, 1.0]
    """
    pred, ref = _pair(pred, ref)
    if pred.ndim != 3 or parts < 1:
        raise ValueError("dice_by_height needs 3D masks and parts >= 1")
    if not ref.any():
        return [dice(pred, ref)] * parts
    slab = height_slabs(ref, affine, parts)
    return [dice(pred & (slab == s), ref & (slab == s)) for s in range(parts)]


def height_slabs(ref: np.ndarray, affine: np.ndarray | None = None,
                 parts: int = 3) -> np.ndarray:
    """Which horizontal slab of the reference's height each voxel lies in, bottom first.

    The reference's extent along the world's inferior-superior axis (RAS+ z of
    the voxel centres through `affine`) is cut into `parts` equal slabs; voxels
    below the reference count in the lowest, voxels above it in the highest
    (see :func:`dice_by_height`).

    Parameters
    ----------
    ref : numpy.ndarray of bool
        A non-empty 3D mask.
    affine : (4, 4) numpy.ndarray or None
        Voxel-to-world affine of its grid (None: the third voxel axis points up).
    parts : int
        Number of slabs (>= 1).

    Returns
    -------
    numpy.ndarray of int
        Shape ``ref.shape``: 0 for the lowest slab up to ``parts - 1``.

    Examples
    --------
    >>> ref = np.zeros((1, 1, 9), bool); ref[0, 0, 3:9] = True  # z 3 to 8
    >>> height_slabs(ref)[0, 0].tolist()  # edges at z 4.67 and 6.33
    [0, 0, 0, 0, 0, 1, 1, 2, 2]
    """
    ref = np.asarray(ref, dtype=bool)
    if ref.ndim != 3 or parts < 1 or not ref.any():
        raise ValueError("height_slabs needs a non-empty 3D mask and parts >= 1")
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    # World z of every voxel centre: z = a0 i + a1 j + a2 k + t (separable, no big grid).
    i, j, k = (np.arange(n, dtype=float) for n in ref.shape)
    z = (aff[2, 0] * i[:, None, None] + aff[2, 1] * j[None, :, None]
         + aff[2, 2] * k[None, None, :] + aff[2, 3])
    z = np.broadcast_to(z, ref.shape)
    z_ref = z[ref]
    edges = np.linspace(z_ref.min(), z_ref.max(), parts + 1)[1:-1]
    return np.searchsorted(edges, z, side="right")  # 0 (lowest) .. parts - 1


def dice_lowest_third(pred: np.ndarray, ref: np.ndarray,
                      affine: np.ndarray | None = None) -> float:
    """Dice in the lowest third of the reference's height (see :func:`dice_by_height`).

    Examples
    --------
    >>> ref = np.zeros((4, 4, 9), bool); ref[1:3, 1:3, 3:9] = True
    >>> pred = ref.copy(); pred[1:3, 1:3, 0:3] = True
    >>> round(dice_lowest_third(pred, ref), 3)
    0.571
    """
    return dice_by_height(pred, ref, affine, parts=3)[0]


def evaluate_masks(pred: np.ndarray, ref: np.ndarray,
                   spacing: float | Sequence[float] = 1.0) -> dict[str, float]:
    """All the metrics above for one pair of masks.

    Returns
    -------
    dict
        ``dice``, ``iou``, ``hd95_mm``, ``volume_diff_ml``, ``volume_ref_ml`` and
        ``volume_diff_pct`` (relative to the reference; NaN for an empty reference).

    Examples
    --------
    The same two cubes (27 voxels of 8 mm³, 18 shared):

    >>> ref = np.zeros((5, 5, 5), bool)
    >>> ref[1:4, 1:4, 1:4] = True
    >>> scores = evaluate_masks(np.roll(ref, 1, axis=0), ref, spacing=2.0)
    >>> {k: round(v, 4) for k, v in scores.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'dice': 0.6667, 'iou': 0.5, 'hd95_mm': 2.0, 'volume_diff_ml': 0.0,
     'volume_ref_ml': 0.216, 'volume_diff_pct': 0.0}
    """
    pred, ref = _pair(pred, ref)
    voxel_ml = float(np.prod(_spacing(spacing, pred.ndim))) / 1000.0
    ref_ml = int(ref.sum()) * voxel_ml
    diff = volume_difference(pred, ref, spacing)
    return {
        "dice": dice(pred, ref),
        "iou": iou(pred, ref),
        "hd95_mm": hausdorff95(pred, ref, spacing),
        "volume_diff_ml": diff,
        "volume_ref_ml": ref_ml,
        "volume_diff_pct": 100.0 * diff / ref_ml if ref_ml else float("nan"),
    }
