"""Checking arguments: one rule, one error, a few checkers.

The rule: a bad argument raises
:class:`~skullstrip_lib.errors.InvalidArgumentError`, a :class:`ValueError`
whose one-line message starts with the argument's name and says what it must
be and what it was (``n_subjects must be an integer >= 1, got 0``). A
function checks its arguments with these checkers first, before any work or
any write, so that the same mistake reads the same wherever it is made; the
command line prints it as one line.

Problems with a file's contents (not NIfTI, a hostile header, a wrong hash)
are not arguments: they raise :class:`~skullstrip_lib.errors.InvalidInputError`
naming the file.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from .errors import InvalidArgumentError

__all__ = [
    "check_choice",
    "check_input_shape",
    "check_int",
    "check_number",
    "check_optional_int",
]

_T = TypeVar("_T")


def _is_int(value: Any) -> bool:
    # bool is an int in Python, but depth=True is a mistake, not depth 1; numpy's
    # integers are numbers.Integral, numpy's floats and 2.0 are not whole numbers here.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int, if it is a whole number from ``minimum`` to ``maximum``.

    Parameters
    ----------
    value : Any
        The argument (a Python or NumPy integer; not a bool, a float or a string).
    name : str
        The argument's name, which starts the error message.
    minimum : int
        The smallest value allowed (default 1: a positive integer).
    maximum : int or None
        The largest value allowed; None for no upper bound.

    Returns
    -------
    int

    Raises
    ------
    InvalidArgumentError
        ``value`` is not an integer, or out of range.

    Examples
    --------
    >>> import numpy as np
    >>> check_int(np.int64(3), "depth")
    3
    >>> check_int(0, "convs_per_block", minimum=0)
    0
    >>> check_int(2.5, "depth")
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: depth must be an integer >= 1, got 2.5
    >>> check_int(20000, "n_subjects", 1, 10000)
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: n_subjects must be an integer from 1 to 10000, got 20000
    """  # noqa: E501 (a doctest's expected line cannot be wrapped)
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidArgumentError(name, f"must be an integer {bound}, got {value!r}")
    return int(value)


def check_optional_int(value: Any, name: str, minimum: int = 1,
                       maximum: int | None = None) -> int | None:
    """None, or ``value`` checked by :func:`check_int` (a count where None means "all").

    Parameters
    ----------
    value : Any
        The argument: None, or a whole number.
    name : str
        The argument's name, which starts the error message.
    minimum, maximum : int, int or None
        The range allowed (see :func:`check_int`).

    Returns
    -------
    int or None

    Raises
    ------
    InvalidArgumentError
        ``value`` is neither None nor an integer in range.

    Examples
    --------
    >>> check_optional_int(None, "n_subjects") is None
    True
    >>> check_optional_int(3, "n_subjects")
    3
    >>> check_optional_int("3", "n_subjects")
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: n_subjects must be an integer >= 1 or None, got '3'
    """
    if value is None:
        return None
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise InvalidArgumentError(name, f"must be an integer {bound} or None, got {value!r}")
    return int(value)


def _interval(minimum: float | None, maximum: float | None, open_minimum: bool,
              open_maximum: bool) -> str:
    if minimum is None and maximum is None:
        return "a finite number"
    if maximum is None:
        if minimum == 0:
            return "a positive number" if open_minimum else "a number >= 0"
        return f"a number {'>' if open_minimum else '>='} {minimum:g}"
    if minimum is None:
        return f"a number {'<' if open_maximum else '<='} {maximum:g}"
    return (f"a number in {'(' if open_minimum else '['}{minimum:g}, "
            f"{maximum:g}{')' if open_maximum else ']'}")


def check_number(value: Any, name: str, *, minimum: float | None = None,
                 maximum: float | None = None, open_minimum: bool = False,
                 open_maximum: bool = False) -> float:
    """``value`` as a float, if it is a finite real number in the range given.

    Parameters
    ----------
    value : Any
        The argument (an int or float, Python's or NumPy's; not a bool or a string).
    name : str
        The argument's name, which starts the error message.
    minimum, maximum : float or None
        The bounds; None for none.
    open_minimum, open_maximum : bool
        Exclude the bound itself (``minimum=0, open_minimum=True``: positive).

    Returns
    -------
    float

    Raises
    ------
    InvalidArgumentError
        ``value`` is not a finite number, or out of range.

    Examples
    --------
    >>> check_number(0.5, "dropout", minimum=0, maximum=1, open_maximum=True)
    0.5
    >>> check_number(0, "timeout", minimum=0, open_minimum=True)
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: timeout must be a positive number, got 0
    >>> check_number(1.0, "dropout", minimum=0, maximum=1, open_maximum=True)
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: dropout must be a number in [0, 1), got 1.0
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    ok = ok and math.isfinite(number)
    if ok and minimum is not None:
        ok = number > minimum if open_minimum else number >= minimum
    if ok and maximum is not None:
        ok = number < maximum if open_maximum else number <= maximum
    if not ok:
        wanted = _interval(minimum, maximum, open_minimum, open_maximum)
        raise InvalidArgumentError(name, f"must be {wanted}, got {value!r}")
    return number


def _one_of(choices: Sequence[Any]) -> str:
    names = [repr(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_choice(value: _T, name: str, choices: Iterable[Any]) -> _T:
    """``value``, if it is one of ``choices`` (a tuple, or the keys of a mapping).

    Parameters
    ----------
    value : Any
        The argument.
    name : str
        The argument's name, which starts the error message.
    choices : iterable
        What is allowed (None may be one of them).

    Returns
    -------
    Any
        ``value``, unchanged.

    Raises
    ------
    InvalidArgumentError
        ``value`` is none of ``choices``; the message lists them.

    Examples
    --------
    >>> check_choice("group", "norm", ("instance", "group", "batch", None))
    'group'
    >>> check_choice("gpu", "profile", {"sample": {}, "full": {}})
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: profile must be one of 'sample' or 'full', got 'gpu'
    """
    options = tuple(choices)
    try:
        ok = any(value is c or bool(value == c) for c in options)
    except (TypeError, ValueError):  # an array compared with a name: not a choice
        ok = False
    if not ok:
        raise InvalidArgumentError(name, f"must be one of {_one_of(options)}, got {value!r}")
    return value


def check_input_shape(input_shape: Sequence[int], depth: int) -> tuple[int, int, int, int]:
    """A network's input shape ``(X, Y, Z, channels)``, checked against its depth.

    A U-Net of ``depth`` levels halves the grid ``depth - 1`` times, so X, Y
    and Z must be divisible by ``2**(depth - 1)``.

    Parameters
    ----------
    input_shape : sequence of 4 int
        ``(X, Y, Z, channels)``, in voxels; every entry a positive integer.
    depth : int
        Number of resolution levels (>= 1).

    Returns
    -------
    tuple of 4 int

    Raises
    ------
    InvalidArgumentError
        Not 4 positive integers, or an axis not divisible; the message names
        the axis and the nearest sizes that would do.

    Examples
    --------
    >>> check_input_shape((96, 128, 160, 1), depth=5)
    (96, 128, 160, 1)
    >>> check_input_shape((96, 130, 160, 1), depth=5)
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: input_shape axis Y is 130, not divisible by 2**(depth-1) = 16 (depth 5 halves the grid 4 times); pad or crop it to 128 or 144
    """  # noqa: E501 (a doctest's expected line cannot be wrapped)
    depth = check_int(depth, "depth", 1)
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = (input_shape,)
    if len(shape) != 4:
        raise InvalidArgumentError(
            "input_shape", f"must be (X, Y, Z, channels), 4 numbers, got {input_shape!r}")
    for value, axis in zip(shape, "XYZC", strict=True):
        if not _is_int(value) or value < 1:
            raise InvalidArgumentError(
                "input_shape", f"axis {axis} must be a positive integer, got {value!r}")
    factor = 2 ** (depth - 1)  # depth - 1 poolings, each halving the grid
    for value, axis in zip(shape[:3], "XYZ", strict=True):
        if value % factor:
            raise InvalidArgumentError(
                "input_shape",
                f"axis {axis} is {value}, not divisible by 2**(depth-1) = {factor} "
                f"(depth {depth} halves the grid {depth - 1} times); pad or crop it to "
                f"{value // factor * factor or factor} or {math.ceil(value / factor) * factor}")
    return tuple(int(v) for v in shape)  # type: ignore[return-value]
