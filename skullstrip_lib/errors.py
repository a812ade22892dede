"""Exceptions raised by :mod:`skullstrip_lib`.

Every error a user can cause (a bad file, a failed download, a missing subject)
is a :class:`SkullstripError`. Its message is one line that names the file or
subject and the problem, so the command-line interface can print it as is and
exit with a non-zero status.
"""

from __future__ import annotations

from os import PathLike


class SkullstripError(Exception):
    """Base class of the errors a user can cause; the CLI prints them in one line."""


class InvalidInputError(SkullstripError, ValueError):
    """An input file exists but cannot be used (not NIfTI, wrong shape, NaN, ...).

    Parameters
    ----------
    path : str or path-like or None
        The offending file, named at the start of the message.
    problem : str
        What is wrong with it, in a few words.
    """

    def __init__(self, path: str | PathLike | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class MissingFileError(SkullstripError, FileNotFoundError):
    """A file the pipeline needs does not exist (a subject's mask, a scan, an index)."""


class DownloadError(SkullstripError):
    """A download failed, was truncated, or did not match its pinned hash."""
