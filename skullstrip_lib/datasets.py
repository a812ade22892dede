"""NFBS download, data directory, subject index and train/val/test split.

The Neurofeedback Skull-stripped repository (NFBS) is one archive,
``NFBS_Dataset.tar.gz`` (about 1.75 GB, 125 subjects), that unpacks to::

    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w.nii.gz            # the head
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brainmask.nii.gz  # the brain mask
    NFBS_Dataset/<ID>/sub-<ID>_ses-NFB3_T1w_brain.nii.gz      # the skull-stripped head

:func:`fetch_nfbs` downloads it with :mod:`pooch` (hash check, retries, progress
bar), extracts it safely and atomically into the data directory, and records
what it extracted in ``NFBS_Dataset/.complete.json`` so that a second call does
nothing. :func:`index_dataset` pairs the three files of every subject by the
subject id in their names and assigns a seeded, subject-level split;
:func:`write_index` and :func:`read_index` store that table as CSV.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
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
from .io import atomic_path, atomic_write_text

if TYPE_CHECKING:  # pandas is imported by the functions that use it (a fast --help)
    import pandas as pd

__all__ = [
    "ENV_DATA_DIR",
    "ENV_NFBS_HASH",
    "INDEX_COLUMNS",
    "NFBS_ARCHIVE",
    "NFBS_FOLDER",
    "NFBS_KNOWN_HASH",
    "NFBS_SIZE",
    "NFBS_URL",
    "SPLITS",
    "IndexExistsError",
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
DEFAULT_DATA_DIR = "~/skullstrip_data"
MARKER_NAME = ".complete.json"

INDEX_COLUMNS = ("subject", "t1w", "brainmask", "brain", "split")
SPLITS = ("train", "val", "test")
NFBS_SESSION = "NFB3"
_KINDS = ("t1w", "brainmask", "brain")
_SUFFIX = {"t1w": "", "brainmask": "_brainmask", "brain": "_brain"}
_FILE_RE = re.compile(
    r"^sub-(?P<subject>[A-Za-z0-9]+)_ses-(?P<session>[A-Za-z0-9]+)_T1w"
    r"(?P<suffix>_brainmask|_brain)?\.nii\.gz$"
)
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


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


# --------------------------------------------------------------------------- download


class _SameBytesAgain(Exception):
    """The retry got the very same wrong bytes: retrying more cannot help."""


class _RecordingDownloader:
    """A pooch downloader that remembers the size and hash of the last attempt."""

    def __init__(self, url: str, known_hash: str | None, progressbar: bool) -> None:
        import pooch

        if url.lower().startswith("ftp://"):
            self.inner = pooch.FTPDownloader(progressbar=progressbar)
        else:
            self.inner = pooch.HTTPDownloader(progressbar=progressbar)
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
        digest = None if self.alg is None else pooch.file_hash(output_file, alg=self.alg)
        self.last = (digest, os.path.getsize(output_file))
        if digest is not None and f"{self.alg}:{digest}" != self.known_hash:
            if self.last in self._seen:
                raise _SameBytesAgain()
            self._seen.add(self.last)
        return None


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _mismatch_message(url: str, known_hash: str, where: str, actual: str, size: int) -> str:
    alg, expected = known_hash.split(":", 1)
    pinned = "was pinned" if where == "known_hash" else f"was pinned (via {where})"
    sizes = f"downloaded {size:,} bytes"
    if url == NFBS_URL or known_hash == NFBS_KNOWN_HASH:
        sizes += f", expected about {NFBS_SIZE:,}"
    return (
        f"{NFBS_ARCHIVE} from {url}: {alg.upper()} is {actual} but {expected} {pinned} "
        f"({sizes}): a short size means the download was cut, retry; otherwise the archive "
        f"changed upstream — check it and rerun with --known-hash {alg}:{actual} "
        f"(or {ENV_NFBS_HASH}={alg}:{actual})"
    )


def _download(
    url: str,
    data_dir: Path,
    known_hash: str | None,
    where: str,
    *,
    progressbar: bool,
    retries: int,
) -> Path:
    """Fetch the archive into ``data_dir`` with pooch; every failure is a DownloadError.

    Pooch streams into a temporary file inside ``data_dir`` and moves it to its
    final name only once the hash matched, deleting it otherwise.
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
    downloader = _RecordingDownloader(url, known_hash, progressbar)
    tries = f"after {retries + 1} attempt{'s' if retries else ''}"
    try:
        path = store.fetch(NFBS_ARCHIVE, downloader=downloader, progressbar=progressbar)
    except (ValueError, _SameBytesAgain) as exc:
        last = downloader.last
        if known_hash is not None and last is not None and last[0] is not None:
            raise DownloadError(
                _mismatch_message(url, known_hash, where, last[0], last[1])
            ) from None
        raise DownloadError(f"{NFBS_ARCHIVE} from {url}: {_one_line(exc)}") from exc
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        status = "" if response is None else f"HTTP {response.status_code} {response.reason}"
        raise DownloadError(
            f"{NFBS_ARCHIVE} from {url}: download failed {tries}: {status or _one_line(exc)}; "
            "check the address or retry later"
        ) from None
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        raise DownloadError(
            f"{NFBS_ARCHIVE} from {url}: download failed {tries}: the connection closed "
            f"before the whole file arrived ({_one_line(exc, 150)}); retry later"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(
            f"{NFBS_ARCHIVE} from {url}: download failed {tries}: "
            f"{type(exc).__name__}: {_one_line(exc, 200)}; check the network and retry"
        ) from None
    except OSError as exc:
        raise DownloadError(
            f"{NFBS_ARCHIVE} from {url}: could not save it in {data_dir}: {_one_line(exc, 200)}"
        ) from None
    return Path(path)


# --------------------------------------------------------------------------- safe extraction


def _check_member(member: tarfile.TarInfo, dest: str) -> None:
    """Raise ``tarfile.TarError`` (with a reason) if extracting *member* would be unsafe."""
    name = member.name
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


def _subject_of(name: str) -> tuple[str, str] | None:
    """(subject id, folder in the archive) for a subject's NIfTI member name, else None."""
    path = PurePosixPath(name)
    match = _FILE_RE.match(path.name)
    if match is None or path.parent.name != match["subject"]:
        return None
    return match["subject"], str(path.parent)


def _open_progress(archive: Path, desc: str, progressbar: bool):
    from tqdm.auto import tqdm

    raw = open(archive, "rb")  # noqa: SIM115 (closed by the caller's ExitStack)
    size = archive.stat().st_size
    return raw, tqdm.wrapattr(
        raw, "read", total=size, desc=desc, disable=not progressbar, leave=False
    )


def _scan_archive(archive: Path, dest: str, progressbar: bool) -> dict[str, tuple[str, set]]:
    """Check every member is safe; return {subject: (folder in archive, {file names})}."""
    subjects: dict[str, tuple[str, set]] = {}
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
                    raise InvalidInputError(
                        archive,
                        f"refusing unsafe archive member {member.name!r} ({exc}); "
                        "this is not the NFBS archive: delete it and download again",
                    ) from None
                found = _subject_of(member.name)
                if found is not None:
                    subject, folder = found
                    known = subjects.setdefault(subject, (folder, set()))
                    if known[0] != folder:
                        raise InvalidInputError(
                            archive,
                            f"subject {subject} appears in two folders: "
                            f"{known[0]!r} and {folder!r}",
                        )
                    known[1].add(PurePosixPath(member.name).name)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidInputError(
                archive,
                f"not a readable tar.gz archive ({_one_line(exc, 150)}); "
                "delete it and download again",
            ) from None
    return subjects


def _expected_names(subject: str, names: Iterable[str]) -> dict[str, str]:
    """The three file names of *subject*, with the session label found in *names*."""
    session = NFBS_SESSION
    for name in names:
        match = _FILE_RE.match(name)
        if match and match["subject"] == subject:
            session = match["session"]
            break
    return nfbs_filenames(subject, session)


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
                if _HAS_DATA_FILTER:
                    tar.extract(member, tmp, filter="data")
                else:
                    tar.extract(member, tmp)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidInputError(
                archive, f"extraction failed ({_one_line(exc, 150)}); delete it and retry"
            ) from None


def _read_marker(dest: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    if not isinstance(marker.get("subjects"), list) or not isinstance(
        marker.get("available"), list
    ):
        return None
    return marker


def _subject_complete(dest: Path, subject: str) -> bool:
    folder = dest / subject
    names = _expected_names(subject, (p.name for p in folder.glob("sub-*.nii.gz")))
    return all((folder / name).is_file() for name in names.values())


def _wanted(available: Sequence[str], n_subjects: int | None) -> list[str]:
    ids = sorted(available)
    if n_subjects is None:
        return ids
    if n_subjects > len(ids):
        raise InvalidInputError(
            None, f"n_subjects={n_subjects} but the NFBS archive has {len(ids)} subjects"
        )
    return ids[:n_subjects]


def fetch_nfbs(
    data_dir: str | os.PathLike | None = None,
    *,
    n_subjects: int | None = None,
    url: str = NFBS_URL,
    known_hash: str | None = NFBS_KNOWN_HASH,
    keep_archive: bool = True,
    progressbar: bool = True,
    retries: int = 2,
) -> Path:
    """Download and extract the NFBS dataset; return its ``NFBS_Dataset`` folder.

    The archive is downloaded once with :mod:`pooch` into *data_dir* (hash
    checked, retried, with a progress bar) and is moved to its final name only
    once verified. Its members are checked (no absolute paths, no ``..``, no
    links pointing outside, no devices) and extracted with the tarfile ``data``
    filter into a temporary folder inside *data_dir*; each subject folder is
    then moved into ``data_dir/NFBS_Dataset/`` with :func:`os.replace`, and
    ``NFBS_Dataset/.complete.json`` records the subjects. A call whose subjects
    are all recorded (and on disk) returns at once: no download, no extraction.
    Nothing half-written is left in *data_dir* after a failure.

    Parameters
    ----------
    data_dir : str or path-like or None
        Where to store the data; see :func:`get_data_dir`.
    n_subjects : int or None
        Extract only the first *n_subjects* subjects (sorted by id). The archive
        is still downloaded whole; a later call with a larger number extracts
        the missing subjects. None extracts all of them.
    url : str
        Address of the archive.
    known_hash : str or None
        Expected hash, ``"md5:<hex>"``. The pinned default can be replaced
        with the environment variable ``SKULLSTRIP_NFBS_HASH``; None skips the
        check (an explicit opt-out).
    keep_archive : bool
        Keep the archive after a successful extraction (False deletes it; the
        marker file still lets later calls skip the download).
    progressbar : bool
        Show progress bars for the download and the extraction.
    retries : int
        How many times pooch retries a failed download (waiting 1 s, 2 s, ...).

    Returns
    -------
    pathlib.Path
        ``data_dir/NFBS_Dataset``.

    Raises
    ------
    DownloadError
        Network or HTTP error, truncated transfer, or hash mismatch (the message
        gives the actual hash, the size and how to proceed).
    InvalidInputError
        The archive is not a readable tar archive or has an unsafe member, or
        an argument is invalid (*n_subjects* not positive or larger than the
        number of subjects, *retries* negative, *known_hash* malformed). It is
        a :class:`ValueError`.
    MissingFileError
        A subject in the archive lacks one of its three files.

    Examples
    --------
    >>> root = fetch_nfbs(n_subjects=5)  # doctest: +SKIP
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
    if retries < 0:
        raise InvalidInputError(None, f"retries must be >= 0, got {retries!r}")
    data_dir = get_data_dir(data_dir)
    dest = data_dir / NFBS_FOLDER

    marker = _read_marker(dest)
    done: set[str] = set()
    if marker is not None:
        done = {s for s in marker["subjects"] if _subject_complete(dest, s)}
        if set(_wanted(marker["available"], n_subjects)) <= done:
            return dest

    resolved_hash, where = _resolve_hash(known_hash)
    archive = _download(
        url, data_dir, resolved_hash, where, progressbar=progressbar, retries=retries
    )

    tmp = Path(tempfile.mkdtemp(prefix=".nfbs-extract-", dir=data_dir))
    moved: list[str] = []
    available: list[str] = []
    try:
        listing = _scan_archive(archive, str(tmp), progressbar)
        if not listing:
            raise InvalidInputError(archive, "contains no NFBS subject files")
        available = sorted(listing)
        needed = [s for s in _wanted(available, n_subjects) if s not in done]
        for subject in needed:
            folder, names = listing[subject]
            for kind, name in _expected_names(subject, names).items():
                if name not in names:
                    raise MissingFileError(
                        f"{archive}: subject {subject} has no {kind} file ({folder}/{name})"
                    )
        _extract_members(archive, tmp, {s: listing[s][0] for s in needed}, progressbar)
        for subject in needed:  # validate the extracted layout before moving anything
            folder = tmp / listing[subject][0]
            for kind, name in _expected_names(subject, listing[subject][1]).items():
                if not (folder / name).is_file():
                    raise MissingFileError(
                        f"{archive}: subject {subject}: {kind} file {name} was not extracted"
                    )
        dest.mkdir(exist_ok=True)
        trash = tmp / ".replaced"
        for subject in needed:
            target = dest / subject
            if target.exists() or target.is_symlink():  # stale, not in the marker
                trash.mkdir(exist_ok=True)
                os.replace(target, trash / subject)
            os.replace(tmp / listing[subject][0], target)
            moved.append(subject)
    finally:
        if moved:
            record = {
                "archive": NFBS_ARCHIVE,
                "url": url,
                "known_hash": resolved_hash,
                "available": available,
                "subjects": sorted(done | set(moved)),
            }
            atomic_write_text(dest / MARKER_NAME, json.dumps(record, indent=1) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)

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


