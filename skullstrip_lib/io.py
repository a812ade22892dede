"""Reading scans with validation, working in RAS, and writing results back.

A scan is read once with :func:`load_scan`: the file is checked (is it NIfTI?
3D? finite? non-empty? a usable affine?) and its voxels are reordered to RAS
(the first voxel axis runs to the subject's Right, the second Anterior, the
third Superior) with :func:`nibabel.as_closest_canonical`. Reordering only
flips and permutes axes, so no voxel value changes and :meth:`Scan.to_original`
undoes it exactly. The original header is kept so results can be written on the
scan's own grid, with its affine, qform/sform and data type
(:func:`save_like`).

Every write in the library goes through :func:`atomic_path`: a temporary file in
the target folder, renamed into place only once complete, and never over an
existing file unless asked (:func:`atomic_save` for images and
:func:`atomic_write_text` for records are built on it). Cached results live in
folders named by :func:`settings_key`, a hash of the settings that made them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from .errors import InvalidInputError, MissingFileError, OutputExistsError, SkullstripError

__all__ = [
    "Scan",
    "as_tuples",
    "atomic_path",
    "atomic_save",
    "atomic_write_text",
    "check_mask",
    "from_plain",
    "load_mask",
    "load_scan",
    "save_like",
    "settings_key",
    "to_plain",
]

NIFTI_TYPES = (nib.Nifti1Image, nib.Nifti2Image)


@dataclass(frozen=True)
class Scan:
    """A validated scan, reoriented to RAS, that remembers its original grid.

    Attributes
    ----------
    path : pathlib.Path
        The file it was read from.
    image : nibabel.Nifti1Image
        The scan in RAS voxel order, float32 data held in memory, shape ``(X, Y, Z)``.
    original_header : nibabel.Nifti1Header
        A copy of the file's header (data type, qform/sform and their codes).
    original_affine : numpy.ndarray
        The file's voxel-to-world affine, shape ``(4, 4)``, in mm.
    original_shape : tuple of int
        The file's 3D shape, in voxels.
    """

    path: Path
    image: nib.Nifti1Image
    original_header: nib.Nifti1Header
    original_affine: np.ndarray
    original_shape: tuple[int, int, int]

    @property
    def data(self) -> np.ndarray:
        """The RAS voxel array, float32, shape ``(X, Y, Z)``."""
        return np.asanyarray(self.image.dataobj)

    @property
    def affine(self) -> np.ndarray:
        """The RAS voxel-to-world affine, shape ``(4, 4)``, in mm."""
        return self.image.affine

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel size along the RAS voxel axes, in mm."""
        return tuple(float(z) for z in self.image.header.get_zooms()[:3])

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


def _read_nifti(path: Path) -> nib.spatialimages.SpatialImage:
    if not path.exists():
        raise MissingFileError(f"{path}: file not found")
    if path.is_dir():
        raise InvalidInputError(path, "is a folder, not a NIfTI file")
    try:
        img = nib.load(path)
    except nib.filebasedimages.ImageFileError:
        raise InvalidInputError(path, "not a NIfTI image (nibabel cannot read it)") from None
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise InvalidInputError(path, f"unreadable or corrupt NIfTI header ({exc})") from None
    if not isinstance(img, NIFTI_TYPES):
        raise InvalidInputError(path, f"not a NIfTI image (read as {type(img).__name__})")
    return img


def _read_data(img: nib.spatialimages.SpatialImage, path: Path) -> np.ndarray:
    shape = img.shape
    # 4D files with a single volume (common after some converters) are 3D in disguise.
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        kind = f"{len(shape)}D" if len(shape) != 4 else f"4D with {shape[3]} volumes"
        raise InvalidInputError(path, f"expected a 3D volume, got shape {img.shape} ({kind})")
    if min(shape) < 2:
        raise InvalidInputError(path, f"expected a 3D volume, got a single slice {img.shape}")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise InvalidInputError(path, f"truncated or corrupt image data ({exc})") from None
    return data


def _check_affine(affine: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(affine)):
        raise InvalidInputError(path, "affine contains NaN or infinite values")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InvalidInputError(path, "affine is singular (zero voxel size or collapsed axes)")


def load_scan(path: str | os.PathLike) -> Scan:
    """Read a 3D NIfTI scan, check it, and reorient it to RAS.

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file holding one 3D volume (a 4D file with a
        single volume is accepted).

    Returns
    -------
    Scan
        The scan in RAS voxel order (float32) with its original header kept.

    Raises
    ------
    MissingFileError
        The file does not exist.
    InvalidInputError
        Not NIfTI, truncated, not 3D, a singular affine, NaN or infinite
        voxels, or all voxels equal (an empty image). The message names the file.

    Examples
    --------
    >>> scan = load_scan("sub-A00028185_ses-NFB3_T1w.nii.gz")  # doctest: +SKIP
    >>> nib.aff2axcodes(scan.affine)  # doctest: +SKIP
    ('R', 'A', 'S')
    """
    return _load(Path(path), constant_ok=False)


def _load(path: Path, *, constant_ok: bool) -> Scan:
    img = _read_nifti(path)
    data = _read_data(img, path)
    _check_affine(img.affine, path)
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise InvalidInputError(path, f"contains {n_bad} NaN or infinite voxels")
    if not constant_ok and data.max() == data.min():
        raise InvalidInputError(path, f"image is empty (every voxel is {data.flat[0]:g})")

    header = img.header.copy()
    native = nib.Nifti1Image(data, img.affine, header)
    ras = nib.as_closest_canonical(native)
    ras_img = nib.Nifti1Image(
        np.ascontiguousarray(np.asanyarray(ras.dataobj), dtype=np.float32), ras.affine
    )
    ras_img.header.set_xyzt_units("mm", "sec")
    return Scan(
        path=path,
        image=ras_img,
        original_header=header,
        original_affine=img.affine.copy(),
        original_shape=tuple(int(s) for s in data.shape),
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
        A NIfTI mask with values 0 and 1 on the same grid as ``scan``.
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
    mask = _load(Path(path), constant_ok=True)
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

    Parameters
    ----------
    img : nibabel image
        What to write.
    path : str or path-like
        Destination; its folder is created if needed.
    overwrite : bool
        Replace an existing file. Without it an existing file is an error.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, tmp)
    return Path(path)


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


def save_like(data: np.ndarray, scan: Scan, path: str | os.PathLike, *,
              dtype: np.dtype | type | None = None, overwrite: bool = False) -> Path:
    """Write an array that lives on a scan's RAS grid in the scan's own space.

    The array is reordered back to the file's voxel order and written with the
    original header: same shape, affine, qform/sform and codes.

    Parameters
    ----------
    data : numpy.ndarray
        Array of shape ``scan.image.shape`` (RAS order).
    scan : Scan
        The scan it belongs to.
    path : str or path-like
        Destination ``.nii.gz``.
    dtype : numpy dtype, optional
        On-disk data type; defaults to the original file's. Masks use ``np.uint8``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    out = scan.to_original(data)
    header = scan.original_header.copy()
    dtype = np.dtype(dtype) if dtype is not None else header.get_data_dtype()
    if np.issubdtype(dtype, np.integer):
        # Integer files must not be rescaled by nibabel: values go out as they are.
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0)
    img = nib.Nifti1Image(out.astype(dtype), scan.original_affine, header)
    # Keep the original qform/sform (and their codes) rather than nibabel's defaults.
    img.set_qform(*scan.original_header.get_qform(coded=True))
    img.set_sform(*scan.original_header.get_sform(coded=True))
    return atomic_save(img, path, overwrite=overwrite)
