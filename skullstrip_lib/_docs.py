"""Shared parameter text for docstrings, written once (nilearn's ``fill_doc`` idea).

A docstring names a shared block as ``%(key)s`` on a line of its own, indented as the
block should be; :func:`fill_doc` replaces it with the text of :data:`DOCS` indented to
match. Only these placeholders are replaced: any other ``%`` in a docstring (``8 %``)
is left alone, unlike ``docstring % dict``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DOCS", "fill_doc"]

F = TypeVar("F", bound=Callable)

DOCS: dict[str, str] = {
    # Parameters shared by the pipeline and the chapters' helpers: one text each.
    "model": """\
model : str, path-like or BrainModel
    A loaded model, or what :func:`skullstrip_lib.inference.load_model` takes:
    a bundled name (``"default"``), a model folder or a model file.""",
    "progress": """\
progress : bool
    Show a progress bar.""",
    "scan_model": """\
scan : Scan
    From :func:`skullstrip_lib.io.load_scan`.
model : BrainModel
    From :func:`skullstrip_lib.inference.load_model`.""",
    "plot_ax": """\
ax : matplotlib Axes, optional
    Where to draw; a new figure otherwise.
title : str, optional
    Axes title.""",
    "figure_returns": """\
Returns
-------
matplotlib.figure.Figure
    The figure drawn on: ``ax``'s when given, else a new one.""",
    "field": """\
field : {"1.5T", "3T"}
    Which relaxation times of :data:`~skullstrip_lib.lessons.mri.TISSUES` to use.""",
    "relaxation": """\
pd : float or array_like
    Proton density (relative, CSF = 1).
t1_ms, t2_ms : float or array_like
    Relaxation times, ms (> 0).""",
    "toy_fit": """\
n, size : int
    Toy volumes and their size (see
    :func:`~skullstrip_lib.lessons.training_lab.toy_volumes`).
loss : {"dice", "dice_bce"}
    The loss.
seed : int
    Seed of the data and of the initial weights.""",
    "mask_on_grid": """\
mask : numpy.ndarray of bool
    Shape ``grid.source_shape``.
grid : ModelGrid
    From :func:`skullstrip_lib.preprocess.fit_model_grid`.""",
    "data_brain": """\
data : numpy.ndarray
    Intensities.
mask : numpy.ndarray of bool
    Same shape: the brain.""",
    "spacing": """\
spacing : float or sequence of 3 floats
    Voxel size in mm along each axis (one number: the same on all three).""",
    "zooms": """\
zooms : sequence of 3 floats
    Voxel size in mm along each axis, so that slices keep their true proportions.""",
    "data_dir": """\
data_dir : path-like, optional
    The data folder; see :func:`skullstrip_lib.datasets.get_data_dir`.""",
    # Keras metrics (skullstrip_lib.losses)
    "score_params": """\
threshold : float
    A voxel is brain when its probability is above this, in [0, 1].
name : str, optional
    Name in Keras's logs (default: the score's short name).
dtype : str, optional
    Keras's dtype policy; the sums are kept in float32 whatever it is.""",
    # The "build it yourself" checks (skullstrip_lib.lessons.checks): one frame, one text.
    "check_sections": """\
Parameters
----------
func : callable
    The student's function.
strict : bool
    For autograding: fail (instead of reporting "not written yet") when
    ``func`` still raises :class:`NotImplementedError`, and fail when ``func``
    is, or calls, the library's own implementation of the piece (see
    :mod:`skullstrip_lib.lessons.checks`).
unseen : int or None
    A seed: run cases made from it (random inputs, the library's answers)
    instead of the chapter's, which the student has not seen (nbgrader's
    hidden tests).

Returns
-------
bool
    True if every case passed, False if ``func`` is not written yet.

Raises
------
AssertionError
    A case failed: which one, the expected and actual answers, and a hint.""",
}

# The subjects of an index, predicted one at a time (skullstrip_lib.evaluate.predict_subjects
# and every score made from it): the model, the index, the split and a progress bar.
DOCS["subjects"] = "\n".join([DOCS["model"], """\
index : pandas.DataFrame or path-like
    An index (:func:`skullstrip_lib.datasets.index_dataset`) or its CSV.
split : str or None
    Only the subjects of this split; None for all.""", DOCS["progress"]])

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<key>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(func: F) -> F:
    """Replace each ``%(key)s`` line of ``func``'s docstring with ``DOCS[key]``, indented.

    Parameters
    ----------
    func : callable
        A function or class whose docstring holds placeholders.

    Returns
    -------
    callable
        ``func`` itself, its ``__doc__`` filled in.

    Raises
    ------
    KeyError
        A placeholder names no entry of :data:`DOCS`.

    Examples
    --------
    >>> @fill_doc
    ... def f(plot, *, progress=False):
    ...     '''Plot.
    ...
    ...     Parameters
    ...     ----------
    ...     %(progress)s
    ...     '''
    >>> print(f.__doc__.splitlines()[4])
        progress : bool
    """
    doc = func.__doc__
    if doc:
        func.__doc__ = _PLACEHOLDER.sub(
            lambda m: textwrap.indent(DOCS[m["key"]], m["indent"]), doc)
    return func
