"""Preprocessing: bias-field correction, the model grid, intensity normalisation.

The steps, in the order the book teaches them:

1. :func:`head_mask` finds the head (Otsu threshold, largest component, holes
   filled) so later steps know where the signal is.
2. :func:`n4_correct` removes the smooth intensity non-uniformity (the *bias
   field*) with SimpleITK's N4; :func:`n4_ants` does the same through nipype's
   interface to the ANTs program when ANTs is installed.
3. :func:`fit_model_grid` places the network's fixed grid (96x128x160 voxels of
   2 mm by default) on the head, and :func:`to_model_grid` /
   :func:`from_model_grid` resample onto it and back. The grid is defined in
   world coordinates (mm), so a prediction maps back onto the scan's own voxel
   grid whatever its orientation, voxel size or obliquity.
4. :func:`normalize_intensity` puts intensities on a common scale (z-score or
   min-max, after clipping outlier percentiles).

:func:`preprocess_subject` runs them for one subject and writes the result;
:mod:`skullstrip_lib.workflow` runs it for many subjects with nipype.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from scipy import ndimage

from . import __version__
from .datasets import check_subject_id
from .errors import InvalidInputError, SkullstripError
from .io import (
    Scan,
    atomic_save,
    atomic_write_text,
    from_plain,
    load_mask,
    load_scan,
    settings_key,
    to_plain,
)

__all__ = [
    "ModelGrid",
    "PreprocessConfig",
    "bounding_box",
    "box_corners",
    "cache_key",
    "fit_model_grid",
    "from_model_grid",
    "head_mask",
    "is_complete",
    "n4_ants",
    "n4_ants_command",
    "n4_correct",
    "n4_shrink_factors",
    "normalize_intensity",
    "output_paths",
    "prepare_input",
    "preprocess_subject",
    "to_model_grid",
]

MODEL_SHAPE = (96, 128, 160)
MODEL_SPACING = 2.0
N4_BACKENDS = ("simpleitk", "ants", "none")
"""Bias-field correction: SimpleITK's N4, ANTs' N4 through nipype, or none."""
NORMALIZATIONS = ("zscore", "minmax", "none")
"""Intensity normalisation inside the head (see :func:`normalize_intensity`), or none."""
INTERPOLATIONS = {"linear": 1, "cubic": 3, "nearest": 0}
"""How the image goes onto the model grid: name → spline order (see :func:`to_model_grid`)."""


# --------------------------------------------------------------------------- head mask
def head_mask(data: np.ndarray, zooms: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A rough mask of the head: everything that is not air.

    The threshold is FSL BET's robust one: 10 % of the way from the 2nd to the
    98th intensity percentile. (Otsu's threshold is no good here: with air,
    scalp and brain in the histogram it often splits brain from scalp instead
    of head from air.) The largest connected component is kept and holes (dark
    skull, CSF, sinuses) are filled. The work is done on a grid of about 2 mm
    and brought back by nearest neighbour, so the mask is blocky at 1 mm: it is
    for placing the model grid and restricting N4 and normalisation, not a result.

    Parameters
    ----------
    data : numpy.ndarray
        3D intensities, shape ``(X, Y, Z)``.
    zooms : sequence of 3 floats
        Voxel size in mm.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``data``.

    Raises
    ------
    ValueError
        Nothing stands out from the background.
    """
    step = tuple(max(1, round(2.0 / z)) for z in zooms)
    small = np.ascontiguousarray(data[:: step[0], :: step[1], :: step[2]], dtype=np.float32)
    small = ndimage.gaussian_filter(small, 0.7)
    p2, p98 = np.percentile(small, (2, 98))
    fg = small > p2 + 0.1 * (p98 - p2)
    labels, n = ndimage.label(fg)
    if n == 0 or p98 <= p2:
        raise ValueError("nothing stands out from the background")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fg = labels == sizes.argmax()
    fg = ndimage.binary_closing(fg, iterations=2, border_value=0)
    fg = ndimage.binary_fill_holes(fg)
    # Fill slice by slice too: a head open at the edge of the field of view (a
    # cut neck) has "holes" connected to the border that 3D filling misses.
    for axis in range(3):
        fg |= np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(fg, axis, 0)],
                       axis=axis)
    # Back to the full grid by nearest neighbour, one axis at a time: each np.take
    # writes exactly its output (no oversized repeat to crop and copy again).
    for axis, (n, k) in enumerate(zip(data.shape, step, strict=True)):
        fg = np.take(fg, np.arange(n) // k, axis=axis)
    return fg


# --------------------------------------------------------------------------- N4
N4_FIT_SPACING_MM = 8.0
"""N4 fits the field on a copy shrunk to voxels of about this size, in mm."""
N4_ITERATIONS = (50, 50, 50)
"""Default N4 fitting levels (3) and the most iterations at each."""
N4_CONVERGENCE = 1e-3
"""Default N4 convergence threshold of each level."""


def _reversed_sitk(data: np.ndarray, zooms: Sequence[float]):
    """``data`` as a SimpleITK image with its axes in reverse order, without a transpose.

    SimpleITK reads a C-ordered array's last axis as x, so an ``(X, Y, Z)`` array
    becomes an image whose x is our Z. N4 treats every axis alike (same control
    points, same shrink factor), so fitting the reversed image gives the same
    field, reversed, and arrays read back come in our ``(X, Y, Z)`` order. It
    saves two transposed copies of the full-size volume.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(data))
    image.SetSpacing(tuple(float(z) for z in reversed(tuple(zooms))))
    return image


def _linear_weights(n_fine: int, n_coarse: int, first: float, step: float) -> np.ndarray:
    """Linear interpolation from ``n_coarse`` points to ``n_fine`` as a matrix.

    Coarse point ``k`` lies at fine index ``first + k * step``; beyond the outermost
    coarse points the value is held constant. Shape ``(n_fine, n_coarse)``.
    """
    pos = np.clip((np.arange(n_fine) - first) / step, 0, n_coarse - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(n_coarse - 2, 0))
    w = (pos - lo).astype(np.float32)
    weights = np.zeros((n_fine, n_coarse), np.float32)
    rows = np.arange(n_fine)
    weights[rows, lo] = 1 - w
    weights[rows, np.minimum(lo + 1, n_coarse - 1)] += w
    return weights


def _linear_upsample(coarse: np.ndarray, shape: Sequence[int], first: Sequence[float],
                     step: Sequence[float]) -> np.ndarray:
    """Linear interpolation of a coarse 3D grid onto every voxel of a fine one.

    Coarse voxel ``k`` along axis ``a`` lies at fine voxel ``first[a] + k * step[a]``;
    beyond the outermost coarse voxels the value is held constant. Separable: three
    small matrix products, each writing a C-ordered array, so it costs a fraction
    of ``scipy.ndimage.zoom`` (0.1 s for 256x256x192).
    """
    wx, wy, wz = (_linear_weights(int(n), c, f, s)
                  for n, c, f, s in zip(shape, coarse.shape, first, step, strict=True))
    out = np.tensordot(wx, np.asarray(coarse, np.float32), axes=(1, 0))  # (X, cy, cz)
    out = np.matmul(wy, out)  # (X, Y, cz)
    return (out.reshape(-1, out.shape[2]) @ wz.T).reshape(tuple(int(n) for n in shape))


def n4_shrink_factors(zooms: Sequence[float], spacing_mm: float = N4_FIT_SPACING_MM,
                      ) -> tuple[int, int, int]:
    """Shrink factors, per axis, that bring voxels of ``zooms`` mm to about ``spacing_mm``.

    What :func:`n4_correct` uses by default: 8 mm, so a 1 mm scan is shrunk 8
    times (256x256x192 to 32x32x24), a 2 mm one 4 times, and a 1x1x3 mm one
    (8, 8, 3) times: the fitting grid, and hence the time and the accuracy, do
    not depend on the scan's resolution.

    Parameters
    ----------
    zooms : sequence of 3 floats
        Voxel size in mm.
    spacing_mm : float
        Target voxel size of the shrunken copy.

    Returns
    -------
    tuple of 3 int
        At least 1 each.

    Examples
    --------
    >>> n4_shrink_factors((1.0, 1.0, 1.0))
    (8, 8, 8)
    >>> n4_shrink_factors((2.0, 2.0, 2.0))
    (4, 4, 4)
    >>> n4_shrink_factors((0.9, 0.9, 3.0))
    (9, 9, 3)
    """
    return tuple(max(1, round(spacing_mm / float(z))) for z in zooms)


def n4_correct(
    data: np.ndarray,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    mask: np.ndarray | None = None,
    *,
    shrink_factor: int | None = None,
    n_iterations: Sequence[int] = N4_ITERATIONS,
    convergence_threshold: float = N4_CONVERGENCE,
    n_control_points: int = 4,
    full_resolution_field: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove the bias field with N4 (Tustison et al., 2010) in SimpleITK.

    The scanner's receive coils make the same tissue brighter in some places
    than in others: the image is the true signal times a smooth *bias field*.
    N4 estimates that field as a B-spline in log space, on a shrunken copy for
    speed, then divides the full-resolution image by it.

    Parameters
    ----------
    data : numpy.ndarray
        3D intensities, shape ``(X, Y, Z)``, non-negative.
    zooms : sequence of 3 floats
        Voxel size in mm (the B-spline spacing is in mm).
    mask : numpy.ndarray of bool, optional
        Where to fit the field (the head); defaults to :func:`head_mask`.
    shrink_factor : int, optional
        Downsampling of the image for fitting, in voxels, the same along every
        axis. By default :func:`n4_shrink_factors`: voxels of about 8 mm, which
        is 8 for a 1 mm scan (256x256x192 to 32x32x24, about 1 s of fitting on
        one core). The previous default, 4 (64x64x48 at 1 mm), takes about ten
        times as long and recovers a known field no better (see
        ``benchmarks/bench_n4.py``).
    n_iterations : sequence of int
        Iterations at each fitting level (one level per entry; each level
        doubles the B-spline resolution). The default is 3 levels of at most
        50: splines of 1, 2 and 4 spans across the image. The previous
        default, 4 levels, adds one of 8 spans (knots every 32 mm on a 256 mm
        field of view), which follows anatomy as well as the coil: on the
        benchmark's heads it lowered the correlation with the true field.
    convergence_threshold : float
        Stop a level when the field changes less than this.
    n_control_points : int
        B-spline control points per axis at the first level (SimpleITK's
        default, 4, is one cubic span across the image: a smooth field). More
        points let the field follow anatomy instead of the coil.
    full_resolution_field : bool
        Evaluate the B-spline at every voxel of ``data``, as before (about 1 s
        at 256x256x192). By default it is evaluated on the shrunken grid, where
        it was fitted, and interpolated linearly (0.06 s); see Notes.

    Returns
    -------
    corrected : numpy.ndarray of float32
        ``data / field``, same shape.
    field : numpy.ndarray of float32
        The estimated multiplicative bias field, same shape, geometric mean 1 in
        the mask.

    Raises
    ------
    ValueError
        The mask is empty.

    Notes
    -----
    The defaults were chosen with ``benchmarks/bench_n4.py``: on six heads of
    256x256x192 at 1 mm, each with a known simulated field, they give a
    correlation with the true field of 0.84 on average (worst 0.71), against
    0.79 (worst 0.58) with the previous defaults (shrink 4, 4 levels, field at
    full resolution), with the same white-matter CV after correction, in a
    tenth of the CPU time (1.4 s against 15 s on one core).

    ``full_resolution_field=True`` is what SimpleITK and ANTs do: the fitted
    spline is evaluated on the full grid, whose extent is slightly larger than
    the shrunken copy's (by up to a shrink factor of voxels), so the field is
    stretched by that much. The default evaluates it where it was fitted and
    interpolates: the two differ by 0.002 in log gain (median in the brain; at
    most 0.01), well below N4's own error against the true field (a standard
    deviation of 0.03-0.06 in the brain).

    SimpleITK runs the fit on as many threads as it is given
    (``SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads``).

    Examples
    --------
    A ball of two "tissues" under a smooth field, on a 64x64x48 grid of 4 mm
    (shrunk twice for fitting, to 8 mm):

    >>> x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in (64, 64, 48)], indexing="ij")
    >>> ball = x**2 + y**2 + z**2 < 0.8
    >>> scan = np.where(ball, np.where(x > 0, 120.0, 100.0), 0.0) * np.exp(0.2 * y)
    >>> corrected, field = n4_correct(scan, (4.0, 4.0, 4.0), ball)
    >>> corrected.shape, field.dtype
    ((64, 64, 48), dtype('float32'))
    >>> round(float(np.exp(np.log(field[ball]).mean())), 4)  # geometric mean 1
    1.0
    """
    import SimpleITK as sitk

    data = np.asarray(data, dtype=np.float32)
    if mask is None:
        mask = head_mask(data, zooms)
    if not np.any(mask):
        raise ValueError("N4 needs a non-empty mask")
    # N4 works on log intensities: keep every value strictly positive.
    floor = max(float(np.percentile(data[mask], 1)) * 1e-3, 1e-6)
    image = _reversed_sitk(np.maximum(data, np.float32(floor)), zooms)
    mask_img = _reversed_sitk(mask.astype(np.uint8), zooms)

    if shrink_factor is None:
        shrink = list(reversed(n4_shrink_factors(zooms)))  # the images' axes are reversed
    else:
        shrink = [int(shrink_factor)] * 3
    small, small_mask = sitk.Shrink(image, shrink), sitk.Shrink(mask_img, shrink)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in n_iterations])
    n4.SetConvergenceThreshold(float(convergence_threshold))
    n4.SetNumberOfControlPoints([int(n_control_points)] * 3)
    n4.Execute(small, small_mask)
    if full_resolution_field:
        log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image))
    else:
        del image
        coarse = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(small))
        # Where the shrunken voxels lie on the full grid, in full voxels (our axis order).
        first = [o / z for o, z in zip(reversed(small.GetOrigin()), zooms, strict=True)]
        log_field = _linear_upsample(coarse, data.shape, first, shrink[::-1])
    log_field -= np.float32(log_field[mask].mean())  # the field's scale is arbitrary
    bias = np.exp(log_field, out=log_field).astype(np.float32, copy=False)
    return np.divide(data, bias, dtype=np.float32), bias


def n4_ants(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    mask_file: str | os.PathLike | None = None,
    bias_file: str | os.PathLike | None = None,
    shrink_factor: int = 4,
    n_iterations: Sequence[int] = (50, 50, 50, 50),
    convergence_threshold: float = 1e-3,
    spline_distance_mm: float = 200.0,
) -> Path:
    """N4 through nipype's interface to ANTs' ``N4BiasFieldCorrection`` program.

    The same algorithm as :func:`n4_correct`, run by the ANTs binary. This is how
    most published pipelines (fMRIPrep, ANTs' own brain extraction) call it.

    Parameters
    ----------
    in_file, out_file : path-like
        Input scan and corrected output (NIfTI).
    mask_file : path-like, optional
        Where to fit the field.
    bias_file : path-like, optional
        Also write the estimated bias field here.
    shrink_factor, n_iterations, convergence_threshold
        As in :func:`n4_correct`.
    spline_distance_mm : float
        B-spline knot spacing in mm (ANTs' ``--bspline-fitting``); 200 mm is
        about one span across a head, like :func:`n4_correct`'s default.

    Returns
    -------
    pathlib.Path
        ``out_file``.

    Raises
    ------
    SkullstripError
        ANTs is not installed (``N4BiasFieldCorrection`` not on ``PATH``) or the
        program failed.
    """
    if shutil.which("N4BiasFieldCorrection") is None:
        raise SkullstripError(
            "N4BiasFieldCorrection (ANTs) not found on PATH: install ANTs "
            "(e.g. conda install -c conda-forge ants) or use n4='simpleitk'"
        )
    out_file = Path(out_file).absolute()
    n4 = _n4_ants_interface(in_file, out_file, mask_file=mask_file, bias_file=bias_file,
                            shrink_factor=shrink_factor, n_iterations=n_iterations,
                            convergence_threshold=convergence_threshold,
                            spline_distance_mm=spline_distance_mm)
    with tempfile.TemporaryDirectory() as cwd:
        try:
            n4.run(cwd=cwd)
        except Exception as exc:  # nipype wraps the program's failure in many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SkullstripError(f"{in_file}: N4BiasFieldCorrection failed ({first})") from exc
    return out_file


def _n4_ants_interface(in_file, out_file, *, mask_file, bias_file, shrink_factor, n_iterations,
                       convergence_threshold, spline_distance_mm):
    """nipype's ``N4BiasFieldCorrection`` interface set up as :func:`n4_ants` runs it."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
    from nipype.interfaces.ants import N4BiasFieldCorrection

    n4 = N4BiasFieldCorrection(
        dimension=3,
        input_image=str(Path(in_file).absolute()),
        output_image=str(Path(out_file).absolute()),
        shrink_factor=int(shrink_factor),
        n_iterations=[int(i) for i in n_iterations],
        convergence_threshold=float(convergence_threshold),
        bspline_fitting_distance=float(spline_distance_mm),
    )
    if mask_file is not None:
        n4.inputs.mask_image = str(Path(mask_file).absolute())
    if bias_file is not None:
        n4.inputs.save_bias = True
        n4.inputs.bias_image = str(Path(bias_file).absolute())
    return n4


# --------------------------------------------------------------------------- model grid
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
        Shape ``grid.shape``.
    """
    if data.shape != grid.source_shape:
        raise ValueError(f"expected shape {grid.source_shape}, got {data.shape}")
    matrix = np.linalg.inv(grid.source_affine) @ grid.affine
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
    if data.shape != grid.shape:
        raise ValueError(f"expected shape {grid.shape}, got {data.shape}")
    matrix = np.linalg.inv(grid.affine) @ grid.source_affine
    if support is None:
        return _resample(data, matrix, grid.source_shape, order, cval)
    if order != 1:
        raise ValueError("support needs linear interpolation (order=1)")
    hot = data >= support
    # np.zeros leaves the pages outside the box unwritten (the kernel's zero page):
    # only the box costs memory, whatever the scan's size.
    out = (np.zeros(grid.source_shape, np.float32) if cval == 0
           else np.full(grid.source_shape, cval, dtype=np.float32))
    if not hot.any():
        return out
    first, last = bounding_box(hot)
    scan_vox = (np.linalg.inv(matrix) @ box_corners(first - 1.0, last + 1.0).T).T[:, :3]
    start = np.clip(np.floor(scan_vox.min(axis=0)).astype(int), 0, grid.source_shape)
    stop = np.clip(np.ceil(scan_vox.max(axis=0)).astype(int) + 1, 0, grid.source_shape)
    if np.any(stop <= start):
        return out
    shift = np.eye(4)
    shift[:3, 3] = start  # the box's first voxel is scan voxel `start`
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    _resample(data, matrix @ shift, stop - start, order, cval, output=out[box])  # in place
    return out


# --------------------------------------------------------------------------- normalisation
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
    """
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
    if method == "zscore":
        inside = clipped[mask] if mask is not None else clipped
        return ((clipped - inside.mean()) / inside.std()).astype(np.float32)
    raise ValueError(f"unknown normalisation method {method!r} (zscore or minmax)")


# --------------------------------------------------------------------------- one subject
def _is_int(value: object, least: int) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= least)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and bool(np.isfinite(value)))


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of :func:`preprocess_subject` (all part of the cache key).

    Attributes
    ----------
    shape : tuple of int
        Model grid shape in voxels.
    spacing : float
        Model voxel size in mm.
    n4 : {"simpleitk", "ants", "none"}
        Bias-field correction backend, or none.
    n4_shrink, n4_iterations, n4_convergence
        See :func:`n4_correct`: shrunk to about 8 mm (None: 8 at 1 mm), 3 levels
        of at most 50 iterations, threshold 0.001 by default. The earlier
        defaults, ``n4_shrink=4, n4_iterations=(50, 50, 50, 50)``, make N4 ten
        times slower and its field no closer to the truth
        (``benchmarks/bench_n4.py``).
    normalization : {"zscore", "minmax", "none"}
        See :func:`normalize_intensity`; ``"none"`` keeps the resampled
        intensities as they are (for a normalisation done afterwards, such as
        the source article's 0-255 rescale in the book's ablation,
        :mod:`skullstrip_lib.lessons.ablation`).
    clip_percentiles : tuple of 2 floats
        See :func:`normalize_intensity`.
    interpolation : {"linear", "cubic", "nearest"}
        How the image is resampled onto the model grid (:func:`to_model_grid`,
        anti-aliased unless ``"nearest"``). Linear by default; nearest
        neighbour aliases (it keeps one scan voxel in eight at 2 mm, chapter 4)
        and is here so the book can measure what the source article's choice
        of it costs. Masks are always resampled as fraction maps.
    """

    shape: tuple[int, int, int] = MODEL_SHAPE
    spacing: float = MODEL_SPACING
    n4: Literal["simpleitk", "ants", "none"] = "simpleitk"
    n4_shrink: int | None = None
    n4_iterations: tuple[int, ...] = N4_ITERATIONS
    n4_convergence: float = N4_CONVERGENCE
    normalization: Literal["zscore", "minmax"] = "zscore"
    clip_percentiles: tuple[float, float] = field(default=(0.5, 99.5))
    interpolation: Literal["linear", "cubic", "nearest"] = "linear"

    def __post_init__(self) -> None:
        if self.n4 not in N4_BACKENDS:
            raise ValueError(f"n4 must be simpleitk, ants or none, not {self.n4!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                             f"not {self.normalization!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"not {self.interpolation!r}")
        # Every value is checked here, where it is named, rather than deep in ITK or
        # scipy (``n4_iterations: []`` in a config.yaml was an ITK RuntimeError traceback).
        if (not isinstance(self.shape, (tuple, list)) or len(self.shape) != 3
                or not all(_is_int(n, 8) for n in self.shape)):
            raise ValueError(f"preprocessing setting shape must be 3 integers of at least 8, "
                             f"got {self.shape!r}")
        if not _is_number(self.spacing) or not self.spacing > 0:
            raise ValueError(f"preprocessing setting spacing must be a positive number of mm, "
                             f"got {self.spacing!r}")
        if self.n4_shrink is not None and not _is_int(self.n4_shrink, 1):
            raise ValueError(f"preprocessing setting n4_shrink must be a positive integer or "
                             f"null, got {self.n4_shrink!r}")
        if (not isinstance(self.n4_iterations, (tuple, list)) or not self.n4_iterations
                or not all(_is_int(n, 1) for n in self.n4_iterations)):
            raise ValueError(f"preprocessing setting n4_iterations must be a non-empty list of "
                             f"positive integers (iterations per level), got "
                             f"{self.n4_iterations!r}")
        if not _is_number(self.n4_convergence) or not self.n4_convergence >= 0:
            raise ValueError(f"preprocessing setting n4_convergence must be a number >= 0, "
                             f"got {self.n4_convergence!r}")
        clip = self.clip_percentiles
        if (not isinstance(clip, (tuple, list)) or len(clip) != 2
                or not all(_is_number(c) for c in clip) or not 0 <= clip[0] < clip[1] <= 100):
            raise ValueError(f"preprocessing setting clip_percentiles must be two percentiles "
                             f"0 <= low < high <= 100, got {clip!r}")

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        """Inverse of :meth:`to_dict` (JSON and YAML give lists where tuples are kept)."""
        return from_plain(cls, d, what="preprocessing")


def output_paths(out_dir: str | os.PathLike, subject: str) -> dict[str, Path]:
    """Where :func:`preprocess_subject` writes a subject's files.

    Returns
    -------
    dict
        ``t1w`` (normalised image on the model grid, float32), ``brainmask``
        (uint8 on the model grid), ``json`` (grid, parameters, inputs; written
        last, so its presence means the subject is complete).

    Raises
    ------
    InvalidInputError
        ``subject`` is not a subject id (:data:`skullstrip_lib.datasets.SUBJECT_ID`):
        an id is a label, so the outputs always lie inside ``out_dir``.
    """
    d = Path(out_dir) / check_subject_id(subject)
    return {
        "t1w": d / f"{subject}_T1w.nii.gz",
        "brainmask": d / f"{subject}_brainmask.nii.gz",
        "json": d / f"{subject}_preproc.json",
    }


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(t1w: str | os.PathLike, brainmask: str | os.PathLike | None,
              config: PreprocessConfig) -> str:
    """A key of the inputs' contents, the parameters and the library version."""
    parts = {
        "t1w": _file_digest(Path(t1w)),
        "brainmask": None if brainmask is None else _file_digest(Path(brainmask)),
        "config": config.to_dict(),
        "version": __version__,
    }
    return settings_key(parts, length=64)


def is_complete(out_dir: str | os.PathLike, subject: str, key: str) -> bool:
    """True when a subject's outputs exist and were made from the same inputs."""
    meta_path = output_paths(out_dir, subject)["json"]
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return meta.get("cache_key") == key and all(Path(p).exists()
                                                for p in meta.get("outputs", {}).values())


def _bias_correct(scan: Scan, head: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    if config.n4 == "none":
        return scan.data
    if config.n4 == "simpleitk":
        corrected, _ = n4_correct(scan.data, scan.zooms, head, shrink_factor=config.n4_shrink,
                                  n_iterations=config.n4_iterations,
                                  convergence_threshold=config.n4_convergence)
        return corrected
    with tempfile.TemporaryDirectory() as tmp:
        src, msk, out = (Path(tmp) / n for n in ("in.nii.gz", "mask.nii.gz", "out.nii.gz"))
        nib.save(scan.image, src)
        nib.save(nib.Nifti1Image(head.astype(np.uint8), scan.affine), msk)
        # ANTs takes one factor for all axes: the one that suits the coarsest axis.
        shrink = config.n4_shrink or min(n4_shrink_factors(scan.zooms))
        n4_ants(src, out, mask_file=msk, shrink_factor=shrink,
                n_iterations=config.n4_iterations, convergence_threshold=config.n4_convergence)
        return np.asarray(nib.load(out).dataobj, dtype=np.float32)


def prepare_input(scan: Scan,
                  config: PreprocessConfig | None = None) -> tuple[np.ndarray, ModelGrid]:
    """Turn a loaded scan into the network's input: the steps shared by training and use.

    Head mask, bias-field correction (``config.n4``), the model grid placed on
    the head, resampling (``config.interpolation``: linear and anti-aliased by
    default), normalisation inside the head (``config.normalization``).
    :func:`preprocess_subject` (training data) and
    :func:`skullstrip_lib.inference.strip` (new scans) both call it, so a model
    always sees data prepared the same way.

    Nothing here takes 0 for the background: the model grid beyond the scan's
    field of view is padded with the scan's background level
    (``scan.background``), and N4, whose gain model needs intensities measured
    from the air, sees the scan minus that level. Every other step (head mask,
    resampling, normalisation) is unchanged by an intensity offset or scale, so
    ``data``, ``data - 1000`` and ``data * 0.01 + 5`` give the same input. For
    most scans the background level is exactly 0 and nothing changes.

    Parameters
    ----------
    scan : Scan
        From :func:`skullstrip_lib.io.load_scan`.
    config : PreprocessConfig, optional
        Parameters; defaults to ``PreprocessConfig()``.

    Returns
    -------
    image : numpy.ndarray of float32
        Shape ``config.shape``: the normalised image on the model grid.
    grid : ModelGrid
        The grid, which maps results back onto the scan.

    Raises
    ------
    InvalidInputError
        No head stands out from the background, or none the grid can be placed
        on. The message names the file.
    """
    config = config or PreprocessConfig()
    background = float(scan.background)
    try:
        head = head_mask(scan.data, scan.zooms)
    except ValueError as exc:
        raise InvalidInputError(scan.path, f"cannot find the head ({exc})") from None
    if not head.any():
        raise InvalidInputError(scan.path, "cannot find the head (the head mask is empty)")
    if config.n4 != "none" and background != 0:
        shifted = nib.Nifti1Image(scan.data - np.float32(background), scan.affine)
        corrected = _bias_correct(dataclasses.replace(scan, image=shifted, background=0.0),
                                  head, config)
        background = 0.0
    else:
        corrected = _bias_correct(scan, head, config)
    grid = fit_model_grid(scan.affine, scan.image.shape, head, shape=config.shape,
                          spacing=config.spacing)
    image = to_model_grid(corrected, grid, order=INTERPOLATIONS[config.interpolation],
                          cval=background)
    del corrected  # N4's full-size output, when there is one
    # The head mask is blocky anyway: no anti-aliasing needed on its way to the grid.
    head_m = to_model_grid(head, grid, antialias=False) >= 0.5
    del head
    if config.normalization != "none":
        image = normalize_intensity(image, head_m, method=config.normalization,
                                    clip_percentiles=config.clip_percentiles)
    return image, grid


def preprocess_subject(
    subject: str,
    t1w: str | os.PathLike,
    out_dir: str | os.PathLike,
    brainmask: str | os.PathLike | None = None,
    config: PreprocessConfig | None = None,
    *,
    overwrite: bool = False,
) -> dict:
    """Preprocess one subject and write it to ``out_dir/<subject>/``.

    Load and check (RAS), find the head, correct the bias field, place the
    model grid on the head, resample the image (linear, anti-aliased) and the
    mask (as a fraction map thresholded at 0.5), normalise intensities.

    Parameters
    ----------
    subject : str
        Subject id, used for the folder and file names.
    t1w : path-like
        The T1-weighted scan.
    out_dir : path-like
        Output root.
    brainmask : path-like, optional
        The reference brain mask on the scan's grid (training data); omitted
        for new scans.
    config : PreprocessConfig, optional
        Parameters; defaults to ``PreprocessConfig()``.
    overwrite : bool
        Redo a subject whose outputs exist but came from other inputs or
        parameters. Up-to-date outputs are always kept (and reported as skipped).

    Returns
    -------
    dict
        ``subject``, ``status`` ("done" or "skipped"), the output paths and
        ``seconds``.

    Raises
    ------
    SkullstripError
        Bad input (see :func:`skullstrip_lib.io.load_scan`), or stale outputs
        without ``overwrite``. Nothing is left half-written.
    """
    config = config or PreprocessConfig()
    start = time.perf_counter()
    paths = output_paths(out_dir, subject)
    for p in paths.values():  # an output over an input would delete the raw scan
        for source in (t1w, brainmask):
            if source is not None and os.path.realpath(p) == os.path.realpath(source):
                raise InvalidInputError(source, f"subject {subject}: is also one of its own "
                                                "outputs; choose another output folder")
    key = cache_key(t1w, brainmask, config)
    if is_complete(out_dir, subject, key):
        return {"subject": subject, "status": "skipped", **{k: str(p) for k, p in paths.items()},
                "seconds": 0.0}
    if paths["json"].exists() and not overwrite:
        raise SkullstripError(f"{paths['json'].parent}: holds outputs made from other inputs or "
                              "parameters (pass overwrite to redo it)")

    scan = load_scan(t1w)
    mask = load_mask(brainmask, scan) if brainmask is not None else None
    image, grid = prepare_input(scan, config)

    # Write the images first and the JSON last: the JSON marks the subject complete.
    for p in paths.values():
        p.unlink(missing_ok=True)
    atomic_save(nib.Nifti1Image(image, grid.affine), paths["t1w"])
    if mask is not None:
        mask_m = (to_model_grid(mask.astype(np.float32), grid) >= 0.5).astype(np.uint8)
        atomic_save(nib.Nifti1Image(mask_m, grid.affine), paths["brainmask"])
    else:
        paths.pop("brainmask")
    seconds = time.perf_counter() - start
    meta = {
        "subject": subject,
        "cache_key": key,
        "inputs": {"t1w": str(Path(t1w).absolute()),
                   "brainmask": None if brainmask is None else str(Path(brainmask).absolute())},
        "original": {"shape": list(scan.original_shape),
                     "affine": scan.original_affine.tolist(),
                     "axcodes": "".join(nib.aff2axcodes(scan.original_affine)),
                     "zooms_mm": [float(z) for z in scan.original_header.get_zooms()[:3]]},
        "outputs": {k: str(p) for k, p in paths.items() if k != "json"},
        "grid": grid.to_dict(),
        "config": config.to_dict(),
        "version": __version__,
        "seconds": round(seconds, 3),
    }
    atomic_write_text(paths["json"], json.dumps(meta, indent=1))
    return {"subject": subject, "status": "done", **{k: str(p) for k, p in paths.items()},
            "seconds": seconds}


# --------------------------------------------------------------------------- teaching helpers
# Used by the book's chapters on bias fields, resampling and normalisation: they
# simulate a known problem and measure how well a step removes it.
def n4_ants_command(
    in_file: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    mask_file: str | os.PathLike | None = None,
    bias_file: str | os.PathLike | None = None,
    shrink_factor: int = 4,
    n_iterations: Sequence[int] = (50, 50, 50, 50),
    convergence_threshold: float = 1e-3,
    spline_distance_mm: float = 200.0,
) -> str:
    """The command line :func:`n4_ants` would run, without running it.

    nipype builds it from the same parameters; ANTs need not be installed.

    Parameters
    ----------
    in_file, out_file, mask_file, bias_file, shrink_factor, n_iterations, \
convergence_threshold, spline_distance_mm
        As in :func:`n4_ants`. ``in_file`` and ``mask_file`` must exist (nipype
        checks its input files when they are set).

    Returns
    -------
    str
        ``N4BiasFieldCorrection --bspline-fitting [ 200 ] -d 3 --input-image ...``
    """
    return _n4_ants_interface(in_file, out_file, mask_file=mask_file, bias_file=bias_file,
                              shrink_factor=shrink_factor, n_iterations=n_iterations,
                              convergence_threshold=convergence_threshold,
                              spline_distance_mm=spline_distance_mm).cmdline


