"""NFBS download, data directory, subject index and train/val/test split.

The Neurofeedback Skull-stripped repository (NFBS) is one archive,
``NFBS_Dataset.tar.gz`` (about 1.75 GB, 125 subjects), that unpacks to::

    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w.nii.gz            # the head
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brainmask.nii.gz  # the brain mask
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brain.nii.gz      # the skull-stripped head

:func:`fetch_nfbs` downloads it whole with :mod:`pooch` (MD5 check, retries,
progress bar), or streams it and stops once the N subjects a chapter needs are
complete (each file's gzip CRC-32 and NIfTI header checked), extracts safely
and atomically into the data directory, and records what it extracted, and how
it was verified, in ``NFBS_Dataset/.complete.json`` so that a second call does
nothing. :func:`index_dataset` pairs the three files of every subject by the
subject id in their names and assigns a seeded, subject-level split;
:func:`write_index` and :func:`read_index` store that table as CSV.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import math
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import (
    DownloadError,
    InvalidInputError,
    MissingFileError,
    OutputExistsError,
)
from .io import MAX_HEADER_BYTES, atomic_path, atomic_write_text, current_voxel_limit

if TYPE_CHECKING:  # pandas is imported by the functions that use it (a fast --help)
    import pandas as pd

__all__ = [
    "ENV_DATA_DIR",
    "ENV_NFBS_HASH",
    "ENV_NFBS_URL",
    "INDEX_COLUMNS",
    "NFBS_ARCHIVE",
    "NFBS_FOLDER",
    "NFBS_KNOWN_HASH",
    "NFBS_SIZE",
    "NFBS_URL",
    "SPLITS",
    "SUBJECT_ID",
    "IndexExistsError",
    "check_subject_id",
    "fetch_nfbs",
    "find_subjects",
    "get_data_dir",
    "index_dataset",
    "nfbs_filenames",
    "read_index",
    "split_subjects",
    "write_index",
]

NFBS_URL: str = "https://fcp-indi.s3.amazonaws.com/data/Projects/RocklandSample/NFBS_Dataset.tar.gz"
"""Public address of the NFBS archive."""

NFBS_KNOWN_HASH = "md5:06c467ac9ab6cbdb8185e6643879721d"
"""MD5 of the archive as reported by a third party (not verified by us)."""

NFBS_SIZE = 1_751_464_473
"""Size of the archive in bytes as reported by a third party (not verified by us)."""

NFBS_ARCHIVE = "NFBS_Dataset.tar.gz"
NFBS_FOLDER = "NFBS_Dataset"
ENV_DATA_DIR = "SKULLSTRIP_DATA"
ENV_NFBS_HASH = "SKULLSTRIP_NFBS_HASH"
ENV_NFBS_URL = "SKULLSTRIP_NFBS_URL"
DEFAULT_DATA_DIR = "~/skullstrip_data"
MARKER_NAME = ".complete.json"

INDEX_COLUMNS = ("subject", "t1w", "brainmask", "brain", "split")
SPLITS = ("train", "val", "test")
NFBS_SESSION = "NFB3"
_KINDS = ("t1w", "brainmask", "brain")
SUBJECT_ID = re.compile(r"[A-Za-z0-9_-]+")
"""What a subject id may be: a label of letters, digits, ``-`` and ``_``, never a path.

Output paths are built from ids (``OUT/<id>/<id>_T1w.nii.gz``): an id such as
``..``, ``""``, ``.`` or ``/data/A1/sub-A1_ses-NFB3`` would write outside the
output folder, into its root, or over the raw scan itself."""
_SUFFIX = {"t1w": "", "brainmask": "_brainmask", "brain": "_brain"}
_FILE_RE = re.compile(
    r"^sub-(?P<subject>[A-Za-z0-9]+)_ses-(?P<session>[A-Za-z0-9]+)_T1w"
    r"(?P<suffix>_brainmask|_brain)?\.nii\.gz$"
)
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
MAX_MEMBER_BYTES = 256 * 2**20
"""The largest archive member extracted, in bytes (checked on its tar header, before a byte
of it is written). NFBS's files are about 5 MB each; a 256x256x192 volume is 25 MB even
uncompressed, so a larger member is not an NFBS volume (a zero-filled 3 GB member would
compress to a few MB in the archive and fill the disk)."""
_FILE_CHECKS = ("gzip-crc", "nifti")  # what every extracted file passed, as recorded


def nfbs_filenames(subject: str, session: str = NFBS_SESSION) -> dict[str, str]:
    """The three NFBS file names of a subject: the head, its brain mask, its stripped brain.

    The one place the NFBS naming pattern is written (the index, the download
    and the synthetic data sets all use it).

    Examples
    --------
    >>> nfbs_filenames("A00028185")["brainmask"]
    'sub-A00028185_ses-NFB3_T1w_brainmask.nii.gz'
    """
    return {k: f"sub-{subject}_ses-{session}_T1w{_SUFFIX[k]}.nii.gz" for k in _KINDS}


class IndexExistsError(OutputExistsError):
    """:func:`write_index` was asked to replace an existing file without ``overwrite``."""


# --------------------------------------------------------------------------- data directory


def get_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder where datasets are stored, creating it if missing.

    The folder is, in this order: *data_dir* if given, else the environment
    variable ``SKULLSTRIP_DATA`` if set and not empty, else ``~/skullstrip_data``.
    A leading ``~`` is expanded.

    Parameters
    ----------
    data_dir : str or path-like or None
        An explicit folder; wins over the environment variable.

    Returns
    -------
    pathlib.Path
        The absolute path of the (now existing) folder.

    Raises
    ------
    InvalidInputError
        The path exists and is not a folder.

    Examples
    --------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> get_data_dir(tmp + "/data").name
    'data'
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    path = Path(os.path.abspath(Path(data_dir).expanduser()))
    if path.exists() and not path.is_dir():
        raise InvalidInputError(path, "the data directory exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- hashes


def _normalise_hash(value: str, source: str) -> str:
    """``"ABC..."`` (32 hex) → ``"md5:abc..."``; check the ``alg:hex`` form."""
    text = value.strip().lower()
    if ":" not in text:
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return f"md5:{text}"
        if re.fullmatch(r"[0-9a-f]{64}", text):
            return f"sha256:{text}"
    alg, _, digest = text.partition(":")
    if alg not in {"md5", "sha1", "sha256", "sha512"} or not re.fullmatch(r"[0-9a-f]+", digest):
        raise InvalidInputError(
            None,
            f"{source}={value!r} is not a hash like 'md5:<32 hex digits>' "
            "(or 'sha256:<64 hex digits>')",
        )
    return f"{alg}:{digest}"


def _resolve_hash(known_hash: str | None) -> tuple[str | None, str]:
    """Apply ``SKULLSTRIP_NFBS_HASH`` to the pinned default; return (hash, where from)."""
    if known_hash is None:
        return None, "known_hash=None"
    env = os.environ.get(ENV_NFBS_HASH, "").strip()
    if known_hash == NFBS_KNOWN_HASH and env:
        return _normalise_hash(env, ENV_NFBS_HASH), ENV_NFBS_HASH
    return _normalise_hash(known_hash, "known_hash"), "known_hash"


# --------------------------------------------------------------------------- the address


def _check_url(value: str, source: str) -> str:
    text = value.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in {"http", "https", "ftp"} or not parts.netloc:
        raise InvalidInputError(
            None, f"{source}={value!r} is not an http://, https:// or ftp:// address"
        )
    return text


def _resolve_url(url: str | None) -> tuple[str, str]:
    """The archive's address and where it came from: *url*, ``SKULLSTRIP_NFBS_URL``, the default."""
    if url is not None:
        return _check_url(str(url), "url"), "url"
    env = os.environ.get(ENV_NFBS_URL, "").strip()
    if env:
        return _check_url(env, ENV_NFBS_URL), ENV_NFBS_URL
    return NFBS_URL, "default"


def _source(url: str, where: str) -> str:
    """How messages name the archive: its address, and the variable it came from, if one."""
    via = f" (from {ENV_NFBS_URL})" if where == ENV_NFBS_URL else ""
    return f"{NFBS_ARCHIVE} from {url}{via}"


# --------------------------------------------------------------------------- download


class _SameBytesAgain(Exception):
    """The retry got the very same wrong bytes: retrying more cannot help."""


class _RecordingDownloader:
    """A pooch downloader that remembers the size and hash of the last attempt."""

    def __init__(
        self, url: str, known_hash: str | None, progressbar: bool, timeout: float
    ) -> None:
        import pooch

        if url.lower().startswith("ftp://"):
            self.inner = pooch.FTPDownloader(progressbar=progressbar, timeout=timeout)
        else:
            self.inner = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
        self.known_hash = known_hash
        self.alg = None if known_hash is None else known_hash.split(":", 1)[0]
        self.attempts = 0
        self.last: tuple[str | None, int] | None = None
        self._seen: set[tuple[str | None, int]] = set()

    def __call__(self, url: str, output_file: str, pooch_obj: Any, check_only: bool = False):
        import pooch

        if check_only:  # pragma: no cover - availability checks are not used here
            return self.inner(url, output_file, pooch_obj, check_only=True)
        self.attempts += 1
        self.last = None
        self.inner(url, output_file, pooch_obj)
        if self.alg is None:  # no hash to tell a cut: the gzip trailer can (pooch retries)
            problem, _ = _gzip_problem(Path(output_file))
            if problem:
                raise ValueError(_cut_message(os.path.getsize(output_file), problem))
        digest = None if self.alg is None else pooch.file_hash(output_file, alg=self.alg)
        self.last = (digest, os.path.getsize(output_file))
        if digest is not None and f"{self.alg}:{digest}" != self.known_hash:
            if self.last in self._seen:
                raise _SameBytesAgain()
            self._seen.add(self.last)
        return None


def _cut_message(size: int, problem: str) -> str:
    return (f"the download of {size:,} bytes is not a whole gzip file ({problem}), and with "
            "--known-hash none nothing else can tell: the transfer was cut or the file is "
            "damaged; nothing was kept, retry (or pin the hash)")


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _mismatch_message(
    url: str, source: str, known_hash: str, where: str, actual: str, size: int
) -> str:
    alg, expected = known_hash.split(":", 1)
    pinned = "was pinned" if where == "known_hash" else f"was pinned (via {where})"
    sizes = f"downloaded {size:,} bytes"
    if url == NFBS_URL or known_hash == NFBS_KNOWN_HASH:
        sizes += f", expected about {NFBS_SIZE:,}"
    return (
        f"{source}: {alg.upper()} is {actual} but {expected} {pinned} "
        f"({sizes}): a short size means the download was cut, retry; otherwise the archive "
        f"changed upstream — check it and rerun with --known-hash {alg}:{actual} "
        f"(or {ENV_NFBS_HASH}={alg}:{actual})"
    )


def _download(
    url: str,
    source: str,
    data_dir: Path,
    known_hash: str | None,
    where: str,
    *,
    progressbar: bool,
    retries: int,
    timeout: float,
) -> Path:
    """Fetch the whole archive into ``data_dir`` with pooch; every failure is a DownloadError.

    Pooch streams into a temporary file inside ``data_dir`` and moves it to its
    final name only once the hash matched, deleting it otherwise. An archive
    already there whose hash matches is not downloaded again.
    """
    import pooch
    import requests

    base_url = url.rsplit("/", 1)[0] + "/"
    store = pooch.create(
        path=data_dir,
        base_url=base_url,
        registry={NFBS_ARCHIVE: known_hash},
        urls={NFBS_ARCHIVE: url},
        retry_if_failed=retries,
    )
    downloader = _RecordingDownloader(url, known_hash, progressbar, timeout)
    tries = f"after {retries + 1} attempt{'s' if retries else ''}"
    archive = data_dir / NFBS_ARCHIVE
    if known_hash is None and archive.is_file():
        # pooch reuses a file it has no hash for: one cut by an earlier download (or by an
        # older version of this library, which kept it) would then fail for ever. Only a
        # whole gzip file is reused; another is deleted and downloaded again.
        problem, _ = _gzip_problem(archive)
        if problem:
            _report(progressbar, f"{archive}: {problem}: not reused, downloading it again")
            archive.unlink()
    try:
        path = store.fetch(NFBS_ARCHIVE, downloader=downloader, progressbar=progressbar)
    except (ValueError, _SameBytesAgain) as exc:
        last = downloader.last
        if known_hash is not None and last is not None and last[0] is not None:
            raise DownloadError(
                _mismatch_message(url, source, known_hash, where, last[0], last[1])
            ) from None
        raise DownloadError(f"{source}: {_one_line(exc)}") from exc
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        status = "" if response is None else f"HTTP {response.status_code} {response.reason}"
        raise DownloadError(
            f"{source}: download failed {tries}: {status or _one_line(exc)}; "
            "check the address or retry later"
        ) from None
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        raise DownloadError(
            f"{source}: download failed {tries}: the connection closed "
            f"before the whole file arrived ({_one_line(exc, 150)}); retry later"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(
            f"{source}: download failed {tries}: "
            f"{type(exc).__name__}: {_one_line(exc, 200)}; check the network and retry"
        ) from None
    except OSError as exc:
        raise DownloadError(
            f"{source}: could not save it in {data_dir}: {_one_line(exc, 200)}"
        ) from None
    return Path(path)


# --------------------------------------------------------------------------- safe extraction


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


def _open_progress(archive: Path, desc: str, progressbar: bool):
    from tqdm.auto import tqdm

    raw = open(archive, "rb")  # noqa: SIM115 (closed by the caller's ExitStack)
    size = archive.stat().st_size
    return raw, tqdm.wrapattr(
        raw, "read", total=size, desc=desc, disable=not progressbar, leave=False
    )


def _scan_archive(archive: Path, dest: str, progressbar: bool) -> _Listing:
    """Check every member of a local archive is safe; list the subjects' files."""
    listing = _Listing(archive)
    with contextlib.ExitStack() as stack:
        raw, wrapped = _open_progress(archive, "Checking NFBS", progressbar)
        stack.enter_context(raw)
        stream = stack.enter_context(wrapped)
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
        raw, wrapped = _open_progress(archive, "Extracting NFBS", progressbar)
        stack.enter_context(raw)
        stream = stack.enter_context(wrapped)
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


# --------------------------------------------------------------------------- checking the files


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


# --------------------------------------------------------------------------- the record


def _read_marker(dest: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("subjects"), list):
        return None
    available = marker.get("available")
    if available is not None and not isinstance(available, list):
        return None
    return marker


def _subject_complete(dest: Path, subject: str) -> bool:
    folder = dest / subject
    names = _expected_names(subject, (p.name for p in folder.glob("sub-*.nii.gz")))
    return all((folder / name).is_file() for name in names.values())


class _Record:
    """``NFBS_Dataset/.complete.json``: the subjects on disk and how each was verified.

    ``verified`` maps each subject to the checks it passed: ``"md5:<hex>"`` (the
    whole archive's hash, when it was checked), ``"gzip-crc"`` and ``"nifti"``
    (every file, see :func:`_check_nifti_gz`); None for subjects recorded by an
    older version. ``available`` lists the archive's subjects once the whole
    archive has been read, None before.
    """

    def __init__(self, dest: Path, url: str) -> None:
        self.dest = dest
        marker = _read_marker(dest) or {}
        old = marker.get("verified")
        old = old if isinstance(old, dict) else {}
        self.verified: dict[str, list[str] | None] = {
            s: old.get(s) for s in marker.get("subjects", []) if _subject_complete(dest, s)
        }
        self.available: list[str] | None = marker.get("available")
        self.known_hash: str | None = marker.get("known_hash")
        self.url = url

    def add(self, subject: str, folder: Path, checks: list[str], trash: Path) -> None:
        """Move a complete, checked subject *folder* into place and record it."""
        target = self.dest / subject
        self.dest.mkdir(exist_ok=True)
        if target.exists() or target.is_symlink():  # stale: not in the record
            trash.mkdir(exist_ok=True)
            os.replace(target, trash / subject)
        os.replace(folder, target)
        self.verified[subject] = checks
        self.save()

    def save(self) -> None:
        record = {
            "archive": NFBS_ARCHIVE,
            "url": self.url,
            "known_hash": self.known_hash,
            "available": None if self.available is None else sorted(self.available),
            "subjects": sorted(self.verified),
            "verified": {s: self.verified[s] for s in sorted(self.verified)},
        }
        atomic_write_text(self.dest / MARKER_NAME, json.dumps(record, indent=1) + "\n")


def _too_many(n_subjects: int, count: int) -> InvalidInputError:
    return InvalidInputError(
        None, f"n_subjects={n_subjects} but the NFBS archive has {count} subjects"
    )


def _report(progressbar: bool, text: str) -> None:
    """The closing summary, with the progress bars (on stderr), for the chapters and the CLI."""
    if progressbar:
        print(text, file=sys.stderr)


# --------------------------------------------------------------------------- the whole archive


def _from_archive(
    archive: Path,
    record: _Record,
    data_dir: Path,
    n_subjects: int | None,
    archive_hash: str | None,
    progressbar: bool,
) -> list[str]:
    """Extract the missing subjects from a local, verified archive; return them."""
    done = set(record.verified)
    tmp = Path(tempfile.mkdtemp(prefix=".nfbs-extract-", dir=data_dir))
    try:
        listing = _scan_archive(archive, str(tmp), progressbar)
        if not listing.subjects:
            raise InvalidInputError(archive, "contains no NFBS subject files")
        record.available = sorted(listing.subjects)
        if n_subjects is None:
            needed = [s for s in record.available if s not in done]
        else:
            if n_subjects > len(listing.complete):
                raise _too_many(n_subjects, len(listing.complete))
            new = [s for s in listing.complete if s not in done]
            needed = new[: max(n_subjects - len(done), 0)]
        for subject in needed:
            folder, names = listing.subjects[subject]
            for kind, name in _expected_names(subject, names).items():
                if name not in names:
                    raise MissingFileError(
                        f"{archive}: subject {subject} has no {kind} file ({folder}/{name})"
                    )
        _extract_members(
            archive, tmp, {s: listing.subjects[s][0] for s in needed}, progressbar
        )
        advice = "the archive is damaged: delete it and download again"
        for subject in needed:  # check every extracted file before moving anything
            folder, names = listing.subjects[subject]
            shapes = {}
            for kind, name in _expected_names(subject, names).items():
                path = tmp / folder / name
                if not path.is_file():
                    raise MissingFileError(
                        f"{archive}: subject {subject}: {kind} file {name} was not extracted"
                    )
                shapes[kind] = _check_file(path, f"{folder}/{name}", archive, advice)
            _check_shapes(subject, shapes, archive)
        checks = [*([archive_hash] if archive_hash else []), *_FILE_CHECKS]
        for subject in needed:
            record.add(subject, tmp / listing.subjects[subject][0], checks, tmp / ".replaced")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return needed


# --------------------------------------------------------------------------- streaming


class _Retry(Exception):
    """The transfer failed in a way another attempt may fix (cut, reset, timeout, HTTP 5xx).

    Raised with the reason; :func:`_stream_once` adds the subjects it completed and the
    bytes it read: ``(reason, added, count)``.
    """


class _HTTPReader:
    """A response body as a file for tarfile: counts bytes, feeds the bar, detects cuts.

    Any error while reading, and an end of data before the announced
    ``Content-Length``, becomes :class:`_Retry`.
    """

    def __init__(self, response: Any, bar: Any, timeout: float) -> None:
        self.response = response
        length = response.headers.get("Content-Length", "")
        self.length = int(length) if length.strip().isdigit() else None
        self.count = 0
        self.eof = False
        self.bar = bar
        self.timeout = timeout
        self.member = ""  # the member being read, for the messages

    def _where(self) -> str:
        inside = f", at member {self.member!r}" if self.member else ""
        of = "" if self.length is None else f" of {self.length:,}"
        return f"after {self.count:,}{of} bytes{inside}"

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.response.read(None if size is None or size < 0 else size)
        except TimeoutError:
            raise _Retry(f"no data for {self.timeout:g} s {self._where()}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Retry(
                f"the transfer failed {self._where()} ({type(exc).__name__}: "
                f"{_one_line(exc, 120)})"
            ) from None
        if not data and size != 0:
            self.eof = True
            if self.length is not None and self.count < self.length:
                raise _Retry(f"the connection closed {self._where()}")
        self.count += len(data)
        self.bar.update(len(data))
        return data


def _open_stream(url: str, source: str, timeout: float) -> Any:
    """GET *url*; HTTP 4xx is a DownloadError, anything another attempt may fix is _Retry."""
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=timeout)  # the scheme was checked
    except urllib.error.HTTPError as exc:
        exc.close()
        status = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500 or exc.code in {408, 429}:
            raise _Retry(status) from None
        raise DownloadError(f"{source}: download failed: {status}; check the address") from None
    except TimeoutError:
        raise _Retry(f"no answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _Retry(f"no answer within {timeout:g} s") from None
        raise _Retry(f"cannot connect ({_one_line(reason, 150)})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _Retry(f"{type(exc).__name__}: {_one_line(exc, 150)}") from None


def _stream_once(
    url: str,
    source: str,
    record: _Record,
    data_dir: Path,
    need: int,
    *,
    progressbar: bool,
    timeout: float,
) -> tuple[list[str], _Listing | None, tuple[int, int | None]]:
    """One GET: extract, check and move the first *need* new complete subjects.

    Returns the subjects added; if the whole archive went by, its listing (None
    when the stream was closed early, the N subjects being complete); and the
    bytes read with the announced length (None if none).
    Raises _Retry when the transfer failed; subjects completed before that
    stay in place (each is moved as soon as its three files are checked).
    """
    from tqdm.auto import tqdm

    added: list[str] = []
    listing = _Listing(source)
    files: dict[str, dict[str, tuple[int, ...]]] = {}  # subject → {name: shape} extracted
    reader = None
    advice = "the archive at this address is damaged or not NFBS"
    tmp = Path(tempfile.mkdtemp(prefix=".nfbs-stream-", dir=data_dir))
    try:
        with contextlib.ExitStack() as stack:
            response = stack.enter_context(_open_stream(url, source, timeout))
            reader = _HTTPReader(response, None, timeout)
            reader.bar = stack.enter_context(
                tqdm(
                    total=reader.length, desc=f"Streaming NFBS ({need} subjects)", unit="B",
                    unit_scale=True, unit_divisor=1024, disable=not progressbar, leave=False,
                )
            )  # fmt: skip
            try:
                tar = stack.enter_context(tarfile.open(fileobj=reader, mode="r|gz"))
                for member in tar:
                    reader.member = member.name
                    try:
                        _check_member(member, str(tmp))
                    except tarfile.TarError as exc:
                        raise _unsafe(source, member, exc) from None
                    found = listing.add(member)
                    if found is None or found[0] in record.verified:
                        continue  # a folder, another file, or a subject already on disk
                    subject, folder = found
                    if not member.isfile():
                        raise InvalidInputError(
                            source, f"member {member.name!r} is not a regular file; {advice}"
                        )
                    _extract(tar, member, tmp)
                    reader.member = ""
                    path = tmp.joinpath(*PurePosixPath(member.name).parts)
                    shape = _check_file(path, member.name, source, advice)
                    got = files.setdefault(subject, {})
                    got[path.name] = shape
                    if not _has_all(subject, got):
                        continue
                    names = _expected_names(subject, got)
                    _check_shapes(subject, {k: got[n] for k, n in names.items()}, source)
                    record.add(subject, tmp / folder, list(_FILE_CHECKS), tmp / ".replaced")
                    added.append(subject)
                    if len(added) == need:  # closing the response ends the transfer
                        return added, None, (reader.count, reader.length)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                if reader.eof and reader.length is None:  # no Content-Length to tell a cut
                    raise _Retry(f"the data ended {reader._where()}") from None
                raise InvalidInputError(
                    source, f"not a readable tar.gz archive ({_one_line(exc, 150)}); {advice}"
                ) from None
            if reader.length is None:  # the end of the archive, or a cut: no way to tell
                raise _Retry(
                    f"the data ended {reader._where()} and the server sent no length, so "
                    "whether the archive is complete cannot be told"
                )
    except _Retry as exc:
        raise _Retry(exc.args[0], added, 0 if reader is None else reader.count) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return added, listing, (reader.count, reader.length)


def _stream(
    url: str,
    source: str,
    record: _Record,
    data_dir: Path,
    n_subjects: int,
    *,
    progressbar: bool,
    retries: int,
    timeout: float,
) -> tuple[list[str], tuple[int, int | None]]:
    """Stream until *n_subjects* subjects are on disk; return those added, (bytes read, size).

    The bytes read are summed over all attempts.
    """
    added: list[str] = []
    failures = 0
    read = 0
    while True:
        need = n_subjects - len(record.verified)
        try:
            new, listing, (count, length) = _stream_once(
                url, source, record, data_dir, need, progressbar=progressbar, timeout=timeout
            )
        except _Retry as exc:
            _, new, count = exc.args
            added += new
            read += count
            if not new:  # an attempt that added a subject does not use up a retry
                failures += 1
            if failures > retries:
                kept = len(record.verified)
                raise DownloadError(
                    f"{source}: download failed after {failures} failed attempt"
                    f"{'s' if failures != 1 else ''}: {exc.args[0]}; {kept} complete "
                    f"subject{'s are' if kept != 1 else ' is'} on disk, rerun to fetch the rest"
                ) from None
            time.sleep(min(failures, 10))
            continue
        added += new
        read += count
        if listing is not None:  # the whole archive went by
            record.available = sorted(listing.subjects)
            if record.verified:
                record.save()
            if len(record.verified) < n_subjects:
                raise _too_many(n_subjects, len(listing.complete))
        return added, (read, length)


# --------------------------------------------------------------------------- fetch


def fetch_nfbs(
    data_dir: str | os.PathLike | None = None,
    *,
    n_subjects: int | None = None,
    url: str | None = None,
    known_hash: str | None = NFBS_KNOWN_HASH,
    keep_archive: bool = True,
    progressbar: bool = True,
    retries: int = 2,
    timeout: float = 60.0,
) -> Path:
    """Download and extract NFBS, or only the subjects you need; return ``NFBS_Dataset``.

    Two ways, and what each verifies:

    * ``n_subjects=None`` (all 125 subjects): the whole archive (1.75 GB) is
      downloaded with :mod:`pooch` into *data_dir* (retries, progress bar) and
      its **MD5** is compared with *known_hash* before it is moved to its final
      name. Its members are then extracted and every file is checked (below).
    * ``n_subjects=N``: the archive is **streamed** (one HTTP GET read through
      a gzip + tar stream reader) and the transfer is closed as soon as N
      subjects are complete, so only their share of the archive travels (in
      archive order, a subject's three files lie together). The archive's MD5
      is **not** checked: it needs every byte. Instead each file is checked
      as it arrives: decompressed to its end, so that :mod:`gzip` compares
      its CRC-32 and length with the data, then its NIfTI header is read
      (nibabel; 3D; the data fit) and the mask's and brain's shapes must
      equal the T1w's. Nothing of the archive is stored. If the archive is
      already in *data_dir* (an earlier whole download), it is used instead,
      with its hash checked (one that fails is downloaded again, whole).

    Which N subjects: those already on disk (recorded, all three files
    there) count, and the rest are the first complete subjects in archive
    order that are not on disk yet. Each complete subject is extracted with
    the tarfile ``data`` filter into a temporary folder inside *data_dir*,
    after every member was checked to be safe (no absolute paths, no ``..``,
    no links pointing outside, no devices), and moved into
    ``data_dir/NFBS_Dataset/`` with :func:`os.replace`; then
    ``NFBS_Dataset/.complete.json`` records it with the checks it passed
    (``"md5:<hex>"``, ``"gzip-crc"``, ``"nifti"``). A call whose subjects are
    all recorded returns at once; a later, larger call adds only the missing
    ones. After a failure or an interruption no half-written file or folder
    is left: a subject is either complete and recorded or absent.

    Parameters
    ----------
    data_dir : str or path-like or None
        Where to store the data; see :func:`get_data_dir`.
    n_subjects : int or None
        How many subjects to have on disk; None means all of them (and the
        whole archive with its MD5 check).
    url : str or None
        Address of the archive (``http://``, ``https://`` or ``ftp://``). None
        takes the environment variable ``SKULLSTRIP_NFBS_URL`` if set and not
        empty (a mirror, or a local server), else :data:`NFBS_URL`.
    known_hash : str or None
        Expected hash of the whole archive, ``"md5:<hex>"``. The pinned default
        can be replaced with the environment variable ``SKULLSTRIP_NFBS_HASH``;
        None skips the check (an explicit opt-out). Not used when streaming.
    keep_archive : bool
        Keep the whole archive after a successful extraction (False deletes it;
        the record still lets later calls skip the download). A stream stores
        no archive.
    progressbar : bool
        Show progress bars (bytes read) and, at the end, one line on what was
        fetched and how it was verified.
    retries : int
        How many failed attempts to retry (waiting 1 s, 2 s, ...). A stream
        re-opens the address and skips the subjects already complete; an
        attempt that added a subject before failing is not counted.
    timeout : float
        Seconds to wait for the server to answer or send more data.

    Returns
    -------
    pathlib.Path
        ``data_dir/NFBS_Dataset``.

    Raises
    ------
    DownloadError
        Network or HTTP error, a transfer cut or stalled (after the retries),
        or a hash mismatch (the message gives the actual hash, the size and how
        to proceed). Complete subjects fetched before a failure are kept.
    InvalidInputError
        The archive is not a readable tar.gz, has an unsafe member, or a file
        fails its check (the message names the member); or an argument is
        invalid (*n_subjects* not positive or larger than the number of
        subjects, *retries* negative, *timeout* not positive, *known_hash* or
        *url* malformed). It is a :class:`ValueError`.
    MissingFileError
        Whole archive: a subject in it lacks one of its three files.

    Examples
    --------
    >>> root = fetch_nfbs(n_subjects=3)  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
    ['.complete.json', 'A00028185']
    """
    if n_subjects is not None and (
        isinstance(n_subjects, bool)
        or not isinstance(n_subjects, (int, np.integer))
        or n_subjects < 1
    ):
        raise InvalidInputError(
            None, f"n_subjects must be a positive integer or None, got {n_subjects!r}"
        )
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise InvalidInputError(None, f"retries must be an integer >= 0, got {retries!r}")
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise InvalidInputError(None, f"timeout must be a positive number of seconds, "
                                      f"got {timeout!r}")  # fmt: skip
    url, url_from = _resolve_url(url)
    source = _source(url, url_from)
    resolved_hash, where = _resolve_hash(known_hash)  # checked even when not used (a stream)
    data_dir = get_data_dir(data_dir)
    dest = data_dir / NFBS_FOLDER
    record = _Record(dest, url)
    done = set(record.verified)
    available = record.available
    if n_subjects is None:
        if available is not None and set(available) <= done:
            return dest
    else:
        if len(done) >= n_subjects:
            return dest
        if available is not None and n_subjects > len(available):
            raise _too_many(n_subjects, len(available))

    archive = data_dir / NFBS_ARCHIVE
    if n_subjects is not None and not archive.is_file():
        added, (read, size) = _stream(url, source, record, data_dir, n_subjects,
                                      progressbar=progressbar, retries=retries,
                                      timeout=timeout)  # fmt: skip
        share = f"{read:,} bytes" if not size else f"{read:,} of {size:,} bytes, {read / size:.0%}"
        _report(progressbar, f"NFBS: {len(added)} subject(s) streamed from {url} into {dest} "
                f"(read {share}), {len(record.verified)} on disk; each file passed its gzip "
                "CRC-32 and NIfTI header checks; the archive's MD5 was not checked (it needs "
                "the whole archive)")  # fmt: skip
        return dest

    archive = _download(url, source, data_dir, resolved_hash, where,
                        progressbar=progressbar, retries=retries, timeout=timeout)  # fmt: skip
    if resolved_hash is not None:
        record.known_hash = resolved_hash
    added = _from_archive(archive, record, data_dir, n_subjects, resolved_hash, progressbar)
    if not added and record.verified:
        record.save()  # the archive's subjects are known now
    hashed = "its hash was not checked" if resolved_hash is None else f"its {resolved_hash} matched"
    _report(progressbar, f"NFBS: {len(added)} subject(s) extracted from {archive} ({hashed}) "
            f"into {dest}, {len(record.verified)} on disk; each file passed its gzip CRC-32 and "
            "NIfTI header checks")  # fmt: skip
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- index and split


def _resolve_root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise MissingFileError(f"{path}: no such folder (expected the NFBS_Dataset folder)")
    if (path / NFBS_FOLDER).is_dir():
        path = path / NFBS_FOLDER
    return Path(os.path.abspath(path))


def _scan_files(root: Path) -> dict[str, dict[str, Any]]:
    """{subject: {"session": label, "folder": Path, kind: Path, ...}} from the file names."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("*/sub-*.nii.gz")):
        match = _FILE_RE.match(path.name)
        if match is None:
            continue
        subject = match["subject"]
        if path.parent.name != subject:
            raise InvalidInputError(
                path, f"names subject {subject} but lies in folder {path.parent.name}"
            )
        kind = {s: k for k, s in _SUFFIX.items()}[match["suffix"] or ""]
        entry = found.setdefault(subject, {"session": match["session"], "folder": path.parent})
        if kind in entry:
            raise InvalidInputError(
                path, f"subject {subject} has two {kind} files: {entry[kind].name} and {path.name}"
            )
        entry[kind] = path
    return found


def find_subjects(root: str | os.PathLike) -> list[str]:
    """List the subject ids that have at least one NFBS file under *root*.

    Parameters
    ----------
    root : str or path-like
        The ``NFBS_Dataset`` folder or the folder containing it.

    Returns
    -------
    list of str
        Sorted subject ids, parsed from the file names
        (``<ID>/sub-<ID>_ses-NFB3_T1w*.nii.gz``).

    Raises
    ------
    MissingFileError
        *root* is not a folder.

    Examples
    --------
    >>> find_subjects("~/skullstrip_data")  # doctest: +SKIP
    ['A00028185', 'A00028352', ...]
    """
    return sorted(_scan_files(_resolve_root(root)))


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fracs = tuple(float(f) for f in fractions)
    if len(fracs) != len(SPLITS):
        raise InvalidInputError(
            None, f"fractions must give (train, val, test), got {len(fracs)} values: {fractions!r}"
        )
    if any(not math.isfinite(f) or f < 0 for f in fracs):
        raise InvalidInputError(None, f"fractions must be finite and >= 0, got {fractions!r}")
    if not math.isclose(sum(fracs), 1.0, rel_tol=0, abs_tol=1e-6):
        raise InvalidInputError(
            None, f"fractions must sum to 1, got {fractions!r} (sum {sum(fracs):g})"
        )
    return fracs


def _split_counts(n: int, fracs: Sequence[float]) -> list[int]:
    """Largest-remainder rounding, then at least one per non-zero fraction if possible."""
    raw = [n * f for f in fracs]
    counts = [math.floor(r + 1e-9) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    nonzero = [i for i, f in enumerate(fracs) if f > 0]
    if n >= len(nonzero):
        for i in nonzero:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def split_subjects(
    subjects: Iterable[str],
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> pd.Series:
    """Assign each subject to ``"train"``, ``"val"`` or ``"test"``, seeded.

    The subjects are sorted before a seeded permutation, so the same ids and
    seed give the same split whatever the input order. Counts round the
    fractions by the largest remainder (125 subjects → 87/19/19 for
    0.7/0.15/0.15), and every non-zero fraction gets at least one subject when
    there are enough subjects.

    Parameters
    ----------
    subjects : iterable of str
        Subject ids, without duplicates.
    fractions : sequence of 3 floats
        Train, validation and test fractions; non-negative, summing to 1.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    pandas.Series
        Split name per subject, indexed by the sorted subject ids.

    Raises
    ------
    InvalidInputError
        Duplicate subjects, or fractions that are not three non-negative
        numbers summing to 1. It is a :class:`ValueError`.

    Examples
    --------
    >>> ids = [f"A{i:08d}" for i in range(125)]
    >>> split = split_subjects(ids, seed=0)
    >>> split.value_counts().reindex(["train", "val", "test"]).tolist()
    [87, 19, 19]
    >>> split.equals(split_subjects(ids[::-1], seed=0))
    True
    """
    import pandas as pd

    fracs = _check_fractions(fractions)
    ids = [str(s) for s in subjects]
    if len(set(ids)) != len(ids):
        dups = sorted({s for s in ids if ids.count(s) > 1})
        raise InvalidInputError(None, f"duplicate subject ids: {', '.join(dups[:5])}")
    ids.sort()
    counts = _split_counts(len(ids), fracs)
    labels = np.repeat(np.array(SPLITS, dtype=object), counts)
    order = np.random.default_rng(seed).permutation(len(ids))
    values = np.empty(len(ids), dtype=object)
    values[order] = labels
    index = pd.Index(ids, name="subject", dtype=object)
    return pd.Series(values, index=index, name="split", dtype=object)


def index_dataset(
    root: str | os.PathLike,
    *,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> pd.DataFrame:
    """Table the files of every subject under *root* and assign the split.

    Files are paired by the subject id in their names, never by the order in
    which they are listed.

    Parameters
    ----------
    root : str or path-like
        The ``NFBS_Dataset`` folder or the folder containing it.
    fractions : sequence of 3 floats
        Train, validation and test fractions; see :func:`split_subjects`.
    seed : int
        Seed of the split.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``t1w``, ``brainmask``, ``brain`` (absolute paths
        as str) and ``split``; one row per subject, sorted by id.

    Raises
    ------
    MissingFileError
        *root* does not exist, holds no subject, or a subject lacks a file (the
        message names the subject and the missing file).
    InvalidInputError
        A file lies in another subject's folder, a subject has a file twice, or
        the fractions are invalid.

    Examples
    --------
    >>> df = index_dataset(fetch_nfbs())  # doctest: +SKIP
    >>> df["split"].value_counts().reindex(["train", "val", "test"]).tolist()  # doctest: +SKIP
    [87, 19, 19]
    """
    import pandas as pd

    root_path = _resolve_root(root)
    found = _scan_files(root_path)
    if not found:
        raise MissingFileError(
            f"{root_path}: no NFBS subjects (expected <ID>/sub-<ID>_ses-NFB3_T1w.nii.gz)"
        )
    rows = []
    for subject in sorted(found):
        entry = found[subject]
        session = entry["session"]
        row = {"subject": subject}
        for kind in _KINDS:
            if kind not in entry:
                expected = entry["folder"] / nfbs_filenames(subject, session)[kind]
                raise MissingFileError(f"subject {subject}: missing {kind} file {expected}")
            row[kind] = str(entry[kind])
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(INDEX_COLUMNS[:-1]))
    split = split_subjects(df["subject"], fractions=fractions, seed=seed)
    df["split"] = df["subject"].map(split)
    return df


def check_subject_id(subject: object, where: str | os.PathLike | None = None) -> str:
    """``subject`` if it is a subject id (:data:`SUBJECT_ID`), else a one-line error.

    Examples
    --------
    >>> check_subject_id("A00028185")
    'A00028185'
    >>> check_subject_id("../ESCAPED", "index.csv")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidInputError: index.csv: subject '../ESCAPED' is not a subject id ...
    """
    if not isinstance(subject, str) or not SUBJECT_ID.fullmatch(subject):
        raise InvalidInputError(where, f"subject {subject!r} is not a subject id (letters, "
                                       "digits, '-' and '_' only; never a path)")
    return subject


def _check_index_columns(df: pd.DataFrame, where: str | os.PathLike | None) -> None:
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInputError(where, f"index lacks column(s) {', '.join(missing)}")
    bad = sorted(set(df["split"].astype(str)) - set(SPLITS))
    if bad:
        raise InvalidInputError(where, f"unknown split value(s) {', '.join(bad)}")
    dups = df["subject"][df["subject"].duplicated()]
    if len(dups):
        raise InvalidInputError(where, f"subject {dups.iloc[0]} appears twice in the index")


def write_index(df: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an index table to CSV atomically.

    The table is written to a temporary file next to *path* and then moved
    into place, so a reader never sees half a file.

    Parameters
    ----------
    df : pandas.DataFrame
        A table from :func:`index_dataset`.
    path : str or path-like
        Destination CSV file; its folder is created if missing.
    overwrite : bool
        Replace an existing file; otherwise refuse.

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Raises
    ------
    IndexExistsError
        *path* exists and *overwrite* is False.
    InvalidInputError
        *df* lacks a required column or has an unknown split value.

    Examples
    --------
    >>> df = index_dataset(fetch_nfbs())  # doctest: +SKIP
    >>> write_index(df, "nfbs_index.csv")  # doctest: +SKIP
    PosixPath('/.../nfbs_index.csv')
    """
    target = Path(os.path.abspath(Path(path).expanduser()))
    _check_index_columns(df, None)
    if target.exists() and not overwrite:
        raise IndexExistsError(f"{target}: already exists; pass overwrite=True to replace it")
    try:
        with atomic_path(target, overwrite=overwrite) as tmp:
            df.loc[:, list(INDEX_COLUMNS)].to_csv(tmp, index=False)
    except OutputExistsError:  # appeared meanwhile
        raise IndexExistsError(
            f"{target}: already exists; pass overwrite=True to replace it") from None
    return target


def read_index(path: str | os.PathLike) -> pd.DataFrame:
    """Read an index written by :func:`write_index` and check it.

    Relative paths in the table are taken relative to the index file's folder.

    Parameters
    ----------
    path : str or path-like
        The CSV file.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``t1w``, ``brainmask``, ``brain`` (absolute paths
        as str) and ``split``.

    Raises
    ------
    MissingFileError
        The index, or a file it lists, does not exist (the message names the
        subject and the file).
    InvalidInputError
        The file is not a valid index (missing columns, unknown split, ...).

    Examples
    --------
    >>> df = read_index("nfbs_index.csv")  # doctest: +SKIP
    >>> list(df.columns)  # doctest: +SKIP
    ['subject', 't1w', 'brainmask', 'brain', 'split']
    """
    import pandas as pd

    source = Path(path).expanduser()
    if not source.is_file():
        raise MissingFileError(f"{source}: index file not found")
    try:
        df = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InvalidInputError(source, f"not a CSV index ({_one_line(exc, 150)})") from None
    _check_index_columns(df, source)
    df = df.loc[:, list(INDEX_COLUMNS)].copy()
    for subject in df["subject"]:  # ids build output paths: labels only (issue 18)
        check_subject_id(subject, source)
    base = source.resolve().parent
    for kind in _KINDS:
        df[kind] = [str(p) if Path(p).is_absolute() else str(base / p) for p in df[kind]]
    for row in df.itertuples(index=False):
        for kind in _KINDS:
            file = getattr(row, kind)
            if not file or not Path(file).is_file():
                raise MissingFileError(
                    f"{source}: subject {row.subject}: {kind} file {file} not found"
                )
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------- inspecting a dataset


