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
import contextvars
import errno
import gzip
import math
import os
import uuid
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.minc1 import MincError
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from ._files import (
    as_tuples,
    atomic_path,
    atomic_write_text,
    check_not_an_input,
    check_writable,
    errors_named,
    file_key,
    from_plain,
    move_into_place,
    settings_key,
    to_plain,
)
from .errors import (
    InputWarning,
    InvalidInputError,
    MissingFileError,
    OutputExistsError,
)
from .validate import check_int

__all__ = [
    "BACKGROUND_PERCENTILE",
    "MAX_HEADER_BYTES",
    "MAX_VOXELS",
    "SCAN_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "Scan",
    "as_tuples",
    "atomic_path",
    "atomic_save",
    "atomic_write_text",
    "background_level",
    "check_keras_file",
    "check_mask",
    "check_not_an_input",
    "check_writable",
    "current_voxel_limit",
    "file_key",
    "from_plain",
    "image_files",
    "image_suffix",
    "load_mask",
    "load_scan",
    "move_into_place",
    "save_like",
    "settings_key",
    "to_plain",
    "voxel_limit",
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
MAX_VOXELS = 512**3
"""The most voxels a scan may declare (134,217,728, a 512x512x512 grid), by default.

Checked on the header, before any voxel is read: a scan is held as float32, so
this is 512 MiB for the working copy (plus the file's own type while it is
read). Real scans are far smaller (NFBS: 256x256x192, 12.6 million; a 0.5 mm
512x512x400 research scan: 105 million). Raise it with ``load_scan(...,
max_voxels=N)``, :func:`voxel_limit`, or ``skullstrip --max-voxels N``.
"""
MAX_HEADER_BYTES = 64 * 2**20
"""The largest offset of the voxel data from the start of a file (header and extensions), in bytes.

With the voxel limit this bounds what reading a compressed scan decompresses:
at most 64 MiB plus the declared voxels (at most 8 bytes each), whatever the
archive would expand to; nibabel reads no further than the data's end.
"""
DEFLATE_MAX_RATIO = 1032
"""gzip's deflate never expands a byte to more than about 1032 (258-byte matches
coded in 2 bits): a ``.gz`` file of ``n`` bytes cannot hold more than
``1032 * n`` bytes of data, so a header that declares more is refused as
truncated before anything is allocated."""

_VOXEL_LIMIT: contextvars.ContextVar[int] = contextvars.ContextVar("max_voxels",
                                                                   default=MAX_VOXELS)


@contextlib.contextmanager
def voxel_limit(max_voxels: int) -> Iterator[int]:
    """Within the block, scans may declare up to ``max_voxels`` voxels (default :data:`MAX_VOXELS`).

    What ``skullstrip --max-voxels N`` uses around a command; code that calls
    :func:`load_scan` itself can pass ``max_voxels`` instead. The setting is a
    context variable: it holds in this thread (and its context) only, and is
    restored when the block ends.

    Examples
    --------
    >>> with voxel_limit(600**3):
    ...     current_voxel_limit()
    216000000
    >>> current_voxel_limit() == MAX_VOXELS
    True
    """
    max_voxels = check_int(max_voxels, "max_voxels", 8)
    token = _VOXEL_LIMIT.set(max_voxels)
    try:
        yield max_voxels
    finally:
        _VOXEL_LIMIT.reset(token)


def current_voxel_limit() -> int:
    """The voxel limit in force: :data:`MAX_VOXELS` unless a :func:`voxel_limit` block says more."""
    return _VOXEL_LIMIT.get()


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


def _too_many_voxels(path: Path, shape: tuple[int, ...], max_voxels: int) -> InvalidInputError:
    n = math.prod(int(s) for s in shape)
    return InvalidInputError(
        path, f"its header declares {'x'.join(str(int(s)) for s in shape)} = {n:,} voxels, more "
              f"than the {max_voxels:,} accepted (nothing was read; if the scan is real, raise "
              "the limit: skullstrip --max-voxels N, or max_voxels=N)")


def _peek_header(path: Path, max_voxels: int) -> None:
    """Check a NIfTI or MGH header read straight from the file, before nibabel loads it.

    nibabel reads a NIfTI's extensions up to its data offset, and an MGH's
    footer past its data, on load: a forged offset or shape would make it
    decompress gigabytes before any check of ours. So the first bytes are read
    here (decompressed if gzip), parsed with nibabel's header classes, and the
    declared shape, data offset, voxel type and voxel size are checked first.
    Files that do not parse as either format are left to nibabel (which names
    what is wrong).
    """
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed below)
    except PermissionError:
        raise InvalidInputError(path, "permission denied (this user cannot read it)") from None
    name = path.name.lower()
    compressed = name.endswith((".gz", ".mgz"))
    with raw:
        try:
            stream = gzip.GzipFile(fileobj=raw) if compressed else raw
            block = stream.read(540)
        except (OSError, EOFError, zlib.error):
            return  # not gzip after all: nibabel will say what it is
    header = None
    try:
        if name.endswith((".mgz", ".mgh")):
            from nibabel.freesurfer.mghformat import MGHHeader

            header = MGHHeader(block[:MGHHeader.template_dtype.itemsize], check=False)
        elif name.endswith((".nii", ".nii.gz")) and len(block) >= 348:
            sizes = {int.from_bytes(block[:4], order) for order in ("little", "big")}
            if 540 in sizes and len(block) >= 540:
                header = nib.Nifti2Header(block[:540], check=False)
            elif 348 in sizes:
                header = nib.Nifti1Header(block[:348], check=False)
        if header is None:
            return
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
    except (ValueError, TypeError, KeyError, nib.spatialimages.HeaderDataError):
        return  # a malformed header: nibabel's load reports it
    if not shape or min(shape) < 1:
        return
    if math.prod(shape) > max_voxels:
        raise _too_many_voxels(path, shape, max_voxels)
    if dtype.kind not in "biuf":
        raise InvalidInputError(path, f"voxels of type {dtype} are not intensities")
    if offset > MAX_HEADER_BYTES:
        raise InvalidInputError(path, f"its header puts the voxel data at byte {offset:,}, "
                                      f"beyond any real header ({MAX_HEADER_BYTES:,} bytes at "
                                      "most): a corrupt or hostile file")
    needed = offset + math.prod(shape) * dtype.itemsize
    if compressed and needed > DEFLATE_MAX_RATIO * path.stat().st_size:
        raise InvalidInputError(path, f"truncated: its header declares {needed:,} bytes of "
                                      f"data but {path.stat().st_size:,} compressed bytes cannot "
                                      "hold that many")
    if isinstance(header, nib.Nifti1Header):  # Nifti2Header derives from it
        pixdim = header["pixdim"][1:4]
        if (header["qform_code"] == 0 and header["sform_code"] == 0
                and not np.all(np.isfinite(pixdim) & (pixdim != 0))):
            raise InvalidInputError(
                path, f"voxel size {' x '.join(f'{float(z):g}' for z in pixdim)} mm (pixdim) "
                      "with no qform or sform: the scan's size in mm is unknown (nibabel "
                      "would take 1 mm); fix the header's pixdim or its qform/sform")


def _read_image(path: Path, max_voxels: int | None = None) -> nib.spatialimages.SpatialImage:
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    if path.is_dir():
        raise InvalidInputError(path, f"is a folder, not a {KINDS} file")
    max_voxels = current_voxel_limit() if max_voxels is None else int(max_voxels)
    _peek_header(path, max_voxels)
    try:
        img = nib.load(path)
    except nib.filebasedimages.ImageFileError:
        raise InvalidInputError(path, f"not a {KINDS} image (nibabel cannot read it)") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError, KeyError, TypeError,
            AttributeError, MincError) as exc:  # the last two: a malformed MINC file
        raise InvalidInputError(path, f"unreadable or corrupt image header ({exc})") from None
    if not isinstance(img, nib.spatialimages.SpatialImage):
        raise InvalidInputError(path, f"not a {KINDS} image (read as {type(img).__name__})")
    # Every format (Analyze, MINC too): the declared size, before any voxel is read.
    if math.prod(img.shape) > max_voxels:
        raise _too_many_voxels(path, img.shape, max_voxels)
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
    except OSError as exc:
        if exc.errno == errno.ENOMEM:  # mapping the file failed: memory, not corruption
            raise MemoryError(str(exc)) from None
        raise InvalidInputError(path, f"truncated or corrupt image data ({exc})") from None
    except (EOFError, zlib.error, ValueError, KeyError) as exc:
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
              allow_nonfinite: bool = False, max_voxels: int | None = None) -> Scan:
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
    max_voxels : int, optional
        The most voxels the file may declare; by default :data:`MAX_VOXELS`
        (512x512x512), or what an enclosing :func:`voxel_limit` sets. Checked on
        the header before any voxel is read or memory allocated.

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
        Not an image nibabel reads, unreadable (permission denied), truncated,
        more voxels than ``max_voxels``, a data offset beyond
        :data:`MAX_HEADER_BYTES`, not 3D, a singular affine, a zero voxel size
        with no qform/sform, NaN or infinite voxels (with ``allow_nonfinite``:
        more than half of them), or all voxels equal (an empty image). The
        message names the file.

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
                 keep_dtype=keep_dtype, max_voxels=max_voxels)


def _load(path: Path, *, constant_ok: bool, nonfinite_ok: bool,
          keep_dtype: bool = False, max_voxels: int | None = None) -> Scan:
    img = _read_image(path, max_voxels)
    shape = _shape_3d(img, path)
    _check_affine(img.affine, path)
    try:
        data, ras_affine, maybe_nonfinite = _read_ras(img, shape, path, keep_dtype)
    except MemoryError as exc:  # within the voxel limit, but not this machine's memory
        raise MemoryError(f"{path}: out of memory reading its {math.prod(shape):,} voxels "
                          f"({' '.join(str(exc).split()) or 'MemoryError'})") from None
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


def check_keras_file(path: str | os.PathLike) -> Path:
    """Check that a file is a Keras 3 model file before Keras reads it; return its path.

    A ``.keras`` file is a zip archive holding ``config.json`` (the
    architecture) and the weights. Keras' own message for anything else is
    "File not found", even for a file that is there; this says what is wrong.

    Raises
    ------
    MissingFileError
        No such file.
    InvalidInputError
        A folder, unreadable, not a zip archive, or a zip without ``config.json``.
    """
    import zipfile

    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    if path.is_dir():
        raise InvalidInputError(path, "is a folder, not a Keras model file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except PermissionError:
        raise InvalidInputError(path, "permission denied (this user cannot read it)") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise InvalidInputError(path, "not a Keras model file (a .keras file is a zip "
                                      "archive; this is not one: damaged, or another kind of "
                                      "file)") from None
    if "config.json" not in names:
        raise InvalidInputError(path, "not a Keras model file (a zip archive, but without the "
                                      "config.json a .keras file holds)")
    return path


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

    Examples
    --------
    A scan and its mask stored in LPS voxel order (2 mm): the mask's first
    voxels on file (the subject's right, back) come back at the right and back
    ends of the RAS grid, where the scan's voxels are too.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    >>> scan_data = np.arange(120, dtype="float32").reshape(4, 5, 6)
    >>> nib.save(nib.Nifti1Image(scan_data, lps), folder / "t1w.nii")
    >>> mask = np.zeros((4, 5, 6), "uint8")
    >>> mask[0, 0, :3] = 1
    >>> nib.save(nib.Nifti1Image(mask, lps), folder / "mask.nii")
    >>> ras = load_mask(folder / "mask.nii", load_scan(folder / "t1w.nii"))
    >>> ras.dtype, ras.shape, np.argwhere(ras)[:, :2].tolist()
    (dtype('bool'), (4, 5, 6), [[3, 4], [3, 4], [3, 4]])
    """
    mask = _load(Path(path), constant_ok=True, nonfinite_ok=False)  # a mask has no NaN
    if not mask.data.any():
        raise InvalidInputError(path, "mask is empty (no voxel is set)")
    return check_mask(mask, scan)


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
        with errors_named(path, *temporaries):
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
