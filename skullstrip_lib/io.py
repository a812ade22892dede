"""Reading scans with validation, working in RAS, and writing results back.

A scan is read once with :func:`load_scan`: the file is checked (an image
nibabel reads? 3D? mostly finite? non-empty? a usable affine?) and its voxels
are reordered to RAS (the first voxel axis runs to the subject's Right, the
second Anterior, the third Superior), as :func:`nibabel.as_closest_canonical`
does. Reordering only flips and permutes axes, so no voxel value changes and
:meth:`Scan.to_original` undoes it exactly. NIfTI (``.nii``, ``.nii.gz``),
FreeSurfer MGH (``.mgz``, ``.mgh``), Analyze (``.hdr``/``.img``) and MINC
(``.mnc``) are read. The original image class and header are kept so results
can be written on the scan's own grid, in its own format, with its affine,
qform/sform and data type (:func:`save_like`); MINC, which nibabel cannot
write, is written back as NIfTI.

NaN or infinite voxels are an error, except with
``load_scan(..., allow_nonfinite=True)`` (what ``skullstrip predict`` uses:
SPM and FSL write NaN outside the field of view after resampling): they are
then set to the scan's background level (:func:`background_level`), with a
one-line :class:`~skullstrip_lib.errors.InputWarning`, and only a scan that is
mostly non-finite is refused. Masks stay strict.

Every write in the library goes through :func:`atomic_path`: a temporary file in
the target folder, renamed into place only once complete, and never over an
existing file unless asked (:func:`atomic_save` for images, also those of two or
three files such as Analyze's, and :func:`atomic_write_text` for records are
built on it). Cached results live in folders named by :func:`settings_key`, a
hash of the settings that made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import uuid
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.minc1 import MincError
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from .errors import (
    InputWarning,
    InvalidInputError,
    MissingFileError,
    OutputExistsError,
    SkullstripError,
)

__all__ = [
    "BACKGROUND_PERCENTILE",
    "SCAN_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "Scan",
    "as_tuples",
    "atomic_path",
    "atomic_save",
    "atomic_write_text",
    "background_level",
    "check_mask",
    "from_plain",
    "image_files",
    "image_suffix",
    "load_mask",
    "load_scan",
    "save_like",
    "settings_key",
    "to_plain",
]

NIFTI_TYPES = (nib.Nifti1Image, nib.Nifti2Image)
WRITABLE_TYPES = (nib.AnalyzeImage, nib.MGHImage)
"""Image classes written back in their own format (NIfTI and its pairs derive from Analyze)."""
SCAN_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".hdr", ".img", ".mnc")
"""File endings of the scans read (a folder given to ``strip`` is searched for these)."""
WRITABLE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".hdr", ".img")
"""File endings results are written with; other scans (MINC) get ``.nii.gz``."""
PAIR_SUFFIXES = (".img", ".mat", ".hdr")
"""The files of an Analyze image (SPM adds a ``.mat`` affine), in the order they are renamed
into place: the header last, since a reader opens it first."""
BACKGROUND_PERCENTILE = 0.5
"""The background (air) level of a scan is this percentile of its finite voxels, in %.

Air fills a third or more of a head scan's field of view, so a low percentile
lands in it whatever the intensity offset or scale (0 for most scans, -1000 for
one stored with an offset), while a handful of outliers cannot move it.
"""
MAX_NONFINITE_FRACTION = 0.5
"""A scan with more NaN or infinite voxels than this fraction is refused."""


def image_suffix(path: str | os.PathLike) -> str:
    """A file's image ending: one of :data:`SCAN_SUFFIXES`, else its last suffix.

    Examples
    --------
    >>> image_suffix("sub-01_T1w.nii.gz"), image_suffix("T1.mgz"), image_suffix("x.tar.gz")
    ('.nii.gz', '.mgz', '.gz')
    """
    name = Path(path).name
    return next((s for s in SCAN_SUFFIXES if name.endswith(s)), Path(name).suffix)


def image_files(path: str | os.PathLike) -> list[Path]:
    """Every file an image written at ``path`` consists of.

    One file for NIfTI and MGH; for Analyze (``.hdr`` or ``.img``) the header,
    the data and SPM's ``.mat`` affine.
    """
    path = Path(path)
    if path.suffix in (".hdr", ".img"):
        return [path.with_suffix(s) for s in PAIR_SUFFIXES]
    return [path]


@dataclass(frozen=True)
class Scan:
    """A validated scan, reoriented to RAS, that remembers its original grid and format.

    Attributes
    ----------
    path : pathlib.Path
        The file it was read from.
    image : nibabel.Nifti1Image
        The scan in RAS voxel order, float32 data held in memory (the file's
        integer type with ``load_scan(..., keep_dtype=True)``), shape
        ``(X, Y, Z)``. Non-finite voxels hold ``background``.
    original_header : nibabel header
        A copy of the file's header (data type, qform/sform and their codes for
        NIfTI; the header of its own format otherwise).
    original_affine : numpy.ndarray
        The file's voxel-to-world affine, shape ``(4, 4)``, in mm.
    original_shape : tuple of int
        The file's 3D shape, in voxels.
    original_class : type
        The nibabel image class it was read as (``Nifti1Image``, ``MGHImage``,
        ``Spm2AnalyzeImage``, ``Minc1Image``, ...).
    background : float
        The background (air) level, :func:`background_level`, in the scan's units.
    n_nonfinite : int
        How many voxels were NaN or infinite in the file (now ``background``).
    """

    path: Path
    image: nib.Nifti1Image
    original_header: Any
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    original_class: type = nib.Nifti1Image
    background: float = 0.0
    n_nonfinite: int = 0

    @property
    def data(self) -> np.ndarray:
        """The RAS voxel array, float32 (see ``keep_dtype``), shape ``(X, Y, Z)``."""
        return np.asanyarray(self.image.dataobj)

    @property
    def affine(self) -> np.ndarray:
        """The RAS voxel-to-world affine, shape ``(4, 4)``, in mm."""
        return self.image.affine

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel size along the RAS voxel axes, in mm."""
        return tuple(float(z) for z in self.image.header.get_zooms()[:3])

    @property
    def writes_own_format(self) -> bool:
        """Whether results can go out in the scan's format (not MINC: nibabel only reads it)."""
        return issubclass(self.original_class, WRITABLE_TYPES)

    @property
    def output_suffix(self) -> str:
        """The file ending of results written for this scan: its own, or ``.nii.gz`` for MINC."""
        return image_suffix(self.path) if self.writes_own_format else ".nii.gz"

    def to_original(self, data: np.ndarray) -> np.ndarray:
        """Reorder an array on the RAS grid back to the file's voxel order.

        Parameters
        ----------
        data : numpy.ndarray
            Array of shape ``self.image.shape``.

        Returns
        -------
        numpy.ndarray
            The same values, shape ``self.original_shape``: exact, no interpolation.
        """
        if data.shape != self.image.shape:
            raise ValueError(f"expected an array of shape {self.image.shape}, got {data.shape}")
        ras = io_orientation(self.image.affine)
        original = io_orientation(self.original_affine)
        return np.ascontiguousarray(apply_orientation(data, ornt_transform(ras, original)))


KINDS = "NIfTI, MGH/MGZ, Analyze or MINC"


def _read_image(path: Path) -> nib.spatialimages.SpatialImage:
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    if path.is_dir():
        raise InvalidInputError(path, f"is a folder, not a {KINDS} file")
    try:
        img = nib.load(path)
    except nib.filebasedimages.ImageFileError:
        raise InvalidInputError(path, f"not a {KINDS} image (nibabel cannot read it)") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, KeyError, TypeError,
            AttributeError, MincError) as exc:  # the last two: a malformed MINC file
        raise InvalidInputError(path, f"unreadable or corrupt image header ({exc})") from None
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InvalidInputError(path, f"not a {KINDS} image (read as {type(img).__name__})")
    return img


def _shape_3d(img: nib.spatialimages.SpatialImage, path: Path) -> tuple[int, int, int]:
    shape = img.shape
    # 4D files with a single volume (common after some converters) are 3D in disguise.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        kind = f"{len(shape)}D" if len(shape) != 4 else f"4D with {shape[3]} volumes"
        raise InvalidInputError(path, f"expected a 3D volume, got shape {img.shape} ({kind})")
    if min(shape) < 2:
        raise InvalidInputError(path, f"expected a 3D volume, got a single slice {img.shape}")
    return tuple(int(s) for s in shape)


def _read_ras(img: nib.spatialimages.SpatialImage, shape: tuple[int, int, int],
              path: Path, keep_dtype: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """The voxels in RAS order, the RAS affine, and whether NaN/inf can occur.

    The file's own data type is read (int16 is half the size of float32) and
    converted once, straight into a C-ordered RAS array: one float32 copy of the
    volume, not three (scaled, reoriented, made contiguous). With
    ``keep_dtype`` an unscaled integer file keeps its type (native byte order).
    """
    proxy = img.dataobj
    try:
        if nib.is_proxy(proxy) and hasattr(proxy, "get_unscaled") and hasattr(proxy, "slope"):
            raw = np.asanyarray(proxy.get_unscaled()).reshape(shape)
            slope, inter = float(proxy.slope), float(proxy.inter)
        else:  # MINC's proxy scales as it reads
            raw = np.asanyarray(proxy).reshape(shape)
            slope, inter = 1.0, 0.0
    except (OSError, EOFError, zlib.error, ValueError, KeyError) as exc:
        raise InvalidInputError(path, f"truncated or corrupt image data ({exc})") from None
    if raw.dtype.kind not in "biuf":
        raise InvalidInputError(path, f"voxels of type {raw.dtype} are not intensities")
    ornt = io_orientation(img.affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        view, affine = raw, img.affine
    else:  # what nibabel.as_closest_canonical does, as a view
        view = apply_orientation(raw, ornt)
        affine = img.affine @ inv_ornt_aff(ornt, shape)
    scaled = slope != 1.0 or inter != 0.0
    keep = keep_dtype and raw.dtype.kind in "iu" and not scaled
    data = np.empty(view.shape, raw.dtype.newbyteorder("=") if keep else np.float32)
    np.copyto(data, view, casting="unsafe")
    floats = raw.dtype.kind == "f"
    del raw, view
    if slope != 1.0:
        data *= np.float32(slope)
    if inter != 0.0:
        data += np.float32(inter)
    # Integers cannot be NaN: the check (a full-size pass) is for floats and odd scalings.
    maybe_nonfinite = floats or not (np.isfinite(slope) and np.isfinite(inter))
    return data, np.asarray(affine, dtype=float), maybe_nonfinite


def _check_affine(affine: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(affine)):
        raise InvalidInputError(path, "affine contains NaN or infinite values")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InvalidInputError(path, "affine is singular (zero voxel size or collapsed axes)")


def background_level(data: np.ndarray) -> float:
    """The intensity of the air around the head: :data:`BACKGROUND_PERCENTILE` of the finite voxels.

    Computed on an evenly strided sample of about two million voxels (a view,
    no copy of the volume), so it costs a few milliseconds at any resolution.
    An intensity offset moves it with the scan (``data - 1000`` gives a level
    1000 lower), which is what makes preprocessing offset-free: padding and
    non-finite voxels get this value, not 0.

    Parameters
    ----------
    data : numpy.ndarray
        3D intensities; NaN and infinite voxels are ignored.

    Returns
    -------
    float
        In the scan's units; 0.0 if no voxel is finite.

    Examples
    --------
    >>> head = np.zeros((40, 40, 40), np.float32); head[10:30, 10:30, 10:30] = 100
    >>> background_level(head), background_level(head - 1000)
    (0.0, -1000.0)
    """
    step = max(1, round((data.size / 2e6) ** (1 / 3)))
    sample = data[::step, ::step, ::step]
    values = sample[np.isfinite(sample)]
    if values.size == 0:
        return 0.0
    return float(np.percentile(values, BACKGROUND_PERCENTILE))


def load_scan(path: str | os.PathLike, *, keep_dtype: bool = False,
              allow_nonfinite: bool = False) -> Scan:
    """Read a 3D scan, check it, and reorient it to RAS.

    Parameters
    ----------
    path : str or path-like
        A NIfTI (``.nii``, ``.nii.gz``), FreeSurfer (``.mgz``, ``.mgh``),
        Analyze (``.hdr``/``.img``) or MINC (``.mnc``; MINC2 needs h5py) file
        holding one 3D volume (a 4D file with a single volume is accepted).
    keep_dtype : bool
        Keep the voxels of an unscaled integer file in its type (``Scan.data``
        is then e.g. int16, half the memory of float32; cast before arithmetic
        that could overflow). Scaled and float files are float32 either way.
        What :func:`skullstrip_lib.inference.strip` uses: preprocessing gives the
        same result for both.
    allow_nonfinite : bool
        Set NaN and infinite voxels to the background level (with an
        :class:`~skullstrip_lib.errors.InputWarning`) instead of refusing the
        scan; more than half non-finite is refused all the same. What
        :func:`skullstrip_lib.inference.strip` uses for scans as they arrive;
        training data (:func:`skullstrip_lib.preprocess.preprocess_subject`)
        stay strict.

    Returns
    -------
    Scan
        The scan in RAS voxel order (float32 unless ``keep_dtype``) with its
        original class and header kept.

    Raises
    ------
    MissingFileError
        The file does not exist.
    InvalidInputError
        Not an image nibabel reads, truncated, not 3D, a singular affine, NaN
        or infinite voxels (with ``allow_nonfinite``: more than half of them),
        or all voxels equal (an empty image). The message names the file.

    Warns
    -----
    InputWarning
        With ``allow_nonfinite``, some voxels (at most half) were NaN or
        infinite: they are set to the background level (one line naming the
        file, the count and the percentage).

    Examples
    --------
    >>> scan = load_scan("sub-A00028185_ses-NFB3_T1w.nii.gz")  # doctest: +SKIP
    >>> nib.aff2axcodes(scan.affine)  # doctest: +SKIP
    ('R', 'A', 'S')
    """
    return _load(Path(path), constant_ok=False, nonfinite_ok=allow_nonfinite,
                 keep_dtype=keep_dtype)


def _load(path: Path, *, constant_ok: bool, nonfinite_ok: bool,
          keep_dtype: bool = False) -> Scan:
    img = _read_image(path)
    shape = _shape_3d(img, path)
    _check_affine(img.affine, path)
    data, ras_affine, maybe_nonfinite = _read_ras(img, shape, path, keep_dtype)
    n_bad, finite = 0, None
    if maybe_nonfinite:
        finite = np.isfinite(data)
        n_bad = data.size - int(np.count_nonzero(finite))
    background = background_level(data)
    if n_bad:
        share = n_bad / data.size
        if not nonfinite_ok:
            raise InvalidInputError(path, f"contains {n_bad} NaN or infinite voxels")
        if share > MAX_NONFINITE_FRACTION:
            raise InvalidInputError(path, f"{n_bad} of {data.size} voxels ({share:.0%}) are NaN "
                                          "or infinite: more than half the scan is missing")
        np.copyto(data, np.float32(background), where=np.logical_not(finite, out=finite))
        warnings.warn(f"{path}: {n_bad} NaN or infinite voxels ({share:.1%}) treated as "
                      f"background ({background:g})", InputWarning, stacklevel=3)
    if not constant_ok and data.max() == data.min():
        raise InvalidInputError(path, f"image is empty (every voxel is {data.flat[0]:g})")

    ras_img = nib.Nifti1Image(data, ras_affine)
    ras_img.header.set_xyzt_units("mm", "sec")
    return Scan(
        path=path,
        image=ras_img,
        original_header=img.header.copy(),
        original_affine=img.affine.copy(),
        original_shape=shape,
        original_class=type(img),
        background=background,
        n_nonfinite=n_bad,
    )


def check_mask(mask: Scan, scan: Scan, *, atol_mm: float = 1e-3) -> np.ndarray:
    """Check that a mask belongs to a scan and return it as a boolean RAS array.

    Parameters
    ----------
    mask, scan : Scan
        The mask and the scan, both read with :func:`load_scan`.
    atol_mm : float
        Largest difference allowed between the two affines, in mm.

    Returns
    -------
    numpy.ndarray of bool
        The mask on the scan's RAS grid, shape ``scan.image.shape``.

    Raises
    ------
    InvalidInputError
        Shapes or affines differ, the values are not binary, or the mask is empty.
    """
    if mask.original_shape != scan.original_shape:
        raise InvalidInputError(
            mask.path,
            f"mask shape {mask.original_shape} does not match image shape "
            f"{scan.original_shape} of {scan.path.name}",
        )
    if not np.allclose(mask.original_affine, scan.original_affine, atol=atol_mm):
        raise InvalidInputError(mask.path, f"mask affine does not match that of {scan.path.name}")
    values = np.unique(mask.data)
    if not np.all(np.isin(values, (0.0, 1.0))):
        raise InvalidInputError(
            mask.path, f"mask is not binary (values {values[:5].tolist()}...)"
        )
    return mask.data > 0.5


def load_mask(path: str | os.PathLike, scan: Scan) -> np.ndarray:
    """Read a binary mask that belongs to ``scan``: boolean, on the scan's RAS grid.

    Parameters
    ----------
    path : str or path-like
        A mask (any format :func:`load_scan` reads) with values 0 and 1 on the
        same grid as ``scan``; unlike a scan, any NaN or infinite voxel is an error.
    scan : Scan
        The scan the mask belongs to.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``scan.image.shape``.

    Raises
    ------
    InvalidInputError
        Any problem :func:`load_scan` reports, an all-zero mask, or a mask that
        does not match the scan (see :func:`check_mask`).
    """
    mask = _load(Path(path), constant_ok=True, nonfinite_ok=False)  # a mask has no NaN
    if not mask.data.any():
        raise InvalidInputError(path, "mask is empty (no voxel is set)")
    return check_mask(mask, scan)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """A temporary path to write to; it becomes ``path`` only if the block succeeds.

    The temporary file is hidden in the target's folder (so the final rename is
    atomic) and keeps the target's suffix (so nibabel compresses ``.nii.gz``).
    Whatever writes it creates it, so the usual permissions apply. On an
    error, or an interruption, it is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or path-like
        The destination; its folder is created if needed.
    overwrite : bool
        Replace an existing file. Without it an existing file is an error,
        checked before the block runs and again, without a race, at the rename.

    Yields
    ------
    pathlib.Path
        Where to write.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("complete")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('complete', ['notes.txt'])
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            try:  # a hard link fails if the target appeared meanwhile: no clobbering
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(
                    f"{path}: already exists (pass overwrite to replace it)") from None
            except OSError:  # file systems without hard links
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(img: nib.spatialimages.SpatialImage, path: str | os.PathLike, *,
                overwrite: bool = False) -> Path:
    """Write an image to ``path`` all at once, never leaving half a file (see :func:`atomic_path`).

    An Analyze image (``.hdr``/``.img``, with SPM's ``.mat`` when its affine
    needs one) is written under temporary names and each file renamed into
    place, the header last; with ``overwrite`` a stale ``.mat`` of an earlier
    image of that name is removed, since it would override the new affine.

    Parameters
    ----------
    img : nibabel image
        What to write.
    path : str or path-like
        Destination; its folder is created if needed. Its ending picks the
        format (as in :func:`nibabel.save`).
    overwrite : bool
        Replace an existing file. Without it an existing file is an error.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    files = image_files(path)
    if len(files) == 1:
        with atomic_path(path, overwrite=overwrite) as tmp:
            nib.save(img, tmp)
        return path
    for f in files:
        if f.exists() and not overwrite:
            raise OutputExistsError(f"{f}: already exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    temporaries = image_files(tmp)
    try:
        nib.save(img, tmp)
        for t, f in zip(temporaries, files, strict=True):
            if t.exists():
                os.replace(t, f)
            elif overwrite:
                f.unlink(missing_ok=True)
    finally:
        for t in temporaries:
            t.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file (JSON, CSV, YAML) all at once (see :func:`atomic_path`).

    A reader never sees half a file, and an interrupted write leaves the old
    file (or none) in place. Unlike :func:`atomic_save`, an existing file is
    replaced by default: these are records the library keeps up to date itself.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def settings_key(*parts: Any, length: int = 12) -> str:
    """A short hash of settings, to name the cache folder of what they make.

    The parts are serialised as sorted JSON (tuples as lists, anything else
    by ``str``), so equal settings give equal keys across runs and machines.

    Examples
    --------
    >>> settings_key({"n": 2, "seed": 0}) == settings_key({"seed": 0, "n": 2})
    True
    >>> len(settings_key("anything"))
    12
    """
    text = json.dumps(to_plain(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def to_plain(value: Any) -> Any:
    """A configuration as plain data for JSON and YAML: dataclasses as dicts, tuples as lists.

    Examples
    --------
    >>> to_plain({"shape": (48, 64, 80), "spacing": 4.0})
    {'shape': [48, 64, 80], 'spacing': 4.0}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def from_plain(cls: type, data: Mapping[str, Any], *, what: str | None = None) -> Any:
    """The inverse of :func:`to_plain` for a flat dataclass: lists become tuples again.

    Raises
    ------
    SkullstripError
        ``data`` holds a key that is not a field of ``cls`` (the message says
        "unknown <what> settings", ``what`` defaulting to the class name).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Grid:
    ...     shape: tuple = (1, 1, 1)
    >>> from_plain(Grid, {"shape": [48, 64, 80]})
    Grid(shape=(48, 64, 80))
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SkullstripError(f"unknown {what or cls.__name__} settings: {', '.join(unknown)}")
    return cls(**as_tuples(data))


def as_tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping with its list values as tuples (YAML and JSON have no tuples).

    Examples
    --------
    >>> as_tuples({"voxel_size": [1.2, 1.0, 1.0], "contrast": "t1"})
    {'voxel_size': (1.2, 1.0, 1.0), 'contrast': 't1'}
    """
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``data`` as ``dtype`` (native byte order), copying only when the type changes."""
    dtype = dtype.newbyteorder("=")
    if data.dtype == dtype:
        return data
    if np.issubdtype(dtype, np.integer) and not (data.dtype.kind in "biu"
                                                and np.can_cast(data.dtype, dtype)):
        # Integer files must not be rescaled by nibabel: values go out as they are, rounded.
        info = np.iinfo(dtype)
        rounded = np.rint(data)
        np.clip(rounded, info.min, info.max, out=rounded)
        return rounded.astype(dtype)
    return data.astype(dtype)


def save_like(data: np.ndarray, scan: Scan, path: str | os.PathLike, *,
              dtype: np.dtype | type | None = None, overwrite: bool = False) -> Path:
    """Write an array that lives on a scan's RAS grid in the scan's own space and format.

    The array is reordered back to the file's voxel order and written with the
    original header: same shape, affine, qform/sform and codes (NIfTI), the
    same header fields (MGH, Analyze). The format follows ``path``'s ending: the
    scan's own class when it matches (``.mgz`` for an MGH scan, ``.hdr``/``.img``
    for an Analyze one), else NIfTI (``.nii``/``.nii.gz``) with the scan's
    affine as both qform and sform (code 1, scanner) — how MINC scans, which
    nibabel cannot write, get their results.

    Parameters
    ----------
    data : numpy.ndarray
        Array of shape ``scan.image.shape`` (RAS order). An array already of
        the on-disk type is written without a copy when the scan is RAS.
    scan : Scan
        The scan it belongs to.
    path : str or path-like
        Destination, e.g. ``<name>_brainmask`` + ``scan.output_suffix``.
    dtype : numpy dtype, optional
        On-disk data type; defaults to the original file's. Masks use ``np.uint8``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        ``path``'s ending is neither NIfTI nor the scan's own format.
    """
    path = Path(path)
    header = scan.original_header.copy()
    dtype = np.dtype(dtype) if dtype is not None else np.dtype(header.get_data_dtype())
    suffix = image_suffix(path)
    own = (scan.writes_own_format
           and suffix.removesuffix(".gz") in scan.original_class.valid_exts)
    if not own and suffix not in (".nii", ".nii.gz"):
        raise ValueError(f"{path}: cannot write {suffix} for a {scan.original_class.__name__} "
                         "scan (write .nii.gz or its own format)")
    # Cast before reordering: the reordered copy is then of the smaller, final type.
    out = scan.to_original(_cast(data, dtype))
    if own and issubclass(scan.original_class, nib.MGHImage):
        header.set_data_dtype(dtype)
        img = nib.MGHImage(out, scan.original_affine, header)
    elif own:  # NIfTI, NIfTI pairs and Analyze
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
        img = scan.original_class(out, scan.original_affine, header)
        if isinstance(header, (nib.Nifti1Header, nib.Nifti2Header)):
            # Keep the original qform/sform (and their codes) rather than nibabel's defaults.
            img.set_qform(*scan.original_header.get_qform(coded=True))
            img.set_sform(*scan.original_header.get_sform(coded=True))
    else:  # another format's scan as NIfTI: the affine is all it keeps
        img = nib.Nifti1Image(out, scan.original_affine)
        img.set_data_dtype(dtype)
        img.set_qform(scan.original_affine, code=1)
        img.set_sform(scan.original_affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
    return atomic_save(img, path, overwrite=overwrite)
