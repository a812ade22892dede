"""A data set's subject index and its seeded train/val/test split.

:func:`find_subjects` lists the subjects of an NFBS-layout folder;
:func:`index_dataset` pairs the three files of every subject by the subject id
in their names and assigns a seeded, subject-level split
(:func:`split_subjects`); :func:`write_index` and :func:`read_index` store that
table as CSV.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    InvalidInputError,
    MissingFileError,
    OutputExistsError,
)
from ..io import atomic_path, check_not_an_input
from ._archive import _one_line
from ._paths import (
    _FILE_RE,
    _KINDS,
    _SUFFIX,
    INDEX_COLUMNS,
    NFBS_FOLDER,
    SPLITS,
    SUBJECT_ID,
    nfbs_filenames,
)

if TYPE_CHECKING:  # pandas is imported by the functions that use it (a fast --help)
    import pandas as pd

__all__ = [
    "SUBJECT_ID",
    "IndexExistsError",
    "check_subject_id",
    "find_subjects",
    "index_dataset",
    "read_index",
    "split_subjects",
    "write_index",
]


class IndexExistsError(OutputExistsError):
    """:func:`write_index` was asked to replace an existing file without ``overwrite``."""


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
        *df* lacks a required column or has an unknown split value, or *path* is
        one of the files it lists (whatever *overwrite* says).

    Examples
    --------
    >>> df = index_dataset(fetch_nfbs())  # doctest: +SKIP
    >>> write_index(df, "nfbs_index.csv")  # doctest: +SKIP
    PosixPath('/.../nfbs_index.csv')
    """
    target = Path(os.path.abspath(Path(path).expanduser()))
    _check_index_columns(df, None)
    # Never over a scan or mask it lists (index DATA -o DATA/.../sub-X_T1w.nii.gz --overwrite).
    check_not_an_input([target], (p for column in ("t1w", "brainmask", "brain")
                                  for p in df[column].dropna()))
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
