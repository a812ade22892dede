"""Exceptions raised by :mod:`skullstrip_lib`.

Every error a user can cause (a bad file, a failed download, a missing subject,
a bad argument) is a :class:`SkullstripError`. Its message is one line that names the file or
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


class InvalidArgumentError(SkullstripError, ValueError):
    """An argument of a function or setting is out of range or of the wrong kind.

    The one error for bad arguments, raised by the checkers of
    :mod:`skullstrip_lib.validate`. A :class:`ValueError` (as Python's own bad
    arguments are), and a :class:`SkullstripError` (so the command line prints
    it in one line).

    Parameters
    ----------
    argument : str
        The argument's name, which starts the message (``"n_subjects"``).
    problem : str
        What it must be and what it was (``"must be an integer >= 1, got 0"``).

    Examples
    --------
    >>> str(InvalidArgumentError("depth", "must be an integer >= 1, got 0"))
    'depth must be an integer >= 1, got 0'
    """

    def __init__(self, argument: str, problem: str) -> None:
        self.argument = argument
        self.problem = problem
        super().__init__(f"{argument} {problem}")


class MissingFileError(SkullstripError, FileNotFoundError):
    """A file the pipeline needs does not exist (a subject's mask, a scan, an index)."""


class DownloadError(SkullstripError):
    """A download failed, was truncated, or did not match its pinned hash."""


class OutputExistsError(SkullstripError, FileExistsError):
    """An output file exists and was not to be overwritten (nothing is replaced silently)."""


class ImplausibleMaskError(SkullstripError):
    """A predicted brain mask that cannot be a brain (empty, or a volume far outside the range).

    Raised by :func:`skullstrip_lib.inference.strip` before anything is written,
    so a failed prediction never passes for a result.

    Parameters
    ----------
    path : str or path-like
        The scan, named at the start of the message.
    volume_ml : float
        The mask's volume, in mL.
    why : str
        Why that volume cannot be a brain, in a few words.
    """

    def __init__(self, path: str | PathLike, volume_ml: float, why: str) -> None:
        self.path = str(path)
        self.volume_ml = float(volume_ml)
        self.why = why
        super().__init__(f"{path}: predicted brain mask of {volume_ml:.0f} mL is implausible "
                         f"({why}); nothing written (check_volume=False, or --no-volume-check, "
                         "accepts it for non-adult or unusual scans)")


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal, cleanly; the message says what was kept.

    Raised by :func:`skullstrip_lib.workflow.run_preprocessing` after Ctrl-C
    (SIGINT) or SIGTERM, once its workers have ended and what finished is
    recorded. A :class:`KeyboardInterrupt`, so that code (and Jupyter) treats it
    as Ctrl-C; the command line prints it in one line and exits with 128 +
    ``signum``.

    Parameters
    ----------
    message : str
        What was stopped and what was kept, in one line.
    signum : int
        The signal (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = int(signum)


class InputWarning(UserWarning):
    """An input problem the library worked around and says so in one line (NaN voxels, ...)."""


class DeviceError(SkullstripError):
    """The machine lacks what a training run needs: a GPU, a named device, or GPU memory."""


# The modules of the "train" extra (pip install 'skullstrip-lib[train]'): training, export
# and .keras models need them; the base install (predict, index, synth, fetch, preprocess
# with ONNX models) does not.
TRAIN_MODULES = ("tensorflow", "keras", "tensorboard", "tf2onnx", "onnx")


class MissingExtraError(SkullstripError):
    """A command needs an optional dependency group (an "extra") that is not installed.

    Parameters
    ----------
    module : str
        The missing module, e.g. ``"tensorflow"``.
    extra : str
        The extra that installs it, e.g. ``"train"``.
    """

    def __init__(self, module: str, extra: str = "train") -> None:
        self.module = module
        self.extra = extra
        super().__init__(f"this command needs TensorFlow/Keras, which the base install leaves "
                         f"out (no module {module!r}): pip install 'skullstrip-lib[{extra}]'")


def missing_extra(exc: ModuleNotFoundError) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for a failed import of a training module, else None."""
    root = (exc.name or "").partition(".")[0]
    return MissingExtraError(root) if root in TRAIN_MODULES else None


def require_train_extra(modules: tuple[str, ...] = TRAIN_MODULES) -> None:
    """Raise :class:`MissingExtraError` unless ``modules`` can be imported (none is imported).

    For commands that would otherwise write files or work for minutes before
    their first TensorFlow import.
    """
    from importlib.util import find_spec

    for module in modules:
        if find_spec(module) is None:
            raise MissingExtraError(module)
