"""Synthetic heads on disk: the NFBS folder layout and the NFBS archive.

:func:`write_nfbs_dataset` writes subjects as NFBS lays them out (one folder per
subject with its T1w, brain mask and brain), :func:`write_nfbs_archive` packs
them into an ``NFBS_Dataset.tar.gz`` like the real one. Both check every
argument (:func:`~skullstrip_lib.synth.settings.check_head_kwargs`) before
writing anything, and write byte-reproducibly and atomically.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import nibabel as nib

from ..datasets import NFBS_FOLDER, nfbs_filenames
from ..errors import OutputExistsError, SkullstripError
from ..io import atomic_path, atomic_write_text, to_plain
from ..validate import check_int
from .head import subject_id
from .settings import check_head_kwargs

__all__ = ["write_nfbs_archive", "write_nfbs_dataset"]


def _make_head():
    # Looked up on the package at call time, so that a caller (or a test) replacing
    # skullstrip_lib.synth.make_head is obeyed by the writers as well.
    from . import make_head

    return make_head


# subject_id numbers a data set's subjects with four digits.
_MAX_SUBJECTS = 10_000

#: Bumped whenever the generator's output changes, so stale datasets are detected.
_SYNTH_VERSION = 2

# --------------------------------------------------------------------------- dataset writer


def _nifti_gz_bytes(img: nib.Nifti1Image) -> bytes:
    """``img`` as the bytes of a .nii.gz file, byte-reproducibly.

    The gzip header gets mtime 0 and no file name, so the same image always
    gives the same bytes (in a folder or in an archive).
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=1) as gz:
        gz.write(img.to_bytes())
    return buffer.getvalue()


def _save_atomic(img: nib.Nifti1Image, path: Path) -> None:
    """Write ``img`` to ``path`` (.nii.gz) atomically and byte-reproducibly.

    The temporary file ends in .nii.gz and is renamed over the target only when
    complete.
    """
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(_nifti_gz_bytes(img))


def _write_json_atomic(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_nfbs_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int,
    seed: int = 0,
    *,
    progress: bool = True,
    overwrite: bool = False,
    **head_kwargs: Any,
) -> list[Path]:
    """Write synthetic subjects in the NFBS layout.

    Creates ``out_dir/NFBS_Dataset/<ID>/`` holding ``sub-<ID>_ses-NFB3_T1w.nii.gz``,
    ``..._T1w_brainmask.nii.gz`` and ``..._T1w_brain.nii.gz`` for subjects
    ``0 .. n_subjects - 1``, and ``out_dir/synth_params.json`` recording the seed,
    the head arguments and the subjects written with them.

    Parameters
    ----------
    out_dir : str or path-like
        Root folder; created if missing.
    n_subjects : int
        Number of subjects, 0 to 10000 (subjects ``0 .. n_subjects - 1``).
    seed : int
        Dataset seed (see :func:`make_head`).
    progress : bool
        Show a tqdm progress bar over subjects.
    overwrite : bool
        Regenerate subject folders that were made with other parameters instead
        of raising.
    **head_kwargs
        Passed to :func:`make_head` (shape, voxel_size, contrast, ...).

    Returns
    -------
    list of pathlib.Path
        The subject folders, in index order.

    Raises
    ------
    SkullstripError
        A subject folder exists but was not made with these parameters (or there
        is no record of how it was made) and `overwrite` is False.
    InvalidArgumentError
        *n_subjects* is not an integer from 0 to 10000 (a :class:`ValueError`).

    Notes
    -----
    Reruns are cheap and safe: a complete subject recorded in
    ``synth_params.json`` with the same seed and head arguments is skipped
    (regenerating it would give the same bytes); `n_subjects` may differ between
    runs. Every file is written atomically (temporary name + ``os.replace``).
    """
    check_head_kwargs(head_kwargs)  # every argument, before anything is written
    n_subjects = check_int(n_subjects, "n_subjects", 0, _MAX_SUBJECTS)
    out = Path(out_dir)
    root = out / "NFBS_Dataset"
    params_path = out / "synth_params.json"
    params = {
        "generator": "skullstrip_lib.synth",
        "version": _SYNTH_VERSION,
        "seed": int(seed),
        "head_kwargs": to_plain(dict(sorted(head_kwargs.items()))),
    }
    old: dict[str, Any] = {}
    if params_path.exists():
        try:
            old = json.loads(params_path.read_text())
        except (OSError, ValueError):
            old = {}
    same = all(old.get(k) == v for k, v in params.items())
    done: set[str] = set(old.get("subjects", [])) if same else set()

    ids = [subject_id(i, seed) for i in range(n_subjects)]
    folders = [root / sid for sid in ids]
    # Check every folder before writing anything, so a refusal leaves no trace.
    if not overwrite:
        for sid, folder in zip(ids, folders, strict=True):
            if folder.exists() and sid not in done:
                raise SkullstripError(
                    f"{folder}: exists and was made with other parameters; use overwrite=True"
                )

    root.mkdir(parents=True, exist_ok=True)
    record = {**params, "n_subjects": int(n_subjects), "subjects": sorted(done)}
    _write_json_atomic(record, params_path)

    iterator = range(n_subjects)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synthetic NFBS", unit="subject")
    for i in iterator:
        sid, folder = ids[i], folders[i]
        names = nfbs_filenames(sid)
        complete = all((folder / n).is_file() for n in names.values())
        if sid in done and complete:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        head = _make_head()(seed, i, **head_kwargs)
        for key, name in names.items():
            _save_atomic(getattr(head, key), folder / name)
        done.add(sid)
        record["subjects"] = sorted(done)
        _write_json_atomic(record, params_path)
    return folders


# --------------------------------------------------------------------------- archive writer


def _tar_info(name: str, size: int | None = None) -> tarfile.TarInfo:
    """A reproducible tar header: a folder (``size=None``) or a regular file.

    Owner root (0/0, no user or group name), mode 755 or 644, mtime 0: only the
    name and the contents vary, so the same heads always give the same bytes.
    """
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
        info.size = size
    return info


def write_nfbs_archive(
    path: str | os.PathLike,
    n_subjects: int,
    seed: int = 0,
    *,
    progress: bool = True,
    overwrite: bool = False,
    **head_kwargs: Any,
) -> Path:
    """Write synthetic subjects as an ``NFBS_Dataset.tar.gz`` laid out like the real one.

    The archive stands in for NFBS where the real one (1.75 GB) cannot be
    downloaded: tests and the local server that plays the NFBS address serve
    it to :func:`skullstrip_lib.datasets.fetch_nfbs`. Its members are, in
    this order: ``NFBS_Dataset/``, then for each subject ``NFBS_Dataset/<ID>/``
    followed by the subject's three files (``sub-<ID>_ses-NFB3_T1w.nii.gz``,
    ``..._T1w_brain.nii.gz``, ``..._T1w_brainmask.nii.gz``, sorted by name), so
    all of a subject's files lie together, as in a tar of folders. The heads are
    :func:`make_head`'s (the NFBS grid, 256x256x192 at 1 mm, by default) and each
    file has the bytes :func:`write_nfbs_dataset` would write.

    Parameters
    ----------
    path : str or path-like
        The archive to write, e.g. ``out/NFBS_Dataset.tar.gz``; its folder is
        created if missing.
    n_subjects : int
        Number of subjects, 1 to 10000 (subjects ``0 .. n_subjects - 1``).
    seed : int
        Dataset seed (see :func:`make_head`).
    progress : bool
        Show a tqdm progress bar over subjects.
    overwrite : bool
        Replace an existing file at *path*.
    **head_kwargs
        Passed to :func:`make_head` (shape, voxel_size, contrast, ...).

    Returns
    -------
    pathlib.Path
        *path*, absolute.

    Raises
    ------
    OutputExistsError
        *path* exists and *overwrite* is False (checked before any head is made).
    InvalidArgumentError
        *n_subjects* is not an integer from 1 to 10000 (a :class:`ValueError`).
    ValueError
        *path* is a folder.
    TypeError
        An unknown head argument.

    Notes
    -----
    Byte for byte reproducible: every gzip header (the archive's and each
    file's) has mtime 0 and no file name, every tar header owner 0:0, mode
    755/644 and mtime 0 (GNU format). The same seed and head arguments give
    the same MD5 on the same versions of NumPy, SciPy and nilearn. The file is
    written to a temporary name and renamed into place only when complete
    (:func:`skullstrip_lib.io.atomic_path`).

    Examples
    --------
    >>> import hashlib, tarfile, tempfile
    >>> small = {"shape": (32, 32, 24), "voxel_size": (8.0, 8.0, 8.0)}
    >>> out = Path(tempfile.mkdtemp())
    >>> archive = write_nfbs_archive(out / "NFBS_Dataset.tar.gz", 1, progress=False, **small)
    >>> with tarfile.open(archive) as tar:
    ...     print("\\n".join(tar.getnames()))
    NFBS_Dataset
    NFBS_Dataset/A90000000
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w.nii.gz
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w_brain.nii.gz
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w_brainmask.nii.gz
    >>> again = write_nfbs_archive(out / "again.tar.gz", 1, progress=False, **small)
    >>> hashlib.md5(archive.read_bytes()).digest() == hashlib.md5(again.read_bytes()).digest()
    True
    """
    check_head_kwargs(head_kwargs)  # every argument, before anything is written
    n_subjects = check_int(n_subjects, "n_subjects", 1, _MAX_SUBJECTS)
    target = Path(os.path.abspath(Path(path).expanduser()))
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; give the archive's file name")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: already exists (pass overwrite to replace it)")
    top = NFBS_FOLDER
    ids = [subject_id(i, seed) for i in range(n_subjects)]
    iterator = range(n_subjects)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synthetic NFBS archive", unit="subject")
    with (
        atomic_path(target, overwrite=overwrite) as tmp,
        open(tmp, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_tar_info(top))
        for i in iterator:
            sid = ids[i]
            head = _make_head()(seed, i, **head_kwargs)
            tar.addfile(_tar_info(f"{top}/{sid}"))
            files = sorted((name, key) for key, name in nfbs_filenames(sid).items())
            for name, key in files:
                data = _nifti_gz_bytes(getattr(head, key))
                tar.addfile(_tar_info(f"{top}/{sid}/{name}", len(data)), io.BytesIO(data))
    return target
