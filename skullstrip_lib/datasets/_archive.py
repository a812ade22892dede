"""Reading the NFBS archive safely: members checked before a byte is written, files verified.

Every member of the tar stream is checked (:func:`_check_member`: a path inside
the destination, a regular file, at most :data:`MAX_MEMBER_BYTES`) and extracted
with tarfile's ``data`` filter where it exists; :class:`_Listing` pairs each
subject's three files as they appear. Every extracted file's gzip CRC-32 and
NIfTI header are checked (:func:`_check_nifti_gz`), with decompression bounded
by the largest volume :func:`skullstrip_lib.io.load_scan` accepts.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import re
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InvalidInputError
from ..io import MAX_HEADER_BYTES, current_voxel_limit
from ._paths import (
    _FILE_RE,
    NFBS_SESSION,
    nfbs_filenames,
)

_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


MAX_MEMBER_BYTES = 256 * 2**20
"""The largest archive member extracted, in bytes (checked on its tar header, before a byte
of it is written). NFBS's files are about 5 MB each; a 256x256x192 volume is 25 MB even
uncompressed, so a larger member is not an NFBS volume (a zero-filled 3 GB member would
compress to a few MB in the archive and fill the disk)."""


_FILE_CHECKS = ("gzip-crc", "nifti")  # what every extracted file passed, as recorded


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _check_member(member: tarfile.TarInfo, dest: str) -> None:
    """Raise ``tarfile.TarError`` (with a reason) if extracting *member* would be unsafe."""
    name = member.name
    if member.size > MAX_MEMBER_BYTES:
        raise tarfile.TarError(f"{member.size:,} bytes, more than the {MAX_MEMBER_BYTES:,} an "
                               "NFBS file can be")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise tarfile.TarError(f"absolute path {name!r}")
    if _HAS_DATA_FILTER:
        try:
            tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise tarfile.TarError(f"{type(exc).__name__}: {exc}") from None
        return
    # Fallback for Pythons without extraction filters (before 3.10.12 / 3.11.4).
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise tarfile.TarError(f"path {name!r} goes up with '..'")
    if member.isdev() or not (
        member.isfile() or member.isdir() or member.issym() or member.islnk()
    ):
        raise tarfile.TarError(f"special file {name!r}")
    if member.issym() or member.islnk():
        target = member.linkname
        if os.path.isabs(target) or target.startswith(("/", "\\")):
            raise tarfile.TarError(f"link {name!r} points to absolute path {target!r}")
        base = os.path.dirname(name) if member.issym() else ""
        root = os.path.realpath(dest)
        resolved = os.path.realpath(os.path.join(dest, base, target))
        if os.path.commonpath([root, resolved]) != root:
            raise tarfile.TarError(f"link {name!r} points outside to {target!r}")


def _unsafe(where: object, member: tarfile.TarInfo, exc: Exception) -> InvalidInputError:
    return InvalidInputError(
        where,
        f"refusing unsafe archive member {member.name!r} ({exc}); "
        "this is not the NFBS archive: delete it and download again",
    )


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, tmp: Path) -> None:
    if _HAS_DATA_FILTER:
        tar.extract(member, tmp, filter="data")
    else:
        tar.extract(member, tmp)


def _subject_of(name: str) -> tuple[str, str] | None:
    """(subject id, folder in the archive) for a subject's NIfTI member name, else None."""
    path = PurePosixPath(name)
    match = _FILE_RE.match(path.name)
    if match is None or path.parent.name != match["subject"]:
        return None
    return match["subject"], str(path.parent)


def _expected_names(subject: str, names: Iterable[str]) -> dict[str, str]:
    """The three file names of *subject*, with the session label found in *names*."""
    session = NFBS_SESSION
    for name in names:
        match = _FILE_RE.match(name)
        if match and match["subject"] == subject:
            session = match["session"]
            break
    return nfbs_filenames(subject, session)


def _has_all(subject: str, names: Iterable[str]) -> bool:
    names = set(names)
    return set(_expected_names(subject, names).values()) <= names


class _Listing:
    """What the members seen so far say: each subject's folder and file names, in order.

    ``complete`` lists the subjects in the order their third file appeared: the
    archive order in which :func:`fetch_nfbs` takes the first N.
    """

    def __init__(self, where: object) -> None:
        self.where = where
        self.subjects: dict[str, tuple[str, set[str]]] = {}
        self.complete: list[str] = []

    def add(self, member: tarfile.TarInfo) -> tuple[str, str] | None:
        """Record a member; return (subject, folder) if it is a subject's NIfTI file."""
        found = _subject_of(member.name)
        if found is None or member.isdir():
            return None
        subject, folder = found
        known, names = self.subjects.setdefault(subject, (folder, set()))
        if known != folder:
            raise InvalidInputError(
                self.where, f"subject {subject} appears in two folders: {known!r} and {folder!r}"
            )
        names.add(PurePosixPath(member.name).name)
        if subject not in self.complete and _has_all(subject, names):
            self.complete.append(subject)
        return found


def _progress_stream(stack: contextlib.ExitStack, archive: Path, desc: str, progressbar: bool):
    """The archive open for reading until *stack* closes, its reads counted by a progress bar."""
    from tqdm.auto import tqdm

    raw = stack.enter_context(open(archive, "rb"))  # noqa: SIM115 (the stack closes it)
    return stack.enter_context(tqdm.wrapattr(
        raw, "read", total=archive.stat().st_size, desc=desc, disable=not progressbar,
        leave=False))


def _scan_archive(archive: Path, dest: str, progressbar: bool) -> _Listing:
    """Check every member of a local archive is safe; list the subjects' files."""
    listing = _Listing(archive)
    with contextlib.ExitStack() as stack:
        stream = _progress_stream(stack, archive, "Checking NFBS", progressbar)
        try:
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|*"))
            for member in tar:
                try:
                    _check_member(member, dest)
                except tarfile.TarError as exc:
                    raise _unsafe(archive, member, exc) from None
                listing.add(member)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidInputError(
                archive,
                f"not a readable tar.gz archive ({_one_line(exc, 150)}); "
                "delete it and download again",
            ) from None
    return listing


def _extract_members(archive: Path, tmp: Path, folders: dict[str, str], progressbar: bool) -> None:
    """Extract the members under the archive *folders* (subject → folder) into *tmp*."""
    wanted = set(folders.values())
    with contextlib.ExitStack() as stack:
        stream = _progress_stream(stack, archive, "Extracting NFBS", progressbar)
        try:
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|*"))
            for member in tar:
                if member.isdir() or str(PurePosixPath(member.name).parent) not in wanted:
                    continue
                _check_member(member, str(tmp))
                _extract(tar, member, tmp)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidInputError(
                archive, f"extraction failed ({_one_line(exc, 150)}); delete it and retry"
            ) from None


class _BadFile(Exception):
    """An extracted file failed :func:`_check_nifti_gz`; the message says why."""


def _max_nifti_bytes() -> int:
    """The most a volume's ``.nii.gz`` may decompress to: a header and the largest volume
    :func:`skullstrip_lib.io.load_scan` accepts, at 8 bytes a voxel (1.06 GiB by default)."""
    return MAX_HEADER_BYTES + 8 * current_voxel_limit()


def _gzip_problem(path: Path, limit: int | None = None) -> tuple[str | None, int]:
    """Decompress a gzip file to its end, in 1 MiB pieces: (what is wrong or None, bytes).

    Reading to the end makes :mod:`gzip` compare the CRC-32 and the length in
    its trailer with the data: a cut or changed file fails. With ``limit``, a
    file that decompresses to more bytes is refused as soon as it passes it
    (a gzip bomb costs ``limit`` bytes of decompression, never memory).
    """
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += len(chunk)
                if limit is not None and total > limit:
                    return (f"decompresses to more than {limit:,} bytes, more than any volume "
                            "accepted"), total
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        return f"fails the gzip check ({_one_line(exc, 120)})", total
    return None, total


def _check_nifti_gz(path: Path) -> tuple[int, ...]:
    """Decompress a ``.nii.gz`` to its end and read its NIfTI header; return its 3D shape.

    Reading a gzip member to its end makes :mod:`gzip` compare the CRC-32 and
    the length stored in its trailer with the data: a flipped or missing byte
    fails. The header must be NIfTI-1 or -2, 3D, and the data it describes
    must fit in the decompressed bytes.
    """
    import nibabel as nib

    problem, total = _gzip_problem(path, _max_nifti_bytes())
    if problem:
        raise _BadFile(problem)
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, ValueError, OSError, EOFError) as exc:
        raise _BadFile(f"is not a NIfTI image ({_one_line(exc, 120)})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _BadFile(f"is not a NIfTI image (read as {type(img).__name__})")
    shape = tuple(int(n) for n in img.header.get_data_shape())
    if len(shape) != 3:
        raise _BadFile(f"is not a 3D volume (shape {shape})")
    proxy = img.dataobj  # where the voxels start, and their type, as read from the file
    needed = int(proxy.offset) + math.prod(shape) * np.dtype(proxy.dtype).itemsize
    if total < needed:
        raise _BadFile(f"holds {total:,} bytes but its header describes {needed:,}")
    return shape


def _check_file(path: Path, member: str, where: object, advice: str) -> tuple[int, ...]:
    try:
        return _check_nifti_gz(path)
    except _BadFile as exc:
        raise InvalidInputError(where, f"member {member!r} {exc}; {advice}") from None


def _check_shapes(subject: str, shapes: dict[str, tuple[int, ...]], where: object) -> None:
    for kind in ("brainmask", "brain"):
        if shapes[kind] != shapes["t1w"]:
            raise InvalidInputError(
                where,
                f"subject {subject}: the {kind} has shape {shapes[kind]} "
                f"but the T1w has {shapes['t1w']}",
            )
