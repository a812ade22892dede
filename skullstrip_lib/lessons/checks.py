"""Checks for the "build it yourself" exercises: the student's function against the library.

Every chapter has an exercise in which the student writes the piece the
chapter is about (a Dice score, a resampling, a residual block, ...) as a
function, and a cell after it that calls one ``check_*`` function of this
module on it. A check runs the student's function on small cases whose answers
are known (worked out by hand, or given by the library's own function), prints
one ``ok: ...`` line per case that passes, and on the first wrong answer raises
:class:`AssertionError` saying which case failed, what was expected, what came
back, and a hint.

The book executes every cell, the exercise's stub included, so a function that
still raises :class:`NotImplementedError` (the stub's ``raise
NotImplementedError("your code here")``) is reported as *not written yet* and
the check returns False instead of failing the book. ``strict=True`` (what an
autograder's test cell passes) turns that into a failure as well. Only
:class:`NotImplementedError` is forgiven: a wrong answer, a function that
returns None, or one that raises anything else fails in either mode.

Strict mode also refuses a function that *is*, or *calls*, the library's own
implementation of the piece (``my_dice = metrics.dice``, or a ``my_dice`` that
returns ``metrics.dice(a, b)``): the check would compare the library with
itself. An alias is found by identity (the function, unwrapped from
``functools.partial``, a bound method or a decorator, is the library's
function or runs its code object). A wrapper is found by watching the calls
made while the student's function runs, with :func:`sys.setprofile` (and
:func:`threading.setprofile` for threads it starts): every Python function
call of that thread reports its code object, so the library function is
recognised whatever name it was imported under and however deep in the
student's helpers it is called, while the check's own calls of the library
(its reference answers) happen outside that window and do not count.
Replacing the library function by a sentinel while the check runs would
miss ``from skullstrip_lib.metrics import dice`` bound before the check,
and would break the check's own reference answers, so it is not used. A
function that switches the profiler off is refused as well. (Code run in
another process, or the library's code copied into the student's cell, is
not seen: that is for the grader's eyes.)

``unseen=<seed>`` replaces the chapter's cases by cases made from that seed
(random masks, affines, fields, shapes, ...; the answers from the library,
computed outside the student's function): what nbgrader's hidden tests run, so
a function tuned to the cases the student saw does not pass on them alone.

============================  ==============================================  =======
check                         the student writes                              chapter
============================  ==============================================  =======
:func:`check_reorient`        an array and its affine reordered to RAS        1
:func:`check_pairing`         the index table: files paired by subject id     2
:func:`check_bias_removal`    a known bias field divided out, gain kept       3
:func:`check_resample`        pull resampling onto a target grid (linear)     4
:func:`check_zscore`          z-score in a mask, with percentile clipping     5
:func:`check_residual_block`  the residual block in Keras (no normalisation)  6
:func:`check_dice_loss`       the soft Dice loss, one value per volume        7
:func:`check_dice`            the Dice coefficient of two masks               8
:func:`check_hausdorff95`     HD95 of two masks, in mm                        8
:func:`check_postprocess`     largest connected component, holes filled       9
:func:`check_gamma`           the augmentation's gamma curve (a drift)        10
:func:`check_baseline`        a classical brain mask (threshold, morphology)  11
============================  ==============================================  =======
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._docs import fill_doc

__all__ = [
    "check_baseline",
    "check_bias_removal",
    "check_dice",
    "check_dice_loss",
    "check_gamma",
    "check_hausdorff95",
    "check_number",
    "check_pairing",
    "check_postprocess",
    "check_reorient",
    "check_resample",
    "check_residual_block",
    "check_zscore",
]

Case = tuple[str, Callable[[Callable[..., Any]], None]]
"""One case of a check: what it shows, and a function that runs the student's code and
raises :class:`AssertionError` (with the expected and the actual answer) if it is wrong."""


# --------------------------------------------------------------------------- the frame
def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", "your function")


def _library_code(library: Sequence[str]) -> dict[Any, str]:
    """The code objects of the library's implementation of a piece, by ``module:name``
    (a decorated function counts with the code it wraps)."""
    codes: dict[Any, str] = {}
    for spec in library:
        module, _, attr = spec.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        shown = f"{module.removeprefix('skullstrip_lib.')}.{attr}"
        while obj is not None:
            code = getattr(obj, "__code__", None)
            if code is not None:
                codes[code] = shown
            obj = getattr(obj, "__wrapped__", None)
    return codes


def _alias_of(func: Any, codes: dict[Any, str]) -> str | None:
    """The library function that *func* is (by identity of its code), or None."""
    seen = set()
    while func is not None and id(func) not in seen:
        seen.add(id(func))
        code = getattr(func, "__code__", None)
        if code in codes:
            return codes[code]
        if isinstance(func, functools.partial):
            func = func.func
        elif inspect.ismethod(func):
            func = func.__func__
        else:
            func = getattr(func, "__wrapped__", None)
    return None


def _refusing(func: Callable[..., Any], codes: dict[Any, str]) -> Callable[..., Any]:
    """*func*, failing if the library's code runs while it does (see the module docstring)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        called: list[str] = []
        previous, previous_threads = sys.getprofile(), threading.getprofile()

        def hook(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and frame.f_code in codes:
                called.append(codes[frame.f_code])
            if previous is not None:
                previous(frame, event, arg)

        sys.setprofile(hook)
        threading.setprofile(hook)
        try:
            out = func(*args, **kwargs)
        finally:
            intact = sys.getprofile() is hook
            sys.setprofile(previous)
            threading.setprofile(previous_threads)
        if called:
            raise AssertionError(f"it calls {called[0]}, the library's own implementation; "
                                 "graded work must compute the answer itself")
        if not intact:
            raise AssertionError("it switched off the profiler that grading watches the "
                                 "library's calls with")
        return out

    return call


def _run(func: Callable[..., Any], cases: Sequence[Case], agrees_with: str, *,
         strict: bool, unseen: int | None,
         unseen_cases: Callable[[np.random.Generator], Sequence[Case]],
         library: Sequence[str] = ()) -> bool:
    """Run the cases in order; print one line per case passed; see the module docstring.

    With an *unseen* seed, the cases are ``unseen_cases(rng)`` instead, *rng* a
    generator seeded with it. *library* (``"module:name"`` strings) is the
    library's own implementation of the piece: with *strict*, a *func* that is
    or calls one of them fails.
    """
    if not callable(func):
        raise TypeError(f"pass the function itself (e.g. check(my_dice)), not {func!r}")
    if unseen is not None:
        cases = unseen_cases(np.random.default_rng(unseen))
    name = _name(func)
    if strict and library:
        codes = _library_code(library)
        alias = _alias_of(func, codes)
        if alias is not None:
            raise AssertionError(f"the function checked ({name}) is {alias} itself, the "
                                 "library's own implementation: graded work must be your own "
                                 "function")
        func = _refusing(func, codes)
    for what, case in cases:
        try:
            case(func)
        except NotImplementedError as exc:
            message = (f"{name} raises NotImplementedError ({exc}): write it in the cell "
                       "above, run that cell, then run this check again")
            if strict:
                raise AssertionError(f"not written yet: {message}") from None
            print(f"not written yet: {message}")
            return False
        except AssertionError as exc:
            raise AssertionError(f"{name} fails the case '{what}': {exc}") from None
        except Exception as exc:
            raise AssertionError(f"{name} fails the case '{what}': it raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        print(f"ok: {what}")
    print(f"all {len(cases)} cases passed: {name} agrees with {agrees_with}")
    return True


def _call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The student's answer; None (a missing ``return``) is a failure of its own."""
    out = func(*args, **kwargs)
    if out is None:
        raise AssertionError("it returned None: did you forget the `return` line?")
    return out


def _array(value: Any, shape: tuple[int, ...] | None = None, what: str = "result") -> np.ndarray:
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"the {what} should be an array of numbers, got "
                             f"{type(value).__name__}") from None
    if shape is not None and out.shape != tuple(shape):
        raise AssertionError(f"the {what} should have shape {tuple(shape)}, got {out.shape}")
    return out


def _number(value: Any, what: str = "result") -> float:
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise AssertionError(f"the {what} should be one number, got {value!r:.80}") from None


def _expect_close(got: np.ndarray, expected: np.ndarray, *, atol: float, hint: str,
                  what: str = "values") -> None:
    bad = ~np.isclose(got, expected, rtol=0, atol=atol, equal_nan=False)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} {what} differ from the expected ones (largest "
            f"difference {np.nanmax(np.abs(got - expected)) if np.isfinite(got).all() else 'NaN'}"
            f"; at index {first} expected {expected[first]:.6g}, got {got[first]:.6g}). "
            f"Hint: {hint}")


def _expect_number(got: float, expected: float, *, tol: float, hint: str) -> None:
    same = (math.isinf(expected) and got == expected) or abs(got - expected) <= tol
    if not same:
        raise AssertionError(f"expected {expected:.6g}, got {got:.6g}. Hint: {hint}")


def check_number(name: str, value: Any, expected: float | None = None, *,
                 tolerance: float = 0.0) -> bool:
    """Check a number a student gives as the answer to an exercise (nbgrader's tests).

    Without *expected*, only that *value* is one finite number (what the
    student's copy of the test shows); with it, that it lies within
    *tolerance* of *expected*, which nbgrader's hidden test computes from the
    chapter's own data.

    Parameters
    ----------
    name : str
        The variable's name, for the message.
    value : object
        The student's answer.
    expected : float or None
        The right answer.
    tolerance : float
        The largest accepted difference, in the answer's unit.

    Returns
    -------
    bool
        True.

    Raises
    ------
    AssertionError
        Not a number, or not within *tolerance* of *expected*.

    Examples
    --------
    >>> check_number("dice", 0.947, 2 * 0.9 / 1.9, tolerance=0.002)
    True
    >>> check_number("dice", "about 0.95")
    Traceback (most recent call last):
    ...
    AssertionError: dice should be one number, got 'about 0.95'
    """
    if isinstance(value, (str, bytes, bool)):
        raise AssertionError(f"{name} should be one number, got {value!r:.80}")
    try:
        got = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise AssertionError(f"{name} should be one number, got {value!r:.80}") from None
    if not math.isfinite(got):
        raise AssertionError(f"{name} should be a finite number, got {got}")
    # (a rounding error's margin, so that 0.949 against 0.947 within 0.002 passes)
    if expected is not None and not abs(got - float(expected)) <= tolerance * (1 + 1e-9) + 1e-12:
        raise AssertionError(f"{name} is {got:.6g}; the chapter's data give {float(expected):.6g} "
                             f"(accepted within ± {tolerance:g})")
    return True


# --------------------------------------------------------------------------- chapter 1
def _reorient_cases() -> list[tuple[str, np.ndarray]]:
    def rotation_x(deg: float) -> np.ndarray:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    ras[:3, 3] = (-3.0, -4.0, -5.0)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = (2.0, 3.0, -2.0)
    # Voxel axes running A, S, L with 1.2 x 3 x 1 mm voxels (a sagittal acquisition).
    asl = np.zeros((4, 4))
    asl[:3, :3] = [[0, 0, -1.0], [1.2, 0, 0], [0, 3.0, 0]]
    asl[:, 3] = (40.0, -30.0, -20.0, 1.0)
    oblique = np.eye(4)
    oblique[:3, :3] = rotation_x(15.0) @ np.diag([-1.0, 1.5, -2.0])
    oblique[:3, 3] = (10.0, -8.0, 6.0)
    return [("a grid already in RAS comes back unchanged", ras),
            ("an LPS grid gets its first two axes reversed", lps),
            ("a sagittal grid (axes A, S, L; voxels 1.2 x 3 x 1 mm) is transposed and "
             "reversed", asl),
            ("a grid tilted by 15 degrees is reordered, not resampled", oblique)]


@fill_doc
def check_reorient(func: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
                   *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check a function that reorders a voxel array and its affine to RAS (chapter 1).

    ``func(data, affine)`` must return ``(data_ras, affine_ras)``: the same
    voxels, reordered (axes transposed and reversed, nothing interpolated) so
    that the voxel axes run towards Right, Anterior and Superior, and the
    affine that maps the new voxel indices to the same world points. The
    answers are nibabel's ``as_closest_canonical`` (what
    :func:`skullstrip_lib.io.load_scan` does), on 3x4x5 arrays whose voxels
    all differ, with RAS, LPS, sagittal (permuted, anisotropic) and oblique affines.

    %(check_sections)s

    Examples
    --------
    >>> import nibabel as nib
    >>> def canonical(data, affine):
    ...     img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    ...     return np.asanyarray(img.dataobj), img.affine
    >>> check_reorient(canonical)  # doctest: +ELLIPSIS
    ok: a grid already in RAS comes back unchanged
    ...
    all 4 cases passed: canonical agrees with nibabel.as_closest_canonical (io.load_scan)
    True
    """
    import nibabel as nib

    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)

    def case(affine: np.ndarray, data: np.ndarray = data) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
            want_data, want_affine = np.asanyarray(img.dataobj), img.affine
            out = _call(f, data.copy(), affine.copy())
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise AssertionError("return two things, (data_ras, affine_ras)")
            got_data = _array(out[0], what="reoriented array")
            got_affine = _array(out[1], (4, 4), "affine")
            if got_data.shape != want_data.shape:
                raise AssertionError(
                    f"the array should have shape {want_data.shape} (axes reordered so that "
                    f"they run R, A, S), got {got_data.shape}. Hint: the voxel axis whose "
                    "affine column points mostly along world x must become axis 0 "
                    "(nib.orientations.io_orientation tells which axis goes where)")
            if sorted(got_data.ravel()) != sorted(data.ravel()):
                raise AssertionError("the voxel values changed. Hint: reorienting only moves "
                                     "voxels (np.transpose, np.flip): nothing is interpolated")
            codes = nib.aff2axcodes(got_affine)
            if codes != ("R", "A", "S"):
                raise AssertionError(
                    f"the returned affine's axes run towards {codes}, not (R, A, S). Hint: "
                    "the affine's columns must follow the axes in their new order, and the "
                    "column of a reversed axis changes sign")
            if not np.array_equal(got_data, want_data):
                raise AssertionError(
                    "the affine is RAS but the voxels are not where it says they are. "
                    "Hint: reverse exactly the axes whose affine column points towards L, P "
                    "or I, and reorder the array and the affine columns the same way")
            if not np.allclose(got_affine, want_affine, atol=1e-6):
                raise AssertionError(
                    f"the array is right but the affine is not: expected\n{want_affine}\n"
                    f"got\n{got_affine}\nHint: the first voxel of a reversed axis is the old "
                    "last one, so the translation moves by (n - 1) times that axis' column "
                    "(nib.orientations.inv_ornt_aff does it)")
        return run

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        cases = []
        for k in range(3):
            shape = tuple(int(n) for n in rng.integers(2, 7, 3))
            values = rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
            cases.append((f"unseen grid {k + 1}: {shape} voxels, axes permuted, reversed "
                          "and tilted at random", case(_random_affine(rng), values)))
        return cases

    cases = [(what, case(affine)) for what, affine in _reorient_cases()]
    return _run(func, cases, "nibabel.as_closest_canonical (io.load_scan)",
                strict=strict, unseen=unseen, unseen_cases=unseen_cases,
                library=("nibabel:as_closest_canonical",
                         "skullstrip_lib.io:load_scan"))


def _random_affine(rng: np.random.Generator, tilt_deg: float = 20.0) -> np.ndarray:
    """A voxel-to-world affine: axes permuted and reversed at random, voxels of 0.7 to 3 mm,
    tilted by up to *tilt_deg* degrees about a random axis, shifted by up to 50 mm."""
    columns = np.zeros((3, 3))
    columns[rng.permutation(3), np.arange(3)] = rng.choice([-1.0, 1.0], 3) * rng.uniform(
        0.7, 3.0, 3)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(-tilt_deg, tilt_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k  # Rodrigues
    affine = np.eye(4)
    affine[:3, :3] = rotation @ columns
    affine[:3, 3] = rng.uniform(-50.0, 50.0, 3)
    return affine


# --------------------------------------------------------------------------- chapter 2
def _nfbs_files(root: Path, subjects: Sequence[str], drop: tuple[str, str] | None = None
                ) -> list[str]:
    from ..datasets import nfbs_filenames

    paths = []
    for subject in subjects:
        (root / subject).mkdir(parents=True, exist_ok=True)
        for kind, name in nfbs_filenames(subject).items():
            if drop == (subject, kind):
                continue
            path = root / subject / name
            path.touch()
            paths.append(str(path))
    return paths


_KIND_WORDS = {"t1w": "T1w image", "brainmask": "brain mask", "brain": "stripped brain"}


@fill_doc
def check_pairing(func: Callable[[list[str]], Any], *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check a function that pairs NFBS files by subject id (chapter 2).

    ``func(paths)`` gets a list of file paths (str, in any order, as
    ``glob`` gives them) and must return a pandas DataFrame with the columns
    ``subject``, ``t1w``, ``brainmask`` and ``brain`` (the paths, as given),
    one row per subject, sorted by subject id: the table
    :func:`skullstrip_lib.datasets.index_dataset` makes, without its
    ``split`` column. Files that are not NFBS images (a README, a JSON
    sidecar) are ignored; a subject that lacks one of its three files is an
    error whose message names the subject (pairing by position would shift
    every later subject onto the wrong mask).

    %(check_sections)s

    Examples
    --------
    >>> def pair_files(paths):
    ...     raise NotImplementedError("your code here")
    >>> check_pairing(pair_files)  # doctest: +ELLIPSIS
    not written yet: pair_files raises NotImplementedError (your code here): write it ...
    False
    """
    import pandas as pd

    from ..datasets import index_dataset

    subjects = ["A00028185", "A00028352", "A00032875", "B00040000"]
    columns = ["subject", "t1w", "brainmask", "brain"]

    def compare(f: Callable[..., Any], paths: list[str], root: Path) -> None:
        want = index_dataset(root).drop(columns="split").reset_index(drop=True)
        got = _call(f, list(paths))
        if not isinstance(got, pd.DataFrame):
            raise AssertionError(f"return a pandas DataFrame, got {type(got).__name__}")
        if [c for c in columns if c not in got.columns]:
            raise AssertionError(f"the table needs the columns {columns}, got "
                                 f"{list(got.columns)}")
        got = got[columns].reset_index(drop=True).astype(str)
        if len(got) != len(want):
            raise AssertionError(f"expected {len(want)} rows (one per subject), got "
                                 f"{len(got)}. Hint: group the files by the subject id in "
                                 "their names")
        if got["subject"].tolist() != want["subject"].tolist():
            raise AssertionError(f"expected the subjects {want['subject'].tolist()} in this "
                                 f"order, got {got['subject'].tolist()}. Hint: the id is "
                                 "what follows 'sub-' in the file name; sort the rows by it")
        for kind in columns[1:]:
            wrong = got.index[got[kind] != want[kind]].tolist()
            if wrong:
                i = wrong[0]
                raise AssertionError(
                    f"subject {want['subject'][i]}: {kind} should be {want[kind][i]}, got "
                    f"{got[kind][i]}. Hint: pair by the subject id in the name, never by "
                    "position in a sorted list (_T1w.nii.gz, _T1w_brainmask.nii.gz and "
                    "_T1w_brain.nii.gz end differently)")

    def in_order(f: Callable[..., Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "NFBS_Dataset"
            compare(f, sorted(_nfbs_files(root, subjects[:3])), root)

    def shuffled(f: Callable[..., Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "NFBS_Dataset"
            paths = _nfbs_files(root, subjects)
            order = np.random.default_rng(3).permutation(len(paths))
            compare(f, [paths[i] for i in order], root)

    def strays(f: Callable[..., Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "NFBS_Dataset"
            paths = _nfbs_files(root, subjects[:2])
            extra = [root / "README.txt", root / subjects[0] / "notes.json",
                     root / subjects[1] / f"sub-{subjects[1]}_ses-NFB3_T1w.json"]
            for path in extra:
                path.touch()
            compare(f, [str(extra[0]), *paths[:4], str(extra[1]), *paths[4:], str(extra[2])],
                    root)

    def missing(f: Callable[..., Any], subjects: Sequence[str] = subjects, lacking: str =
                subjects[1], kind: str = "brainmask") -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "NFBS_Dataset"
            paths = sorted(_nfbs_files(root, subjects, drop=(lacking, kind)))
            try:
                got = f(paths)
            except NotImplementedError:
                raise
            except Exception as exc:  # any error will do, if it names the subject
                if lacking not in str(exc):
                    raise AssertionError(
                        f"it raised {type(exc).__name__}: {exc}, which does not say which "
                        f"subject ({lacking}) lacks its {_KIND_WORDS[kind]}") from None
                return
        if got is None:
            raise AssertionError("it returned None: did you forget the `return` line?")
        raise AssertionError(
            f"subject {lacking} has no {_KIND_WORDS[kind]}, but it returned a table"
            f"{' of ' + str(len(got)) + ' rows' if hasattr(got, '__len__') else ''} instead of "
            "raising an error. Hint: check that every subject has all three files; "
            "zipping sorted lists would have paired the later subjects with their "
            "neighbours' masks")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        ids = sorted({f"{rng.choice(list('ABX'))}{rng.integers(10**7, 10**8)}" for _ in range(6)})

        def unseen_shuffled(f: Callable[..., Any]) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / "NFBS_Dataset"
                paths = _nfbs_files(root, ids)
                (root / "README.md").touch()
                paths.append(str(root / "README.md"))
                compare(f, [paths[i] for i in rng.permutation(len(paths))], root)

        lacking, kind = str(rng.choice(ids)), str(rng.choice(["t1w", "brainmask", "brain"]))
        return [(f"unseen: {len(ids)} subjects of other ids, shuffled, with a README",
                 unseen_shuffled),
                (f"unseen: a subject without its {kind} file is an error naming it",
                 functools.partial(missing, subjects=ids, lacking=lacking, kind=kind))]

    cases: list[Case] = [
        ("three subjects listed in order are paired", in_order),
        ("the same table whatever order the files are listed in", shuffled),
        ("files that are not NFBS images (README, JSON sidecars) are ignored", strays),
        ("a subject without a brain mask is an error naming that subject", missing),
    ]
    return _run(func, cases, "datasets.index_dataset", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases, library=("skullstrip_lib.datasets:index_dataset",))


# --------------------------------------------------------------------------- chapter 3
def _two_tissue_ball(shape: tuple[int, int, int] = (24, 24, 20)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from .evaluation_lab import sphere

    centre = [(n - 1) / 2 for n in shape]
    head = sphere(shape, centre, 9.0)
    core = sphere(shape, centre, 5.0)
    clean = np.where(core, 100.0, np.where(head, 60.0, 0.0)).astype(np.float32)
    return clean, head, core


@fill_doc
def check_bias_removal(func: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], *,
                       strict: bool = False, unseen: int | None = None) -> bool:
    """Check a function that removes a known multiplicative bias field (chapter 3).

    ``func(image, field, mask)`` must return the corrected image: ``image``
    divided by ``field`` rescaled to a geometric mean of 1 inside ``mask``,
    ``image / (field / exp(mean(log(field[mask]))))``. An estimated field (N4's)
    is known only up to a constant factor; with this rescaling the head keeps
    its overall brightness, and the same field times 5 gives the same result.
    The cases are a two-tissue ball (60 and 100) on a 24x24x20 grid multiplied
    by fields from :func:`skullstrip_lib.lessons.bias.simulate_bias_field`;
    each tissue's coefficient of variation
    (:func:`skullstrip_lib.lessons.bias.intensity_cv`) must drop to 0.

    %(check_sections)s

    Examples
    --------
    >>> def remove_field(image, field, mask):
    ...     return image / (field / np.exp(np.log(field[mask]).mean()))
    >>> check_bias_removal(remove_field)  # doctest: +ELLIPSIS
    ok: a field of 1 everywhere changes nothing
    ...
    all 4 cases passed: remove_field agrees with bias.simulate_bias_field's known fields
    True
    """
    from .bias import intensity_cv, simulate_bias_field

    clean, head, core = _two_tissue_ball()
    rim = head & ~core
    field = simulate_bias_field(clean.shape, strength=0.4, seed=2, mask=head)
    biased = clean * field

    def reference(image: np.ndarray, f: np.ndarray, mask: np.ndarray) -> np.ndarray:
        gain = np.exp(np.log(f[mask].astype(np.float64)).mean())
        return image / (f / gain)

    def correct(f: Callable[..., Any], image: np.ndarray, fld: np.ndarray) -> np.ndarray:
        args = (image.copy(), fld.copy(), head.copy())
        got = _array(_call(f, *args), image.shape, "corrected image")
        if not (np.array_equal(args[0], image) and np.array_equal(args[1], fld)):
            raise AssertionError("it changed its input arrays. Hint: compute a new array "
                                 "(image / ...) instead of dividing in place (image /= ...)")
        if not np.isfinite(got).all():
            raise AssertionError(f"{int((~np.isfinite(got)).sum())} voxels are NaN or "
                                 "infinite. Hint: the field is positive everywhere; divide "
                                 "by it directly, or take logs only where the image is > 0")
        return got

    def no_field(f: Callable[..., Any]) -> None:
        got = correct(f, biased / field, np.ones_like(field))
        _expect_close(got, clean, atol=1e-3, what="voxels",
                      hint="a field of 1 everywhere means there is nothing to correct")

    def known_field(f: Callable[..., Any]) -> None:
        got = correct(f, biased, field)
        _expect_close(got, reference(biased, field, head), atol=1e-3, what="voxels",
                      hint="divide the image by the field, scaled to a geometric mean of 1 "
                           "in the mask: field / exp(mean(log(field[mask])))")
        for name, tissue in (("inner", core), ("outer", rim)):
            before, after = intensity_cv(biased, tissue), intensity_cv(got, tissue)
            if not after < 1e-4 < before:
                raise AssertionError(f"the CV of the {name} tissue went from {before:.4f} "
                                     f"to {after:.4f}, not to 0")

    def scaled_field(f: Callable[..., Any]) -> None:
        got = correct(f, biased, 5.0 * field)
        _expect_close(got, reference(biased, field, head), atol=1e-3, what="voxels",
                      hint="N4 gives the field only up to a constant factor: rescale it to "
                           "a geometric mean of 1 inside the mask before dividing, so that "
                           "5 x the field gives the same image and the head keeps its "
                           "brightness")

    def brightness_kept(f: Callable[..., Any]) -> None:
        dim = simulate_bias_field(clean.shape, strength=0.3, seed=7) * 0.5  # gain 0.5 overall
        got = correct(f, clean * dim, dim)
        before = np.exp(np.log((clean * dim)[head]).mean())
        after = np.exp(np.log(got[head]).mean())
        _expect_number(after, before, tol=1e-3 * before,
                       hint="the geometric mean of the image in the mask must not change: "
                            "only the variation across the head is removed")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_field(seed: int, strength: float, factor: float
                         ) -> Callable[[Callable[..., Any]], None]:
            def run(f: Callable[..., Any]) -> None:
                fld = simulate_bias_field(clean.shape, strength=strength, seed=seed, mask=head)
                got = correct(f, clean * fld, factor * fld)
                _expect_close(got, reference(clean * fld, fld, head), atol=1e-3,
                              what="voxels", hint="divide by the field rescaled to a "
                              "geometric mean of 1 inside the mask")
            return run

        return [(f"unseen field {k + 1}: strength {strength:.2f}, known up to a factor "
                 f"{factor:.2f}", unseen_field(int(rng.integers(100, 10**6)), strength, factor))
                for k, (strength, factor) in enumerate(
                    zip(rng.uniform(0.15, 0.6, 3), rng.uniform(0.2, 8.0, 3), strict=True))]

    cases: list[Case] = [
        ("a field of 1 everywhere changes nothing", no_field),
        ("a known smooth field is removed: each tissue is flat again (CV 0)", known_field),
        ("the field known only up to a factor (5 x the field) gives the same image",
         scaled_field),
        ("the head keeps its overall brightness (geometric mean in the mask)",
         brightness_kept),
    ]
    # No function of the library divides out a given field (n4_correct estimates one).
    return _run(func, cases, "bias.simulate_bias_field's known fields",
                strict=strict, unseen=unseen, unseen_cases=unseen_cases)


# --------------------------------------------------------------------------- chapter 4
@fill_doc
def check_resample(func: Callable[[np.ndarray, np.ndarray, np.ndarray, Sequence[int]],
                                  np.ndarray], *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check a pull resampling onto a target grid, linear interpolation (chapter 4).

    ``func(data, source_affine, target_affine, target_shape)`` must return the
    array on the target grid: for each target voxel, its world point
    (``target_affine``), the source voxel coordinates of that point
    (``inv(source_affine)``), and the linearly interpolated source value there
    (``scipy.ndimage.map_coordinates(..., order=1, cval=0)``); 0 outside the
    source's field of view. The answers are
    :func:`skullstrip_lib.preprocess.to_model_grid` with ``order=1,
    antialias=False``, and, where they can be worked out by hand (a shift by
    one voxel, a grid of half the voxel size), those values.

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib import preprocess
    >>> def pull(data, source_affine, target_affine, target_shape):
    ...     grid = preprocess.ModelGrid(tuple(target_shape), target_affine, data.shape,
    ...                                 source_affine)
    ...     return preprocess.to_model_grid(data, grid, order=1, antialias=False)
    >>> check_resample(pull)  # doctest: +ELLIPSIS
    ok: the same grid gives the same array
    ...
    True
    """
    from ..preprocess import ModelGrid, to_model_grid

    rng = np.random.default_rng(4)
    data = rng.uniform(0.0, 100.0, (10, 12, 8)).astype(np.float32)
    source = np.diag([2.0, 2.0, 2.0, 1.0])
    source[:3, 3] = (-9.0, -11.0, -7.0)
    scale = float(np.abs(data).max())

    def library(src: np.ndarray, tgt: np.ndarray, shape: Sequence[int],
                values: np.ndarray = data) -> np.ndarray:
        grid = ModelGrid(tuple(int(n) for n in shape), tgt, values.shape, src)
        return to_model_grid(values, grid, order=1, antialias=False).astype(np.float64)

    def pulled(f: Callable[..., Any], src: np.ndarray, tgt: np.ndarray, shape: Sequence[int],
               values: np.ndarray = data) -> np.ndarray:
        args = (values.copy(), src.copy(), tgt.copy(), tuple(shape))
        return _array(_call(f, *args), tuple(shape), "resampled array")

    pull_hint = ("for each target voxel ijk, its world point is target_affine @ ijk and "
                 "the source voxel holding it is inv(source_affine) @ that point: the matrix "
                 "is inv(source_affine) @ target_affine; give map_coordinates the "
                 "coordinates as an array of shape (3, n_voxels), order=1, cval=0")

    def same_grid(f: Callable[..., Any]) -> None:
        got = pulled(f, source, source, data.shape)
        _expect_close(got, data.astype(np.float64), atol=1e-4 * scale, hint=pull_hint)

    def shifted(f: Callable[..., Any]) -> None:
        target = source.copy()
        target[0, 3] += 2.0  # one source voxel further along x
        got = pulled(f, source, target, data.shape)
        want = np.zeros(data.shape)
        want[:-1] = data[1:]
        if np.allclose(got[:-1], want[:-1], atol=1e-4 * scale) and not np.allclose(
                got[-1], 0.0, atol=1e-4 * scale):
            raise AssertionError("the last slab of the target lies outside the source grid "
                                 "and should be 0, it is not. Hint: map_coordinates(..., "
                                 "mode='constant', cval=0), not the edge value")
        _expect_close(got, want, atol=1e-4 * scale,
                      hint="target voxel i sits where source voxel i + 1 is, so it takes "
                           "that value, and the last one falls outside (0). If your result "
                           "moved the other way, the matrix is inverted: " + pull_hint)

    def finer(f: Callable[..., Any]) -> None:
        ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None] * 10.0,
                               (10, 4, 4)).copy()
        src = np.diag([2.0, 2.0, 2.0, 1.0])
        target = np.diag([1.0, 2.0, 2.0, 1.0])  # half the voxel size along x
        got = pulled(f, src, target, (19, 4, 4), ramp)
        want = np.broadcast_to(np.arange(19)[:, None, None] * 5.0, (19, 4, 4))
        _expect_close(got, want, atol=1e-3,
                      hint="target voxel 2k + 1 lies halfway between source voxels k and "
                           "k + 1: linear interpolation gives the mean of the two (order=1)")

    def oblique(f: Callable[..., Any]) -> None:
        src = np.diag([-1.5, -2.0, 2.5, 1.0])  # an LPS source with anisotropic voxels
        src[:3, 3] = (7.0, 11.0, -8.0)
        c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
        target = np.eye(4)
        target[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) * 1.7
        target[:3, 3] = (-6.0, -7.0, -9.0)
        shape = (9, 8, 9)
        got = pulled(f, src, target, shape)
        want = library(src, target, shape)
        if np.allclose(got, library(target, src, shape), atol=1e-4 * scale) and not np.allclose(
                got, want, atol=1e-4 * scale):
            raise AssertionError("this is the resampling with the two affines swapped "
                                 "(pushing, not pulling). Hint: " + pull_hint)
        _expect_close(got, want, atol=1e-4 * scale, hint=pull_hint)

    def outside(f: Callable[..., Any]) -> None:
        target = source.copy()
        target[:3, 3] -= 30.0  # mostly before the source's first voxel
        got = pulled(f, source, target, data.shape)
        want = library(source, target, data.shape)
        _expect_close(got, want, atol=1e-4 * scale,
                      hint="target voxels whose point falls outside the source grid get 0 "
                           "(map_coordinates(..., mode='constant', cval=0))")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_grid(src: np.ndarray, tgt: np.ndarray, shape: tuple[int, ...]
                        ) -> Callable[[Callable[..., Any]], None]:
            def run(f: Callable[..., Any]) -> None:
                _expect_close(pulled(f, src, tgt, shape), library(src, tgt, shape),
                              atol=1e-4 * scale, hint=pull_hint)
            return run

        cases = []
        for k in range(3):
            src = _random_affine(rng, tilt_deg=10.0)
            centre = src @ np.array([*(np.array(data.shape) - 1) / 2, 1.0])
            tgt = _random_affine(rng, tilt_deg=30.0)
            shape = tuple(int(n) for n in rng.integers(5, 11, 3))
            # the target grid centred on the source's field of view, so most of it is inside
            tgt[:3, 3] += centre[:3] - (tgt @ np.array([*(np.array(shape) - 1) / 2, 1.0]))[:3]
            cases.append((f"unseen grids {k + 1}: random source and target affines, target "
                          f"shape {shape}", unseen_grid(src, tgt, shape)))
        return cases

    cases: list[Case] = [
        ("the same grid gives the same array", same_grid),
        ("a target grid shifted by one voxel reads the next source voxel", shifted),
        ("a grid of half the voxel size interpolates halfway values", finer),
        ("an LPS source and a rotated target agree with the library", oblique),
        ("target voxels outside the source's field of view are 0", outside),
    ]
    return _run(func, cases, "preprocess.to_model_grid(order=1, antialias=False)",
                strict=strict, unseen=unseen, unseen_cases=unseen_cases,
                library=("skullstrip_lib.preprocess:to_model_grid",
                         "skullstrip_lib.preprocess:from_model_grid"))


# --------------------------------------------------------------------------- chapter 5
@fill_doc
def check_zscore(func: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                 strict: bool = False, unseen: int | None = None) -> bool:
    """Check a z-score normalisation inside a mask, with percentile clipping (chapter 5).

    ``func(data, mask)`` must clip the whole volume to the 0.5th and 99.5th
    percentiles of the intensities *inside the mask*, then subtract the mean
    and divide by the standard deviation of the clipped intensities inside the
    mask (the air outside is clipped and shifted too): what
    :func:`skullstrip_lib.preprocess.normalize_intensity` does by default. The
    cases are a small head in a large field of view, one very bright voxel,
    and an intensity offset and scale.

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib import preprocess
    >>> check_zscore(preprocess.normalize_intensity)  # doctest: +ELLIPSIS
    ok: a head gets mean 0 and standard deviation 1 inside its mask
    ...
    True
    """
    from ..preprocess import normalize_intensity
    from .evaluation_lab import sphere

    rng = np.random.default_rng(5)
    shape = (30, 30, 30)
    head = sphere(shape, (14.5, 14.5, 14.5), 8.0)  # about 8 % of the volume
    data = np.where(head, rng.normal(500.0, 80.0, shape), rng.uniform(0.0, 10.0, shape))
    data = data.astype(np.float32)

    def normalised(f: Callable[..., Any], values: np.ndarray) -> np.ndarray:
        return _array(_call(f, values.copy(), head.copy()), values.shape, "normalised image")

    def whole_volume(values: np.ndarray) -> np.ndarray:
        return normalize_intensity(values, None).astype(np.float64)

    def no_clip(values: np.ndarray) -> np.ndarray:
        return (values - values[head].mean()) / values[head].std()

    def compare(got: np.ndarray, values: np.ndarray, hint: str) -> None:
        want = normalize_intensity(values, head).astype(np.float64)
        if np.allclose(got, whole_volume(values), atol=1e-3):
            raise AssertionError("this is the z-score of the whole volume. Hint: take the "
                                 "percentiles, the mean and the standard deviation of "
                                 "data[mask] only; the air would otherwise set the scale")
        if np.allclose(got[head], no_clip(values)[head], atol=1e-3) and not np.allclose(
                got[head], want[head], atol=1e-3):
            raise AssertionError("nothing was clipped. Hint: np.percentile(data[mask], "
                                 "(0.5, 99.5)) gives the range; np.clip the data to it first")
        if np.allclose(got[head], want[head], atol=1e-3) and not np.allclose(got, want,
                                                                             atol=1e-3):
            raise AssertionError("inside the mask it is right, outside it is not. Hint: "
                                 "clip and normalise the whole volume with the head's "
                                 "statistics (the air becomes about -3, not 0)")
        _expect_close(got, want, atol=1e-3, what="voxels", hint=hint)

    def head_stats(f: Callable[..., Any]) -> None:
        got = normalised(f, data)
        mean, std = float(got[head].mean()), float(got[head].std())
        if abs(mean) > 1e-3 or abs(std - 1.0) > 1e-3:
            compare(got, data, "subtract the mean and divide by the standard deviation")
            raise AssertionError(f"inside the mask the mean is {mean:.4f} and the standard "
                                 f"deviation {std:.4f}, expected 0 and 1")
        compare(got, data, "subtract the mean and divide by the standard deviation of the "
                           "clipped intensities inside the mask")

    def spike(f: Callable[..., Any]) -> None:
        spiked = data.copy()
        spiked[14, 14, 14] = 100 * data[head].max()
        compare(normalised(f, spiked), spiked,
                "clip to the 0.5th and 99.5th percentiles inside the mask before the mean "
                "and standard deviation: one voxel must not set the scale")

    def air_too(f: Callable[..., Any]) -> None:
        compare(normalised(f, data), data,
                "the whole volume is clipped to the head's percentiles and normalised with "
                "the head's mean and standard deviation")

    def offset(f: Callable[..., Any]) -> None:
        got = normalised(f, 3.0 * data + 1000.0)
        compare(got, data, "a z-score does not depend on the units: 3 x data + 1000 must "
                           "give the same result as data")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_head(k: int) -> Case:
            size = int(rng.integers(20, 36))
            mask = sphere((size,) * 3, rng.uniform(size / 3, 2 * size / 3, 3),
                          rng.uniform(size / 5, size / 3))
            values = np.where(mask, rng.gamma(rng.uniform(2, 9), rng.uniform(20, 90),
                                              mask.shape),
                              rng.uniform(0.0, 30.0, mask.shape)).astype(np.float32)
            values[tuple(np.argwhere(mask)[0])] *= 50.0  # one bright voxel in the head

            def run(f: Callable[..., Any]) -> None:
                got = _array(_call(f, values.copy(), mask.copy()), values.shape,
                             "normalised image")
                _expect_close(got, normalize_intensity(values, mask).astype(np.float64),
                              atol=1e-3, what="voxels", hint="clip the whole volume to the "
                              "0.5th and 99.5th percentiles of data[mask], then subtract the "
                              "mean and divide by the standard deviation of the clipped "
                              "data[mask]")
            return (f"unseen head {k + 1}: {size}^3 voxels, another intensity distribution "
                    "and one bright voxel", run)

        return [unseen_head(k) for k in range(3)]

    cases: list[Case] = [
        ("a head gets mean 0 and standard deviation 1 inside its mask", head_stats),
        ("one voxel 100 times brighter than the head is clipped", spike),
        ("the air outside the mask is clipped and normalised with the head's numbers",
         air_too),
        ("3 x data + 1000 gives the same result as data", offset),
    ]
    return _run(func, cases, "preprocess.normalize_intensity", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases,
                library=("skullstrip_lib.preprocess:normalize_intensity",))


# --------------------------------------------------------------------------- chapter 6
@fill_doc
def check_residual_block(func: Callable[[Any, int], Any], *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check a residual block built from Keras layers (chapter 6).

    ``func(x, filters)`` gets a Keras tensor ``x`` of shape ``(batch, X, Y, Z,
    channels)`` and must return the block's output: Conv3D 3x3x3 ("same"
    padding) → ReLU → Conv3D 3x3x3 on the first convolution's output, plus the
    shortcut (``x`` itself, or a 1x1x1 Conv3D of it when ``channels !=
    filters``), then ReLU. No normalisation: the block of
    :func:`skullstrip_lib.model.build_unet` with ``norm=None`` (whose
    convolutions keep their biases). The checks compare the output shape and
    the parameter count with the library's block, and probe the wiring: with
    every weight 0 the block must return ``ReLU(x)`` (the shortcut), and an
    impulse must spread over 5x5x5 voxels (two 3x3x3 convolutions in a row;
    the source article's defect, both reading ``x``, spreads it over 3x3x3).

    %(check_sections)s

    Examples
    --------
    >>> def residual_block(x, filters):
    ...     raise NotImplementedError("your code here")
    >>> check_residual_block(residual_block)  # doctest: +ELLIPSIS
    not written yet: residual_block raises NotImplementedError (your code here): ...
    False
    """
    import keras

    from ..model import build_unet

    def block_model(f: Callable[..., Any], c_in: int, filters: int, size: int = 8):
        inputs = keras.Input((size, size, size, c_in))
        try:
            out = _call(f, inputs, filters)
        except (NotImplementedError, AssertionError):
            raise
        except Exception as exc:
            hint = (" Hint: when the channel count changes (here {c_in} -> {filters}), the "
                    "shortcut needs a 1x1x1 Conv3D to `filters` channels, so that Add gets "
                    "tensors of the same shape" if c_in != filters else "")
            raise AssertionError(f"building the block on {c_in} input channels with "
                                 f"filters={filters} raised {type(exc).__name__}: {exc}."
                                 + hint.format(c_in=c_in, filters=filters)) from exc
        try:
            return keras.Model(inputs, out)
        except Exception as exc:
            raise AssertionError(f"return the block's output tensor (a Keras tensor made "
                                 f"from x by layers), got {type(out).__name__}: {exc}"
                                 ) from None

    def library_params(c_in: int, filters: int) -> int:
        net = build_unet((8, 8, 8, c_in), base_filters=filters, depth=1, dropout=0.0,
                         norm=None)
        return int(net.count_params()) - (filters + 1)  # less the output layer

    def shape_case(f: Callable[..., Any]) -> None:
        model = block_model(f, 1, 8)
        if tuple(model.output_shape) != (None, 8, 8, 8, 8):
            raise AssertionError(f"expected the output shape (None, 8, 8, 8, 8), got "
                                 f"{model.output_shape}. Hint: padding='same' keeps the grid; "
                                 "every convolution of the block has `filters` channels")

    def params(c_in: int, filters: int) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            got = int(block_model(f, c_in, filters).count_params())
            want = library_params(c_in, filters)
            if got == want:
                return
            projection = c_in * filters + filters
            hints = {want - 2 * filters: "without a normalisation the convolutions keep "
                                         "their bias (Keras' default, use_bias=True)"}
            if c_in != filters:
                hints[want - projection] = ("when the channel count changes, the shortcut "
                                            "needs a 1x1x1 Conv3D to `filters` channels")
            else:
                hints[want + projection] = ("when the channel count does not change, the "
                                            "shortcut is x itself, without a convolution")
            hint = hints.get(got, "two Conv3D(filters, 3, padding='same') with bias "
                                  "(27 c_in f + f and 27 f² + f weights), a 1x1x1 projection "
                                  "only when c_in != filters, and no normalisation layers")
            raise AssertionError(f"{c_in} -> {filters} channels should have {want} weights "
                                 f"(the library's block, norm=None), got {got}. Hint: {hint}")
        return run

    def shortcut(f: Callable[..., Any]) -> None:
        model = block_model(f, 4, 4)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
        x = np.random.default_rng(6).normal(size=(1, 8, 8, 8, 4)).astype(np.float32)
        got = _array(keras.ops.convert_to_numpy(model(x, training=False)), x.shape,
                     "block output")
        _expect_close(got, np.maximum(x, 0.0), atol=1e-6,
                      hint="with all weights 0 the convolutions give 0, so the block must "
                           "return ReLU(x): add x (the shortcut) to the second convolution's "
                           "output with keras.layers.Add, then apply the ReLU")

    def chained(f: Callable[..., Any]) -> None:
        model = block_model(f, 2, 2, size=11)
        model.set_weights([np.full_like(w, 0.01) if w.ndim > 1 else np.zeros_like(w)
                           for w in model.get_weights()])
        x = np.zeros((1, 11, 11, 11, 2), np.float32)
        x[0, 5, 5, 5, :] = 1.0
        got = _array(keras.ops.convert_to_numpy(model(x, training=False)), x.shape,
                     "block output")
        reached = np.argwhere(np.abs(got[0, ..., 0]) > 1e-12)
        width = int(reached[:, 0].max() - reached[:, 0].min() + 1) if len(reached) else 0
        if width != 5:
            hint = ("the second convolution reads the block input instead of the first "
                    "convolution's output (the source article's defect)" if width == 3 else
                    "two 3x3x3 convolutions, the second applied to the first's output")
            raise AssertionError(f"an impulse should spread over 5 voxels along each axis, "
                                 f"it spread over {width}. Hint: {hint}")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        c_in, filters, same = (int(n) for n in rng.integers(2, 7, 3))
        filters += c_in  # a change of channel count, then none
        return [(f"unseen: {c_in} -> {filters} channels, the library's parameter count",
                 params(c_in, filters)),
                (f"unseen: {same} -> {same} channels, the library's parameter count",
                 params(same, same)),
                ("an impulse spreads over 5x5x5 voxels: the second convolution reads the "
                 "first", chained)]

    cases: list[Case] = [
        ("1 -> 8 channels: the output has 8 channels on the same grid", shape_case),
        ("with every weight 0 the block returns ReLU(x): the shortcut is added", shortcut),
        ("an impulse spreads over 5x5x5 voxels: the second convolution reads the first",
         chained),
        ("1 -> 8 channels: the library's parameter count (with a 1x1x1 projection)",
         params(1, 8)),
        ("8 -> 8 channels: the library's parameter count (x itself is the shortcut)",
         params(8, 8)),
    ]
    return _run(func, cases, "the residual block of model.build_unet(norm=None)",
                strict=strict, unseen=unseen, unseen_cases=unseen_cases,
                library=("skullstrip_lib.model:residual_block",
                         "skullstrip_lib.model:residual_sum",
                         "skullstrip_lib.model:build_unet"))


# --------------------------------------------------------------------------- chapter 7
@fill_doc
def check_dice_loss(func: Callable[..., Any], *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check a soft Dice loss, one value per volume of a batch (chapter 7).

    ``func(y_true, y_pred, smooth=1.0)`` gets float32 arrays of shape
    ``(batch, X, Y, Z, 1)`` and must return one loss per volume, shape
    ``(batch,)``: ``1 - (2 Σ t p + smooth) / (Σ t + Σ p + smooth)``, the sums
    over every axis but the batch axis (NumPy or ``keras.ops`` both do). The
    answers are worked out by hand on 4x4x4 volumes (identical, disjoint,
    half-overlapping masks, a soft prediction, two empty masks) and compared
    with :func:`skullstrip_lib.losses.soft_dice_loss` on random predictions.

    %(check_sections)s

    Examples
    --------
    >>> def dice_loss(y_true, y_pred, smooth=1.0):
    ...     return None  # the return line is missing
    >>> check_dice_loss(dice_loss)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: dice_loss fails the case ...: it returned None: did you forget ...
    """

    def volume(*blocks: tuple[slice, ...]) -> np.ndarray:
        v = np.zeros((4, 4, 4, 1), np.float32)
        for block in blocks:
            v[block] = 1.0
        return v

    eight = volume((slice(0, 2), slice(0, 2), slice(0, 2)))    # 8 voxels
    other = volume((slice(2, 4), slice(2, 4), slice(2, 4)))    # 8 voxels, disjoint
    half = volume((slice(1, 3), slice(0, 2), slice(0, 2)))     # 8 voxels, 4 shared with eight

    def losses_of(f: Callable[..., Any], t: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
        got = _array(_call(f, t.copy(), p.copy(), smooth=1.0), what="loss")
        if got.shape != (n,):
            raise AssertionError(f"a batch of {n} volume(s) should give {n} loss(es), shape "
                                 f"({n},), got shape {got.shape}. Hint: sum over every axis "
                                 "but the batch axis, axis=(1, 2, 3, 4)")
        return got

    def by_hand(t: np.ndarray, p: np.ndarray, want: float, formula: str
                ) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            got = float(losses_of(f, t[None], p[None], 1)[0])
            hint = f"by hand, {formula}"
            inter, total = float((t * p).sum()), float(t.sum() + p.sum())
            if abs(got - want) > 1e-5 and abs(got - (1 - (inter + 1) / (total + 1))) < 1e-5:
                hint += "; your value lacks the factor 2 on the intersection"
            elif abs(got - want) > 1e-5 and abs(got - (1 - 2 * inter / total)) < 1e-5:
                hint += "; add `smooth` to the numerator and to the denominator"
            _expect_number(got, want, tol=1e-5, hint=hint)
        return run

    def empty(f: Callable[..., Any]) -> None:
        zero = np.zeros((1, 4, 4, 4, 1), np.float32)
        got = float(losses_of(f, zero, zero, 1)[0])
        _expect_number(got, 0.0, tol=1e-6, hint="two empty masks agree perfectly: "
                       "1 - (0 + smooth) / (0 + smooth) = 0; without smooth it is 0/0")

    def per_volume(f: Callable[..., Any]) -> None:
        got = losses_of(f, np.stack([eight, eight]), np.stack([eight, other]), 2)
        want = np.array([0.0, 1 - 1 / 17])
        _expect_close(got, want, atol=1e-5, what="losses",
                      hint="one loss per volume: a perfect one (0) and a disjoint one "
                           "(16/17); summing over the batch too would mix them")

    def library(f: Callable[..., Any]) -> None:
        import keras

        from ..losses import soft_dice_loss

        rng = np.random.default_rng(7)
        t = (rng.random((3, 4, 4, 4, 1)) < 0.4).astype(np.float32)
        p = rng.random((3, 4, 4, 4, 1)).astype(np.float32)
        want = keras.ops.convert_to_numpy(soft_dice_loss(t, p)).astype(np.float64)
        _expect_close(losses_of(f, t, p, 3), want, atol=1e-5, what="losses",
                      hint="1 - (2 Σ t·p + smooth) / (Σ t + Σ p + smooth) per volume, with "
                           "the probabilities themselves, not thresholded")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_batch(k: int) -> Case:
            n = int(rng.integers(2, 5))
            shape = (n, *(int(d) for d in rng.integers(3, 7, 3)), 1)
            t = (rng.random(shape) < rng.uniform(0.1, 0.6)).astype(np.float32)
            p = (rng.random(shape) ** rng.uniform(0.5, 3.0)).astype(np.float32)

            def run(f: Callable[..., Any]) -> None:
                import keras

                from ..losses import soft_dice_loss

                want = keras.ops.convert_to_numpy(soft_dice_loss(t, p)).astype(np.float64)
                _expect_close(losses_of(f, t, p, n), want, atol=1e-5, what="losses",
                              hint="1 - (2 Σ t·p + smooth) / (Σ t + Σ p + smooth) per volume")
            return (f"unseen batch {k + 1}: {n} volumes of {shape[1:4]} voxels", run)

        return [unseen_batch(k) for k in range(3)]

    cases: list[Case] = [
        ("identical masks give a loss of 0", by_hand(eight, eight, 0.0,
                                                       "1 - (2·8 + 1) / (8 + 8 + 1) = 0")),
        ("disjoint masks of 8 voxels give 1 - 1/17 = 0.941",
         by_hand(eight, other, 1 - 1 / 17, "1 - (0 + 1) / (8 + 8 + 1) = 16/17")),
        ("masks of 8 voxels sharing 4 give 1 - 9/17 = 0.471",
         by_hand(eight, half, 1 - 9 / 17, "1 - (2·4 + 1) / (8 + 8 + 1) = 8/17")),
        ("a prediction of 0.5 everywhere against 8 voxels gives 1 - 9/41 = 0.780",
         by_hand(eight, np.full_like(eight, 0.5), 1 - 9 / 41,
                 "1 - (2·4 + 1) / (8 + 32 + 1) = 32/41: the probabilities count, "
                 "not a thresholded mask")),
        ("two empty masks give 0 (the smooth term)", empty),
        ("a batch of two gives one loss per volume", per_volume),
        ("random soft predictions agree with losses.soft_dice_loss", library),
    ]
    return _run(func, cases, "losses.soft_dice_loss", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases,
                library=("skullstrip_lib.losses:soft_dice_loss",
                         "skullstrip_lib.losses:dice_bce_loss"))


# --------------------------------------------------------------------------- chapter 8
def _cube(shape: tuple[int, ...], lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


def _random_balls(rng: np.random.Generator, size: int, min_radius: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Two balls in a ``size``^3 grid: centres in its middle third, radii from *min_radius*
    to ``size / 3`` voxels (a pair of masks for the unseen cases)."""
    from .evaluation_lab import sphere

    def ball() -> np.ndarray:
        return sphere((size,) * 3, rng.uniform(size / 3, 2 * size / 3, 3),
                      rng.uniform(min_radius, size / 3))

    return ball(), ball()


@fill_doc
def check_dice(func: Callable[[np.ndarray, np.ndarray], float], *,
               strict: bool = False, unseen: int | None = None) -> bool:
    """Check a Dice coefficient of two masks (chapter 8).

    ``func(pred, ref)`` gets two boolean arrays of the same shape and must
    return ``2 |P ∩ R| / (|P| + |R|)``, and 1 for two empty masks (this
    library's convention: they agree perfectly). The cases are cubes whose
    Dice is known by hand, and :func:`skullstrip_lib.metrics.dice` on balls.

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib import metrics
    >>> check_dice(metrics.dice)  # doctest: +ELLIPSIS
    ok: two identical cubes give Dice 1
    ...
    True
    """
    from .evaluation_lab import sphere

    shape = (12, 12, 12)
    a = _cube(shape, (2, 2, 2), (6, 6, 6))        # 64 voxels
    b = _cube(shape, (4, 2, 2), (8, 6, 6))        # 64 voxels, 32 shared with a
    inner = _cube(shape, (3, 3, 3), (5, 5, 5))    # 8 voxels inside a
    far = _cube(shape, (8, 8, 8), (12, 12, 12))   # disjoint from a
    empty = np.zeros(shape, bool)

    def case(pred: np.ndarray, ref: np.ndarray, want: float, formula: str
             ) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            got = _number(_call(f, pred.copy(), ref.copy()), "Dice")
            if abs(got - want) <= 1e-9:
                return
            inter, union = int((pred & ref).sum()), int((pred | ref).sum())
            hint = f"by hand, {formula}"
            if want and abs(got - want / 2) <= 1e-9:
                hint += "; your value is half of it: the factor 2 is missing"
            elif union and abs(got - inter / union) <= 1e-9:
                hint += "; your value is the IoU (intersection / union), not the Dice"
            elif math.isnan(got):
                hint += "; two empty masks should give 1 by this library's convention (0/0 " \
                        "otherwise)"
            _expect_number(got, want, tol=1e-9, hint=hint)
        return run

    def balls(f: Callable[..., Any]) -> None:
        from ..metrics import dice

        p = sphere((40, 40, 40), (20, 20, 20), 10.0)
        r = sphere((40, 40, 40), (22, 19, 20), 11.0)
        _expect_number(_number(_call(f, p, r), "Dice"), dice(p, r), tol=1e-9,
                       hint="2 |P ∩ R| / (|P| + |R|), counting voxels (np.sum of booleans)")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        cases = []
        for k in range(3):
            size = int(rng.integers(16, 40))
            p, r = _random_balls(rng, size, min_radius=size / 8)
            from ..metrics import dice

            cases.append((f"unseen balls {k + 1} in a {size}^3 grid",
                          case(p, r, dice(p, r), "2 |P ∩ R| / (|P| + |R|)")))
        return cases

    cases: list[Case] = [
        ("two identical cubes give Dice 1", case(a, a.copy(), 1.0, "2·64 / (64 + 64) = 1")),
        ("two cubes of 64 voxels sharing 32 give 0.5",
         case(a, b, 0.5, "2·32 / (64 + 64) = 0.5")),
        ("a cube of 8 voxels inside one of 64 gives 16/72 = 0.222",
         case(inner, a, 16 / 72, "2·8 / (8 + 64) = 0.222")),
        ("disjoint cubes give 0", case(a, far, 0.0, "2·0 / (64 + 64) = 0")),
        ("two empty masks give 1 (this library's convention)",
         case(empty, empty.copy(), 1.0, "two empty masks agree perfectly: 1")),
        ("an empty prediction of a non-empty mask gives 0",
         case(empty, a, 0.0, "2·0 / (0 + 64) = 0")),
        ("two overlapping balls agree with metrics.dice", balls),
    ]
    return _run(func, cases, "metrics.dice", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases,
                library=("skullstrip_lib.metrics:dice",
                         "skullstrip_lib.metrics:evaluate_masks"))


@fill_doc
def check_hausdorff95(func: Callable[..., float], *, strict: bool = False,
        unseen: int | None = None) -> bool:
    """Check the 95th-percentile Hausdorff distance of two masks (chapter 8).

    ``func(pred, ref, spacing)`` gets two boolean 3D arrays and the voxel size
    (3 floats, mm) and must return, in mm, the 95th percentile
    (``np.percentile(..., 95)``) of the pooled distances from every surface
    voxel of each mask to the nearest surface voxel of the other (a surface
    voxel: in the mask, with at least one of its 6 face neighbours outside);
    0 for two empty masks, ``inf`` when exactly one is empty. The answers are
    :func:`skullstrip_lib.metrics.hausdorff95`, and by hand where that is
    easy (two voxels, identical masks).

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib import metrics
    >>> check_hausdorff95(metrics.hausdorff95)  # doctest: +ELLIPSIS
    ok: two identical cubes are 0 mm apart
    ...
    True
    """
    from ..metrics import hausdorff95

    shape = (24, 24, 24)
    cube = _cube(shape, (4, 4, 4), (14, 14, 14))
    moved = _cube(shape, (6, 4, 4), (16, 14, 14))
    empty = np.zeros(shape, bool)
    one = np.zeros((5, 5, 5), bool)
    one[1, 2, 2] = True
    two = np.zeros((5, 5, 5), bool)
    two[4, 2, 2] = True
    stray = cube.copy()
    stray[22, 22, 22] = True

    def case(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float],
             want: float, hint: str) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            got = _number(_call(f, pred.copy(), ref.copy(), spacing), "HD95")
            if (math.isinf(want) and got == want) or abs(got - want) <= 1e-6:
                return
            extra = ""
            if pred.any() and ref.any():
                from ..metrics import surface_distances

                pooled = np.concatenate(surface_distances(pred, ref, spacing))
                if abs(got - pooled.max()) <= 1e-6:
                    extra = ("; your value is the largest distance (the plain Hausdorff "
                             "distance): take the 95th percentile of the pooled distances")
                elif spacing != (1.0, 1.0, 1.0) and abs(got - float(np.percentile(
                        np.concatenate(surface_distances(pred, ref, 1.0)), 95))) <= 1e-6:
                    extra = "; your value is in voxels: give the distance transform the " \
                            "voxel size (distance_transform_edt(..., sampling=spacing))"
            _expect_number(got, want, tol=1e-6, hint=hint + extra)
        return run

    lib = hausdorff95
    surface_hint = ("pool the distances from each mask's surface voxels to the other "
                    "mask's surface (ndimage.distance_transform_edt(~surface, "
                    "sampling=spacing)), both ways, then np.percentile(pooled, 95)")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        cases = []
        for k in range(3):
            size = int(rng.integers(16, 32))
            p, r = _random_balls(rng, size, min_radius=size / 6)
            spacing = tuple(float(v) for v in np.round(rng.uniform(0.5, 3.0, 3), 2))
            cases.append((f"unseen balls {k + 1} in a {size}^3 grid of {spacing} mm voxels",
                          case(p, r, spacing, lib(p, r, spacing), surface_hint)))
        return cases

    cases: list[Case] = [
        ("two identical cubes are 0 mm apart",
         case(cube, cube, (1.0, 1.0, 1.0), 0.0, "every surface voxel lies on the other "
              "surface")),
        ("two voxels 3 voxels apart along an axis of 2 mm voxels are 6 mm apart",
         case(one, two, (2.0, 1.0, 1.0), 6.0, "the distance is in mm: 3 voxels x 2 mm")),
        ("a cube moved by 2 voxels agrees with metrics.hausdorff95",
         case(moved, cube, (1.0, 1.0, 1.0), lib(moved, cube), surface_hint)),
        ("one stray voxel far away is among the 5 % ignored",
         case(stray, cube, (1.0, 1.0, 1.0), lib(stray, cube), surface_hint)),
        ("the voxel size counts: 1 x 1 x 3 mm voxels",
         case(moved, cube, (1.0, 1.0, 3.0), lib(moved, cube, (1.0, 1.0, 3.0)),
              surface_hint)),
        ("two empty masks give 0",
         case(empty, empty, (1.0, 1.0, 1.0), 0.0, "nothing to disagree about: 0 mm, by "
              "this library's convention")),
        ("one empty mask gives infinity",
         case(empty, cube, (1.0, 1.0, 1.0), math.inf, "no surface to measure to: "
              "float('inf'), by this library's convention")),
    ]
    return _run(func, cases, "metrics.hausdorff95", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases,
                library=("skullstrip_lib.metrics:hausdorff95",
                         "skullstrip_lib.metrics:surface_distances",
                         "skullstrip_lib.metrics:evaluate_masks"))


# --------------------------------------------------------------------------- chapter 9
@fill_doc
def check_postprocess(func: Callable[[np.ndarray], np.ndarray], *,
                      strict: bool = False, unseen: int | None = None) -> bool:
    """Check a clean-up of a predicted mask: largest component, holes filled (chapter 9).

    ``func(mask)`` gets a boolean 3D array and must return a new boolean
    array: the largest connected component (voxels connected through their
    faces, as ``scipy.ndimage.label`` connects them by default) with its holes
    filled (``scipy.ndimage.binary_fill_holes``); an empty mask comes back
    empty, and the input is not changed. The answers are
    :func:`skullstrip_lib.inference.postprocess_mask`, on balls with a blob
    beside them, a ventricle-like hole, an island inside that hole, and two
    cubes that touch only along an edge.

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib import inference
    >>> check_postprocess(inference.postprocess_mask)  # doctest: +ELLIPSIS
    ok: one ball comes back unchanged
    ...
    True
    """
    from ..inference import postprocess_mask
    from .evaluation_lab import sphere

    shape = (32, 32, 32)
    brain = sphere(shape, (14, 15, 16), 9.0)
    blob = sphere(shape, (28, 28, 4), 2.5)
    ventricle = sphere(shape, (14, 15, 16), 3.0)
    island = _cube(shape, (14, 15, 16), (15, 16, 17))
    edge = _cube(shape, (2, 2, 2), (10, 10, 10)) | _cube(shape, (10, 10, 2), (14, 14, 6))
    empty = np.zeros(shape, bool)

    def case(mask: np.ndarray, hint: str) -> Callable[[Callable[..., Any]], None]:
        def run(f: Callable[..., Any]) -> None:
            given = mask.copy()
            out = _call(f, given)
            if not np.array_equal(given, mask):
                raise AssertionError("it changed the mask it was given. Hint: work on a "
                                     "copy, or on new arrays (labels == k gives one)")
            got = _array(out, mask.shape, "mask")
            want = postprocess_mask(mask)
            if not np.array_equal(got != 0, want):
                extra, missing = int(((got != 0) & ~want).sum()), int((want & ~(got != 0)).sum())
                raise AssertionError(f"{extra} voxels too many and {missing} missing against "
                                     f"inference.postprocess_mask. Hint: {hint}")
        return run

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        cases = []
        for k in range(3):
            centre = rng.uniform(12, 20, 3)
            mask = sphere(shape, centre, rng.uniform(6, 10)) & ~sphere(
                shape, centre + rng.uniform(-1, 1, 3), rng.uniform(1.5, 3.5))
            for _ in range(int(rng.integers(1, 4))):  # blobs, some touching the brain
                mask |= sphere(shape, rng.uniform(2, 30, 3), rng.uniform(1.0, 3.0))
            cases.append((f"unseen mask {k + 1}: a ball with a hole and random blobs",
                          case(mask, "keep the largest face-connected component, then "
                               "fill its holes")))
        return cases

    cases: list[Case] = [
        ("one ball comes back unchanged", case(brain, "a mask that is one piece without "
                                               "holes needs no change")),
        ("a blob away from the brain is removed",
         case(brain | blob, "label the components (ndimage.label), count the voxels of "
              "each (np.bincount of the labels, leaving out label 0, the background) and "
              "keep the largest")),
        ("a hole inside the brain (a ventricle) is filled",
         case(brain & ~ventricle, "fill the holes: ndimage.binary_fill_holes")),
        ("an island inside the hole ends up in the filled brain",
         case((brain & ~ventricle) | island, "the island is a component of its own and "
              "is dropped, but filling the hole brings it back: keep the largest "
              "component, then fill its holes")),
        ("two cubes touching only along an edge are two components",
         case(edge, "voxels connect through faces only (ndimage.label's default "
              "structure), not through edges or corners")),
        ("an empty mask comes back empty",
         case(empty, "with no component, return an empty mask (np.zeros_like(mask)) "
              "instead of taking the largest of nothing")),
    ]
    return _run(func, cases, "inference.postprocess_mask", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases, library=("skullstrip_lib.inference:postprocess_mask",))


# --------------------------------------------------------------------------- chapter 10
@fill_doc
def check_gamma(func: Callable[[np.ndarray, float], np.ndarray], *,
                strict: bool = False, unseen: int | None = None) -> bool:
    """Check a gamma curve applied to an image, as the augmentation does it (chapter 10).

    ``func(image, gamma)`` must map the image to [0, 1] with its own minimum
    and maximum, raise it to the power ``gamma`` and map it back: ``lo + (hi
    - lo) * ((image - lo) / (hi - lo)) ** gamma``, so the darkest and the
    brightest voxels stay where they were (a z-scored image stays on its
    scale, negative values included). A constant image stays as it is. The
    answers are worked out by hand on a ramp, and
    :func:`skullstrip_lib.data.augment` with only its gamma switched on (it
    imports TensorFlow).

    %(check_sections)s

    Examples
    --------
    >>> def gamma_curve(image, gamma):
    ...     raise NotImplementedError("your code here")
    >>> check_gamma(gamma_curve, strict=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: not written yet: gamma_curve raises NotImplementedError ...
    """
    rng = np.random.default_rng(8)
    zscored = rng.normal(0.0, 1.0, (12, 10, 8)).astype(np.float32)
    ramp = np.linspace(0.0, 1.0, 11, dtype=np.float32).reshape(11, 1, 1)

    def curved(f: Callable[..., Any], image: np.ndarray, gamma: float) -> np.ndarray:
        got = _array(_call(f, image.copy(), gamma), image.shape, "image")
        if not np.isfinite(got).all():
            raise AssertionError(f"{int((~np.isfinite(got)).sum())} voxels are NaN or "
                                 "infinite. Hint: map the image to [0, 1] with its minimum "
                                 "and maximum before the power (a negative number to a "
                                 "fractional power is NaN), and guard the division when "
                                 "max == min")
        return got

    def identity(f: Callable[..., Any]) -> None:
        _expect_close(curved(f, zscored, 1.0), zscored.astype(np.float64), atol=1e-5,
                      hint="gamma 1 is the straight line: the image comes back unchanged")

    def squared(f: Callable[..., Any]) -> None:
        _expect_close(curved(f, ramp, 2.0), ramp.astype(np.float64) ** 2, atol=1e-6,
                      hint="on an image from 0 to 1 the curve is x ** gamma itself")

    def ends(f: Callable[..., Any]) -> None:
        got = curved(f, zscored, 2.0)
        for name, want, value in (("minimum", zscored.min(), got.min()),
                                  ("maximum", zscored.max(), got.max())):
            _expect_number(float(value), float(want), tol=1e-5,
                           hint=f"the {name} must stay where it was: map to [0, 1] with "
                                "(image - lo) / (hi - lo), apply the power, then map back "
                                "with lo + (hi - lo) * ...")

    def constant(f: Callable[..., Any]) -> None:
        flat = np.full((4, 4, 4), 3.0, np.float32)
        _expect_close(curved(f, flat, 0.7), flat.astype(np.float64), atol=1e-6,
                      hint="a constant image has max == min: return it unchanged rather "
                           "than dividing by zero")

    def library(f: Callable[..., Any]) -> None:
        from ..data import AugmentConfig, augment

        for gamma in (0.7, 1.5):
            config = AugmentConfig(flip_lr=0.0, rotate_deg=0.0, scale=(1.0, 1.0),
                                   gamma=(gamma, gamma), bias=0.0, noise=0.0,
                                   p_geometric=0.0)
            want, _ = augment(zscored, np.zeros_like(zscored), np.array([0, 0]), config)
            _expect_close(curved(f, zscored, gamma), np.asarray(want, np.float64),
                          atol=1e-4, hint=f"gamma {gamma}: lo + (hi - lo) * "
                          "((image - lo) / (hi - lo)) ** gamma, lo and hi the image's "
                          "minimum and maximum")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_curve(k: int) -> Case:
            image = rng.normal(rng.uniform(-2, 5), rng.uniform(0.5, 30), (9, 7, 6))
            image = image.astype(np.float32)
            gamma = float(rng.uniform(0.4, 2.5))

            def run(f: Callable[..., Any]) -> None:
                x = image.astype(np.float64)
                lo, hi = x.min(), x.max()
                want = lo + (hi - lo) * ((x - lo) / (hi - lo)) ** gamma
                _expect_close(curved(f, image, gamma), want, atol=1e-4 * max(1.0, hi - lo),
                              hint="lo + (hi - lo) * ((image - lo) / (hi - lo)) ** gamma")
            return (f"unseen image {k + 1}: gamma {gamma:.2f}", run)

        return [unseen_curve(k) for k in range(3)]

    cases: list[Case] = [
        ("gamma 1 leaves a z-scored image unchanged", identity),
        ("on a ramp from 0 to 1, gamma 2 squares every value", squared),
        ("the darkest and the brightest voxels stay where they were", ends),
        ("a constant image stays constant", constant),
        ("gammas 0.7 and 1.5 agree with data.augment's gamma", library),
    ]
    return _run(func, cases, "data.augment's gamma curve", strict=strict, unseen=unseen,
                unseen_cases=unseen_cases, library=("skullstrip_lib.data:augment",))


# --------------------------------------------------------------------------- chapter 11
def _onion(shape: tuple[int, int, int] = (48, 48, 48), *, bridge: bool = False,
           ventricle: bool = False, radii: tuple[float, float, float] = (14, 17, 21),
           values: tuple[float, float, float] = (1000.0, 50.0, 600.0)
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A phantom head at 2 mm: brain in CSF and skull in scalp, and air (0).

    ``radii`` (voxels) are the brain's, the skull's inner and the scalp's outer;
    ``values`` the brain's, the CSF/skull's and the scalp's intensities. Returns
    the intensities, the brain and the scalp. ``bridge`` joins brain and scalp
    with a brain-bright rod 4 mm thick through the skull (what erosion must cut);
    ``ventricle`` puts a dark ball in the brain (what hole filling must give back).
    """
    from .evaluation_lab import sphere

    r_brain, r_skull, r_scalp = radii
    v_brain, v_dark, v_scalp = values
    c = tuple(s / 2 for s in shape)
    scalp = sphere(shape, c, r_scalp) & ~sphere(shape, c, r_skull)
    brain = sphere(shape, c, r_brain)
    data = np.where(sphere(shape, c, r_scalp), v_dark, 0.0)
    data[scalp] = v_scalp
    data[brain] = v_brain
    if bridge:
        i, j, k = (int(x) for x in c)
        rod = data[i - 1:i + 1, j - 1:j + 1, k:]
        data[i - 1:i + 1, j - 1:j + 1, k:] = np.where(rod > 0, v_brain, 0.0)
    if ventricle:
        data[sphere(shape, c, r_brain / 3)] = v_dark
    return data.astype(np.float32), brain, scalp


@fill_doc
def check_baseline(func: Callable[[np.ndarray, Sequence[float]], np.ndarray], *,
                   strict: bool = False, unseen: int | None = None) -> bool:
    """Check a classical brain mask: threshold, erosion, largest piece, dilation (chapter 11).

    ``func(data, zooms)`` gets a head's intensities and voxel size (mm) and must
    return a boolean brain mask of the same shape. The cases are phantoms at
    2 mm whose brain is known exactly: a bright ball (brain) in a dark shell
    (CSF and skull) in a grey one (scalp), then the same with a bright rod
    joining brain and scalp through the skull, with a dark ventricle inside the
    brain, and in other intensity units. Any sensible parameters pass (the
    library's :func:`skullstrip_lib.lessons.baseline.classical_brain_mask` with
    a 4 mm erosion does): the check asks for the properties, not the numbers.

    %(check_sections)s

    Examples
    --------
    >>> from skullstrip_lib.lessons.baseline import classical_brain_mask
    >>> check_baseline(lambda d, z: classical_brain_mask(d, z, erode_mm=4.0))
    ... # doctest: +ELLIPSIS
    ok: the brain of a phantom head is found (Dice >= 0.95), none of its scalp
    ...
    True
    """
    from ..metrics import dice
    from .baseline import largest_component

    zooms = (2.0, 2.0, 2.0)

    def found(f: Callable[..., Any], data: np.ndarray) -> np.ndarray:
        before = data.copy()
        got = np.asarray(_call(f, data, zooms))
        if got.shape != data.shape:
            raise AssertionError(f"the mask should have the head's shape {data.shape}, got "
                                 f"{got.shape}")
        if got.dtype != bool:
            raise AssertionError(f"the mask should be boolean, got {got.dtype}. Hint: "
                                 "comparisons and scipy.ndimage's binary_* functions give "
                                 "booleans")
        if not np.array_equal(data, before):
            raise AssertionError("the intensities passed in were changed: work on copies")
        return got

    def brain_not_scalp(f: Callable[..., Any], data: np.ndarray, brain: np.ndarray,
                        scalp: np.ndarray, hint: str) -> None:
        got = found(f, data)
        score = dice(got, brain)
        if int((got & scalp).sum()):
            raise AssertionError(f"{int((got & scalp).sum())} scalp voxels are in the mask "
                                 f"(Dice with the brain {score:.3f}). Hint: {hint}")
        if score < 0.95:
            raise AssertionError(f"Dice with the brain is {score:.3f}, expected >= 0.95 "
                                 f"({int(got.sum())} voxels found, {int(brain.sum())} in the "
                                 f"brain). Hint: {hint}")

    def plain(f: Callable[..., Any]) -> None:
        data, brain, scalp = _onion()
        brain_not_scalp(f, data, brain, scalp,
                        "threshold at a fraction of the head's robust range (between its "
                        "2nd and 98th percentiles); the scalp is bright too and, as one "
                        "piece, larger than the brain: erode by a ball a few mm wide (the "
                        "thin scalp vanishes, the brain does not), keep the largest piece, "
                        "then dilate back inside the thresholded tissue")

    def bridged(f: Callable[..., Any]) -> None:
        data, brain, scalp = _onion(bridge=True)
        brain_not_scalp(f, data, brain, scalp,
                        "a rod of brain-bright tissue joins brain and scalp: erode by a "
                        "ball a few mm wide before keeping the largest piece, so that the "
                        "rod breaks, then dilate back (inside the thresholded tissue)")

    def with_ventricle(f: Callable[..., Any], data: np.ndarray, brain: np.ndarray,
                       scalp: np.ndarray) -> None:
        hint = "the dark ventricle is inside the brain: fill the holes " \
               "(ndimage.binary_fill_holes) at the end"
        brain_not_scalp(f, data, brain, scalp, hint)
        missing = int((brain & (data < data[brain].max()) & ~found(f, data)).sum())
        if missing:
            raise AssertionError(f"{missing} voxels of the ventricle are left out. Hint: {hint}")

    def ventricle(f: Callable[..., Any]) -> None:
        with_ventricle(f, *_onion(ventricle=True))

    def units(f: Callable[..., Any]) -> None:
        data, _, _ = _onion(bridge=True)
        a, b = found(f, data), found(f, 3.0 * data + 1000.0)
        if not np.array_equal(a, b):
            raise AssertionError(f"3 x data + 1000 gives another mask ({int((a ^ b).sum())} "
                                 "voxels differ). Hint: a threshold relative to the head's "
                                 "own intensity range does not depend on the units")

    def empty(f: Callable[..., Any]) -> None:
        data = np.zeros((24, 24, 24), np.float32)
        data[4:20, 4:20, 4:20] = 100.0  # a head of uniform "tissue": no dark ring at all
        got = found(f, data)
        if not np.array_equal(largest_component(got), got):  # an empty mask is one piece
            raise AssertionError("the mask is in several pieces. Hint: keep only the "
                                 "largest connected piece (ndimage.label, np.bincount)")

    def unseen_cases(rng: np.random.Generator) -> list[Case]:
        def unseen_head(k: int) -> Case:
            r_brain = float(rng.uniform(12.0, 15.0))
            r_skull = r_brain + float(rng.uniform(2.5, 4.0))
            radii = (r_brain, r_skull, r_skull + float(rng.uniform(3.0, 4.0)))  # scalp 6-8 mm
            v_brain = float(rng.uniform(300.0, 3000.0))
            values = (v_brain, v_brain * float(rng.uniform(0.01, 0.1)),
                      v_brain * float(rng.uniform(0.5, 0.8)))
            side = int(2 * radii[2] + rng.integers(4, 10))
            bridge, dark = bool(rng.integers(2)), bool(rng.integers(2))
            data, brain, scalp = _onion((side,) * 3, bridge=bridge, ventricle=dark,
                                        radii=radii, values=values)

            def run(f: Callable[..., Any]) -> None:
                with_ventricle(f, data, brain, scalp)

            return (f"unseen phantom {k + 1}: brain radius {2 * r_brain:.0f} mm, "
                    f"{'a rod' if bridge else 'no rod'}, {'a' if dark else 'no'} ventricle",
                    run)

        return [unseen_head(k) for k in range(3)]

    cases: list[Case] = [
        ("the brain of a phantom head is found (Dice >= 0.95), none of its scalp", plain),
        ("a bright rod through the skull does not pull the scalp in", bridged),
        ("a dark ventricle inside the brain is part of the mask", ventricle),
        ("other intensity units (3 x data + 1000) give the same mask", units),
        ("a head without a skull still gives one piece (or nothing)", empty),
    ]
    return _run(func, cases, "the properties of lessons.baseline.classical_brain_mask",
                strict=strict, unseen=unseen, unseen_cases=unseen_cases,
                library=("skullstrip_lib.lessons.baseline:classical_brain_mask",))
