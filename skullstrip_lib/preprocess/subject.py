"""One subject's preprocessing: its settings, the steps in order, and its cached outputs.

:class:`PreprocessConfig` holds the settings (all part of the cache key);
:func:`prepare_input` turns a loaded scan into the network's input (shared by
training and use); :func:`preprocess_subject` runs it for one subject and
writes the result next to a record of its inputs (:func:`cache_key`,
:func:`is_complete`, :func:`output_paths`), so a second run skips it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from .. import __version__
from ..datasets import check_subject_id
from ..errors import InvalidInputError, SkullstripError
from ..io import (
    Scan,
    atomic_save,
    atomic_write_text,
    from_plain,
    load_mask,
    load_scan,
    settings_key,
    to_plain,
)
from .bias import (
    N4_BACKENDS,
    N4_CONVERGENCE,
    N4_ITERATIONS,
    n4_ants,
    n4_correct,
    n4_shrink_factors,
)
from .grid import (
    INTERPOLATIONS,
    MODEL_SHAPE,
    MODEL_SPACING,
    ModelGrid,
    fit_model_grid,
    to_model_grid,
)
from .headmask import head_mask
from .intensity import (
    NORMALIZATIONS,
    normalize_intensity,
)

__all__ = [
    "PreprocessConfig",
    "cache_key",
    "is_complete",
    "output_paths",
    "prepare_input",
    "preprocess_subject",
]


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

    Examples
    --------
    A bright ball on 4 mm voxels, onto a 24x32x24 grid of 4 mm: normalised
    inside the head (mean 0, standard deviation 1 there).

    >>> import tempfile
    >>> from pathlib import Path
    >>> from skullstrip_lib.io import load_scan
    >>> x, y, z = np.ogrid[:20, :24, :20]
    >>> ball = 16 * ((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2) <= 28.0**2  # radius 28 mm
    >>> path = Path(tempfile.mkdtemp()) / "ball.nii"
    >>> nib.save(nib.Nifti1Image(np.where(ball, 100.0, 5.0), np.diag([4.0, 4.0, 4.0, 1.0])), path)
    >>> image, grid = prepare_input(load_scan(path),
    ...                             PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none"))
    >>> image.shape, image.dtype.name, grid.source_shape
    ((24, 32, 24), 'float32', (20, 24, 20))
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
