"""The completion record, ``NFBS_Dataset/.complete.json``.

The subjects on disk and how each was verified, so that a second
:func:`~skullstrip_lib.datasets.fetch_nfbs` does nothing; the closing summary.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..io import atomic_write_text
from ._archive import _expected_names
from ._paths import (
    MARKER_NAME,
    NFBS_ARCHIVE,
)


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
