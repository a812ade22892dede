"""Fetching NFBS: :func:`fetch_nfbs` downloads or streams the archive into the data directory.

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
nothing. The plumbing is private to the package: ``_download``, ``_archive``,
``_record`` and ``_paths``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import (
    InvalidInputError,
    MissingFileError,
)
from ..validate import check_int, check_number, check_optional_int
from ._archive import (
    _FILE_CHECKS,
    _check_file,
    _check_shapes,
    _expected_names,
    _extract_members,
    _scan_archive,
)
from ._download import (
    _download,
    _resolve_hash,
    _resolve_url,
    _source,
    _stream,
)
from ._paths import (
    ENV_NFBS_HASH,
    ENV_NFBS_URL,
    NFBS_ARCHIVE,
    NFBS_FOLDER,
    NFBS_KNOWN_HASH,
    NFBS_SIZE,
    NFBS_URL,
    get_data_dir,
    nfbs_filenames,
)
from ._record import (
    _Record,
    _report,
    _too_many,
)

__all__ = [
    "ENV_NFBS_HASH",
    "ENV_NFBS_URL",
    "NFBS_ARCHIVE",
    "NFBS_FOLDER",
    "NFBS_KNOWN_HASH",
    "NFBS_SIZE",
    "NFBS_URL",
    "fetch_nfbs",
    "nfbs_filenames",
]


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
        fails its check (the message names the member), or has fewer than
        *n_subjects* subjects; or *known_hash* or *url* is malformed. It is a
        :class:`ValueError`.
    InvalidArgumentError
        *n_subjects* not a positive integer or None, *retries* negative,
        *timeout* not positive. It is a :class:`ValueError`.
    MissingFileError
        Whole archive: a subject in it lacks one of its three files.

    Examples
    --------
    >>> root = fetch_nfbs(n_subjects=3)  # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())[:2]  # doctest: +SKIP
    ['.complete.json', 'A00028185']
    """
    n_subjects = check_optional_int(n_subjects, "n_subjects")
    retries = check_int(retries, "retries", minimum=0)
    timeout = check_number(timeout, "timeout", minimum=0, open_minimum=True)  # seconds
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
