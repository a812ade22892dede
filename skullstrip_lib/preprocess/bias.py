"""Bias-field correction: N4 through SimpleITK, or through nipype's interface to ANTs.

:func:`n4_correct` fits the smooth intensity non-uniformity (the *bias field*)
with SimpleITK's N4 on a copy shrunk to voxels of about 8 mm
(:func:`n4_shrink_factors`) and divides it out at full resolution;
:func:`n4_ants` runs ANTs' ``N4BiasFieldCorrection`` through nipype when ANTs
is installed, and :func:`n4_ants_command` shows the command it would run
without running it.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._nipype import nipype_offline
from ..errors import SkullstripError
from .headmask import head_mask

__all__ = [
    "N4_BACKENDS",
    "N4_CONVERGENCE",
    "N4_FIT_SPACING_MM",
    "N4_ITERATIONS",
    "n4_ants",
    "n4_ants_command",
    "n4_correct",
    "n4_shrink_factors",
]


N4_BACKENDS = ("simpleitk", "ants", "none")
"""Bias-field correction: SimpleITK's N4, ANTs' N4 through nipype, or none."""


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

    Examples
    --------
    Skipped here: it runs ANTs' program, which this package does not install
    (``tests/test_preprocess.py`` runs it where ANTs is on ``PATH``; without it,
    :func:`n4_ants_command` shows the command).

    >>> n4_ants("sub-01_T1w.nii.gz", "sub-01_n4.nii.gz",
    ...         mask_file="sub-01_head.nii.gz")  # doctest: +SKIP
    PosixPath('/.../sub-01_n4.nii.gz')
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
    with tempfile.TemporaryDirectory() as cwd, nipype_offline():
        try:
            n4.run(cwd=cwd)
        except Exception as exc:  # nipype wraps the program's failure in many types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SkullstripError(f"{in_file}: N4BiasFieldCorrection failed ({first})") from exc
    return out_file


def _n4_ants_interface(in_file, out_file, *, mask_file, bias_file, shrink_factor, n_iterations,
                       convergence_threshold, spline_distance_mm):
    """nipype's ``N4BiasFieldCorrection`` interface set up as :func:`n4_ants` runs it."""
    with nipype_offline():  # no version check over the network, and no variable left behind
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


# A dry run of n4_ants: chapter 3 shows readers without ANTs (Colab) the command nipype
# builds from the same parameters.
def n4_ants_command(in_file: str | os.PathLike, out_file: str | os.PathLike,
                    **options: Any) -> str:
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

    Examples
    --------
    >>> import tempfile
    >>> import nibabel as nib
    >>> import numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> scan = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4))
    >>> nib.save(scan, folder / "t1w.nii.gz")
    >>> command = n4_ants_command(folder / "t1w.nii.gz", folder / "n4.nii.gz", shrink_factor=2)
    >>> command.split()[:5]
    ['N4BiasFieldCorrection', '--bspline-fitting', '[', '200', ']']
    >>> command.endswith("--shrink-factor 2"), "--convergence [ 50x50x50x50, 0.001 ]" in command
    (True, True)
    """
    try:
        call = inspect.signature(n4_ants).bind(in_file, out_file, **options)
    except TypeError as exc:  # an unknown or repeated keyword: say whose
        raise TypeError(f"n4_ants_command() {exc}") from None
    call.apply_defaults()
    return _n4_ants_interface(**call.arguments).cmdline


# n4_ants's parameters and defaults are written once, on n4_ants; help() and the API page
# show them for the dry run as well.
n4_ants_command.__signature__ = inspect.signature(n4_ants).replace(  # type: ignore[attr-defined]
    return_annotation="str")
