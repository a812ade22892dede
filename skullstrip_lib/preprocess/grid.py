"""The model grid: the network's fixed grid placed on the head, in world coordinates.

:func:`fit_model_grid` places it (96x128x160 voxels of 2 mm by default) on the
head; :func:`to_model_grid` and :func:`from_model_grid` resample onto it and
back. The grid is defined in world coordinates (mm), so a prediction maps back
onto the scan's own voxel grid whatever its orientation, voxel size or obliquity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "INTERPOLATIONS",
    "MODEL_SHAPE",
    "MODEL_SPACING",
    "ModelGrid",
    "bounding_box",
    "box_corners",
    "fit_model_grid",
    "from_model_grid",
    "to_model_grid",
]


MODEL_SHAPE = (96, 128, 160)


MODEL_SPACING = 2.0


INTERPOLATIONS = {"linear": 1, "cubic": 3, "nearest": 0}
"""How the image goes onto the model grid: name → spline order (see :func:`to_model_grid`)."""


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last voxel index of a non-empty mask along each axis.

    Computed from the mask's projections on each axis, which is several times
    cheaper than ``np.argwhere`` on a full-size volume.

    Returns
    -------
    first, last : numpy.ndarray of int
        Shape ``(mask.ndim,)``; the box is ``first[i]..last[i]`` inclusive.
    """
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
             for ax in range(mask.ndim)]
    return np.array([s[0] for s in spans]), np.array([s[-1] for s in spans])


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The 8 corners of a 3D box in homogeneous voxel coordinates, shape ``(8, 4)``."""
    return np.array([[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                     for c in (lo[2], hi[2])])


@dataclass(frozen=True)
class ModelGrid:
    """The network's fixed grid placed on one scan, and the way back.

    Attributes
    ----------
    shape : tuple of int
        Model grid size in voxels, e.g. ``(96, 128, 160)``.
    affine : numpy.ndarray
        Model voxel to world (RAS, mm), shape ``(4, 4)``; axis-aligned.
    source_shape : tuple of int
        Shape of the scan's RAS voxel grid.
    source_affine : numpy.ndarray
        The scan's RAS voxel-to-world affine, shape ``(4, 4)`` (may be oblique).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Model voxel size in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    def to_dict(self) -> dict:
        """A JSON-ready description (lists of floats)."""
        return {
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "source_shape": list(self.source_shape),
            "source_affine": self.source_affine.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelGrid:
        """Inverse of :meth:`to_dict`."""
        return cls(
            shape=tuple(int(s) for s in d["shape"]),
            affine=np.asarray(d["affine"], dtype=float),
            source_shape=tuple(int(s) for s in d["source_shape"]),
            source_affine=np.asarray(d["source_affine"], dtype=float),
        )


def fit_model_grid(
    source_affine: np.ndarray,
    source_shape: Sequence[int],
    head: np.ndarray,
    *,
    shape: Sequence[int] = MODEL_SHAPE,
    spacing: float = MODEL_SPACING,
    margin_mm: float = 6.0,
) -> ModelGrid:
    """Place the model grid on the head (not on the scanner's origin).

    The grid is centred on the bounding box of the head in world coordinates.
    Along the superior axis a head longer than the grid (a long neck in the
    field of view) is aligned to the top of the head instead, because the brain
    is at the top and the neck is what may be cut.

    Parameters
    ----------
    source_affine : numpy.ndarray
        The scan's RAS voxel-to-world affine, shape ``(4, 4)``.
    source_shape : sequence of 3 int
        The scan's RAS voxel grid shape.
    head : numpy.ndarray of bool
        Head mask on that grid (:func:`head_mask`).
    shape : sequence of 3 int
        Model grid shape in voxels (R-L, A-P, S-I order).
    spacing : float
        Model voxel size in mm.
    margin_mm : float
        Space kept above the head when aligning to its top.

    Returns
    -------
    ModelGrid

    Examples
    --------
    A 40 mm cube of "head" in a 1 mm scan, and a grid of 16^3 voxels of 4 mm
    (64 mm): the grid is centred on the cube. A head that runs through the
    whole scan along S-I is longer than the grid allows: the grid's top is
    then ``margin_mm`` above the head's.

    >>> head = np.zeros((64, 64, 64), bool)
    >>> head[10:50, 10:50, 10:50] = True  # voxel edges at 9.5 and 49.5 mm
    >>> grid = fit_model_grid(np.eye(4), head.shape, head, shape=(16, 16, 16), spacing=4.0)
    >>> grid.spacing, grid.affine[:3, 3].tolist()  # first voxel centre, mm
    ((4.0, 4.0, 4.0), [-0.5, -0.5, -0.5])
    >>> head[:, :, :10] = head[:, :, 50:] = True  # from z = -0.5 mm to 63.5 mm, where it is
    >>> tall = fit_model_grid(np.eye(4), head.shape, head, shape=(16, 16, 16), spacing=4.0)
    >>> float(tall.affine[2, 3] + 4.0 * 15 + 2.0)  # the grid's top edge: 63.5 + 6 mm
    69.5
    """
    if head.shape != tuple(source_shape) or not head.any():
        raise ValueError("the head mask must be non-empty and on the source grid")
    shape = np.asarray(shape, dtype=int)
    # World coordinates of the corners of the head's voxel bounding box are enough
    # for an axis-aligned box, also when the scan is oblique.
    # Voxel edges, not centres: a head voxel fills half a voxel beyond its centre.
    first, last = bounding_box(head)
    world = (source_affine @ box_corners(first - 0.5, last + 0.5).T).T[:, :3]
    wmin, wmax = world.min(axis=0), world.max(axis=0)
    centre = (wmin + wmax) / 2
    extent = spacing * shape
    if wmax[2] - wmin[2] > extent[2] - 2 * margin_mm:
        centre[2] = wmax[2] + margin_mm - extent[2] / 2
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centre - spacing * (shape - 1) / 2
    return ModelGrid(tuple(int(s) for s in shape), affine, tuple(int(s) for s in source_shape),
                     np.asarray(source_affine, dtype=float))


def _voxel_map(data: np.ndarray, affine: np.ndarray, shape: Sequence[int],
               out_affine: np.ndarray) -> np.ndarray:
    """The matrix taking output voxels to the voxels of ``data`` (on ``affine``, ``shape``)."""
    if data.shape != tuple(shape):
        raise ValueError(f"expected shape {tuple(shape)}, got {data.shape}")
    return np.linalg.inv(affine) @ out_affine


def _resample(data: np.ndarray, matrix: np.ndarray, out_shape: Sequence[int], order: int,
              cval: float, output: np.ndarray | None = None) -> np.ndarray:
    # A boolean mask goes in as a uint8 view (no float copy of the volume); the
    # interpolation is computed in double precision either way, so 0/1 as bytes
    # or as floats give the same float32 result.
    data = data.view(np.uint8) if data.dtype == bool else np.asarray(data, dtype=np.float32)
    if output is None:
        output = np.empty(tuple(int(n) for n in out_shape), np.float32)
    ndimage.affine_transform(data, matrix[:3, :3], matrix[:3, 3], output_shape=output.shape,
                             output=output, order=order, mode="constant", cval=cval,
                             prefilter=order > 1)
    return output


def to_model_grid(data: np.ndarray, grid: ModelGrid, *, order: int = 1, antialias: bool = True,
                  cval: float = 0.0) -> np.ndarray:
    """Resample an array from the scan's RAS grid onto the model grid.

    Parameters
    ----------
    data : numpy.ndarray
        Shape ``grid.source_shape``. For a mask, pass it as float or bool: the
        result is then the fraction of each model voxel inside the mask, to
        threshold at 0.5 (a bool mask is read as bytes, without a float copy).
    grid : ModelGrid
        From :func:`fit_model_grid`.
    order : int
        Spline order: 1 (linear, the default for images and mask fractions),
        3 (cubic) or 0 (nearest neighbour: labels only; it aliases).
    antialias : bool
        Smooth before downsampling (Gaussian, sigma = (factor - 1) / 2 voxels)
        so that thin structures are averaged rather than skipped.
    cval : float
        Value outside the scan's field of view: for an image, its background
        level (:func:`skullstrip_lib.io.background_level`, ``scan.background``),
        so that the padding looks like the air around the head whatever the
        scan's intensity offset; 0 for a mask.

    Returns
    -------
    numpy.ndarray of float32
        Shape ``grid.shape``: the model grid's voxels, whose world positions
        ``grid.affine`` gives.

    Examples
    --------
    A 40 mm cube of mask on a 1 mm scan, taken to 4 mm voxels as the fraction
    of each voxel inside it, and back with :func:`from_model_grid`:

    >>> mask = np.zeros((64, 64, 64), bool)
    >>> mask[10:50, 10:50, 10:50] = True
    >>> grid = fit_model_grid(np.eye(4), mask.shape, mask, shape=(16, 16, 16), spacing=4.0)
    >>> fraction = to_model_grid(mask, grid)
    >>> fraction.shape, float(fraction.sum()) * 4.0**3 / 1000  # mL: the cube's 64 mL kept
    ((16, 16, 16), 64.0)
    >>> back = from_model_grid(fraction, grid, support=0.5) >= 0.5
    >>> int(back.sum()), int(mask.sum())  # a thin layer of the edges lost in the round trip
    (62648, 64000)
    """
    matrix = _voxel_map(data, grid.source_affine, grid.source_shape, grid.affine)
    if antialias and order > 0:
        # Source voxels stepped per model voxel, along each source axis.
        factor = np.abs(matrix[:3, :3]).max(axis=1)
        sigma = np.maximum(0.0, (factor - 1.0) / 2.0)
        if np.any(sigma > 0):
            # Straight into float32 from any input type: one full-size array, no cast copy.
            data = ndimage.gaussian_filter(data.view(np.uint8) if data.dtype == bool else data,
                                           sigma, mode="nearest", output=np.float32)
    return _resample(data, matrix, grid.shape, order, cval)


def from_model_grid(data: np.ndarray, grid: ModelGrid, *, order: int = 1,
                    cval: float = 0.0, support: float | None = None) -> np.ndarray:
    """Resample an array from the model grid back onto the scan's RAS grid.

    Parameters
    ----------
    data : numpy.ndarray
        Shape ``grid.shape``, e.g. a predicted probability map.
    grid : ModelGrid
        The grid it was made on.
    order : int
        1 (linear) for probabilities, then threshold at 0.5.
    cval : float
        Value for scan voxels outside the model grid (0: not brain).
    support : float, optional
        Only compute scan voxels that can reach this value: those within one
        model voxel of a model voxel at or above it (linear interpolation never
        exceeds its neighbours). The others get ``cval``. With a threshold of
        0.5 this gives the same mask at a fraction of the cost, since the brain
        fills only part of the scan. Linear interpolation (``order=1``) only.

    Returns
    -------
    numpy.ndarray of float32
        Shape ``grid.source_shape``.
    """
    matrix = _voxel_map(data, grid.affine, grid.shape, grid.source_affine)
    if support is None:
        return _resample(data, matrix, grid.source_shape, order, cval)
    if order != 1:
        raise ValueError("support needs linear interpolation (order=1)")
    return _resample_near_support(data, matrix, grid.source_shape, support, cval)


def _resample_near_support(data: np.ndarray, matrix: np.ndarray, out_shape: Sequence[int],
                           support: float, cval: float) -> np.ndarray:
    """Linear resampling computed only in the output box that can reach ``support``.

    Linear interpolation never exceeds its neighbours, so an output voxel farther
    than one input voxel from every input voxel at or above ``support`` stays
    below it: only the bounding box of those input voxels, grown by one voxel and
    mapped into the output grid, is resampled; the rest is ``cval``.
    ``matrix`` maps output voxels to input voxels, as for :func:`_resample`.
    """
    hot = data >= support
    # np.zeros leaves the pages outside the box unwritten (the kernel's zero page):
    # only the box costs memory, whatever the output's size.
    out = (np.zeros(out_shape, np.float32) if cval == 0
           else np.full(out_shape, cval, dtype=np.float32))
    if not hot.any():
        return out
    first, last = bounding_box(hot)
    out_vox = (np.linalg.inv(matrix) @ box_corners(first - 1.0, last + 1.0).T).T[:, :3]
    start = np.clip(np.floor(out_vox.min(axis=0)).astype(int), 0, out_shape)
    stop = np.clip(np.ceil(out_vox.max(axis=0)).astype(int) + 1, 0, out_shape)
    if np.any(stop <= start):
        return out
    shift = np.eye(4)
    shift[:3, 3] = start  # the box's first voxel is output voxel `start`
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    _resample(data, matrix @ shift, stop - start, 1, cval, output=out[box])  # in place
    return out
