"""Small pieces every step shares: atomic writes, cache keys, settings as plain data.

Private: the library imports them from :mod:`skullstrip_lib.io`, which re-exports
:func:`atomic_path`, :func:`atomic_write_text`, :func:`settings_key`,
:func:`to_plain`, :func:`from_plain` and :func:`as_tuples`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, OutputExistsError, SkullstripError

__all__ = [
    "as_tuples",
    "atomic_path",
    "atomic_write_text",
    "check_not_an_input",
    "check_writable",
    "errors_named",
    "file_key",
    "from_plain",
    "move_into_place",
    "settings_key",
    "to_plain",
]


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
        with errors_named(path, tmp):
            yield tmp
        move_into_place(tmp, path, overwrite=overwrite)
    finally:
        tmp.unlink(missing_ok=True)


def file_key(path: str | os.PathLike) -> tuple:
    """What identifies a file: the same file under two names (a symbolic or hard link,
    ``a/./a``) has the same key; a file that does not exist is keyed by its real path.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("x")
    >>> file_key(d / "." / "a.csv") == file_key(d / "a.csv"), file_key(d / "b.csv")[0]
    (True, 'path')
    """
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def check_not_an_input(outputs: Iterable[str | os.PathLike | None],
                       inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse, before anything is written, an output that is one of the run's inputs.

    An output never replaces an input, whatever the flags: ``--overwrite`` is for
    earlier results, not for the data a run reads (an index written over the scan
    it lists, a metrics table over the index it scores).

    Parameters
    ----------
    outputs, inputs : iterable of path-like or None
        The files the run will write and those it reads (``None`` is skipped);
        compared as files (:func:`file_key`), not as spellings.

    Raises
    ------
    InvalidInputError
        Naming the output, and the input it is.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "scan.nii.gz").write_bytes(b"...")
    >>> check_not_an_input([d / "index.csv"], [d / "scan.nii.gz"])  # different files: fine
    >>> (d / "link.nii.gz").symlink_to(d / "scan.nii.gz")  # the same file, another name
    >>> check_not_an_input([d / "link.nii.gz"], [d / "scan.nii.gz"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidInputError: .../link.nii.gz: is an input of this run (...scan...
    """
    read = {file_key(f): Path(f) for f in inputs if f is not None}
    for out in outputs:
        if out is not None and (k := file_key(out)) in read:
            raise InvalidInputError(out, f"is an input of this run ({read[k]}); nothing "
                                         "written (an output never replaces an input, "
                                         "whatever the flags: choose another name)")


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse, before any work, a folder where no file can be written.

    The folder need not exist: its nearest existing ancestor must be a folder in
    which a file can be made, which is tried (a hidden empty file, removed at
    once), since permissions, a read-only file system or ``/proc`` each say no in
    their own way. Nothing is created.

    Raises
    ------
    SkullstripError
        ``{folder}: cannot write results there (...)``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> check_writable(d / "new" / "folder")  # made later, by whatever writes there
    >>> (d / "new").exists()
    False
    >>> _ = (d / "a-file").write_text("x")
    >>> check_writable(d / "a-file" / "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.SkullstripError: .../a-file/out: cannot write results there (.../a-file \
is a file, not a folder)
    """
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SkullstripError(f"{folder}: cannot write results there ({existing} is a file, "
                              "not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".skullstrip-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SkullstripError(f"{folder}: cannot write results there "
                              f"({exc.strerror or exc})") from None


def move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Give the finished file ``tmp`` the name ``path``, in one step.

    With ``overwrite`` an existing ``path`` is replaced. Without it a hard link
    makes the name, and a hard link fails if ``path`` appeared meanwhile (another
    process, a second output of the same run): nothing is clobbered, whatever the
    timing. On file systems without hard links it falls back to a rename.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false; ``tmp`` is left as it was.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "a.tmp").write_text("new"), (d / "a.txt").write_text("old")
    (3, 3)
    >>> move_into_place(d / "a.tmp", d / "a.txt", overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.OutputExistsError: ...a.txt: already exists (pass overwrite to replace it)
    >>> move_into_place(d / "a.tmp", d / "a.txt", overwrite=True)
    >>> (d / "a.txt").read_text(), (d / "a.tmp").exists()
    ('new', False)
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path}: already exists (pass overwrite to replace it)") from None
    except OSError:  # file systems without hard links
        os.replace(tmp, path)
    else:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def errors_named(path: Path, *temporaries: Path) -> Iterator[None]:
    """Make an OS error while writing name ``path``, not a hidden temporary or nothing.

    A full disk raised by gzip or nibabel is ``[Errno 28] No space left on
    device`` with no file name; the user needs to know which output it was.
    """
    try:
        yield
    except SkullstripError:
        raise
    except OSError as exc:
        hidden = {str(t) for t in temporaries}
        if exc.errno is not None and (exc.filename is None or str(exc.filename) in hidden):
            strerror = exc.strerror or os.strerror(exc.errno)
            if exc.errno == errno.ENOSPC:
                strerror += " (nothing was written; free some space and retry)"
            raise OSError(exc.errno, strerror, str(path)) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write a text file (JSON, CSV, YAML) all at once (see :func:`atomic_path`).

    A reader never sees half a file, and an interrupted write leaves the old
    file (or none) in place. Unlike :func:`~skullstrip_lib.io.atomic_save`, an existing file is
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
