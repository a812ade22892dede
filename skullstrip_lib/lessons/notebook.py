"""Helpers for the book's notebooks: where they run, which profile, which data.

Every chapter starts the same way: it asks whether it runs on Colab, picks the
*profile* (``"sample"``: synthetic heads on a CPU in minutes; ``"full"``: NFBS
on a GPU) and loads its subjects as an index table. Keeping that here means a
chapter's set-up is three lines, and an instructor's assignment can reuse it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import SkullstripError
from ..inference import MODEL_FILE, BrainModel, load_model
from ..io import atomic_write_text, settings_key

__all__ = ["BOOK_PROFILES", "in_colab", "load_subjects", "resolve_model", "resolve_profile",
           "student_edition"]

BOOK_PROFILES = ("sample", "full")

# The sample profile's heads: the NFBS grid (256x256x192 at 1 mm) so that every
# chapter works on real-sized volumes; the seed keeps them the same everywhere.
SAMPLE_SEED = 0


def in_colab() -> bool:
    """True when running inside Google Colab.

    Examples
    --------
    >>> in_colab()
    False
    """
    return "google.colab" in sys.modules


def resolve_profile(profile: str | None = None) -> str:
    """The profile a notebook runs in.

    Parameters
    ----------
    profile : {"sample", "full"} or None
        An explicit choice (a papermill parameter), else the environment
        variable ``SKULLSTRIP_PROFILE``, else ``"full"`` on Colab and
        ``"sample"`` everywhere else.

    Returns
    -------
    str

    Examples
    --------
    >>> resolve_profile("full")
    'full'
    """
    profile = profile or os.environ.get("SKULLSTRIP_PROFILE") or (
        "full" if in_colab() else "sample")
    if profile not in BOOK_PROFILES:
        raise SkullstripError(f"unknown profile {profile!r} "
                              f"(choose from {', '.join(BOOK_PROFILES)})")
    return profile


def load_subjects(profile: str = "sample", n_subjects: int | None = None, *,
                  data_dir: str | os.PathLike | None = None, seed: int = SAMPLE_SEED,
                  split_seed: int = 0, progress: bool = True,
                  **head_kwargs: Any) -> pd.DataFrame:
    """The subjects a chapter works on, as an index table.

    Parameters
    ----------
    profile : {"sample", "full"}
        ``"full"`` downloads NFBS (:func:`skullstrip_lib.datasets.fetch_nfbs`,
        1.75 GB once); ``"sample"`` writes synthetic heads in the NFBS layout
        (:func:`skullstrip_lib.synth.write_nfbs_dataset`, about 4 s each).
    n_subjects : int or None
        How many subjects; None means all 125 of NFBS, or 6 synthetic heads.
    data_dir : str or path-like or None
        See :func:`skullstrip_lib.datasets.get_data_dir`.
    seed : int
        Seed of the synthetic heads.
    split_seed : int
        Seed of the subject-level train/val/test split.
    progress : bool
        Show progress bars.
    **head_kwargs
        Synthetic heads only: :func:`skullstrip_lib.synth.make_head` arguments
        (``contrast="t2"``, ``voxel_size=...``); each combination gets its own
        folder, so chapters never overwrite one another's data.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``t1w``, ``brainmask``, ``brain``, ``split``
        (see :func:`skullstrip_lib.datasets.index_dataset`).

    Examples
    --------
    >>> import tempfile
    >>> index = load_subjects("sample", 1, data_dir=tempfile.mkdtemp(), progress=False)
    >>> index.columns.tolist()
    ['subject', 't1w', 'brainmask', 'brain', 'split']
    """
    from ..datasets import fetch_nfbs, get_data_dir, index_dataset

    profile = resolve_profile(profile)
    if profile == "full":
        if head_kwargs:
            raise SkullstripError("head arguments apply to synthetic heads only")
        root = fetch_nfbs(data_dir, n_subjects=n_subjects, progressbar=progress)
        return _first(index_dataset(root, seed=split_seed), n_subjects, split_seed)

    from ..synth import write_nfbs_dataset

    n = 6 if n_subjects is None else int(n_subjects)
    key = settings_key(seed, head_kwargs)
    folder = get_data_dir(data_dir) / "sample" / f"synth-{key}"
    write_nfbs_dataset(folder, n, seed=seed, progress=progress, **head_kwargs)
    return _first(index_dataset(folder, seed=split_seed), n, split_seed)


def _first(index: pd.DataFrame, n: int | None, split_seed: int) -> pd.DataFrame:
    # A folder made earlier for more subjects holds them all: keep the first n,
    # and split those n again so that every split gets its share.
    from ..datasets import split_subjects

    if n is None or len(index) <= n:
        return index
    index = index.head(n).reset_index(drop=True)
    return index.assign(split=index["subject"].map(split_subjects(index["subject"],
                                                                  seed=split_seed)))


# A fenced ```{solution} ...``` directive (any fence length of 3 or more backticks or colons).
_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}.*?^(?P=fence)[ \t]*$\n?",
                       re.MULTILINE | re.DOTALL)


def _strip_solutions(cells: list) -> tuple[list, int]:
    kept, removed, gated = [], 0, False
    for cell in cells:
        text = cell.get("source", "")
        text = "".join(text) if isinstance(text, list) else text
        if cell.get("cell_type") == "markdown" and "{solution-start}" in text:
            gated, removed = True, removed + 1
            continue
        if gated:
            if cell.get("cell_type") == "markdown" and "{solution-end}" in text:
                gated = False
            continue
        if cell.get("cell_type") == "markdown" and "{solution}" in text:
            text, n = _SOLUTION.subn("", text)
            removed += n
            if not text.strip():
                continue
            cell["source"] = text
        kept.append(cell)
    if gated:
        raise SkullstripError("a {solution-start} has no {solution-end}")
    return kept, removed


def student_edition(src: str | os.PathLike, out_dir: str | os.PathLike, *,
                    overwrite: bool = False) -> dict[str, int]:
    """Copy the chapters without their exercise solutions and outputs.

    Prose solutions (a ``{solution}`` directive) are cut out of their markdown
    cells; code solutions (the cells from ``{solution-start}`` to
    ``{solution-end}``) are dropped. The exercises themselves stay.

    Parameters
    ----------
    src : str or path-like
        A notebook, or a folder of notebooks (``*.ipynb``).
    out_dir : str or path-like
        Folder for the student copies (created; same file names).
    overwrite : bool
        Replace existing copies.

    Returns
    -------
    dict of str to int
        Number of solutions removed per notebook file name.

    Raises
    ------
    SkullstripError
        A copy exists and *overwrite* is False, or a gated solution is not closed.

    Examples
    --------
    ``student_edition("notebooks", "student")`` writes ``student/01_mri_and_t1.ipynb``
    and the others, ready to hand out.
    """
    import nbformat

    src = Path(src)
    paths = sorted(src.glob("*.ipynb")) if src.is_dir() else [src]
    out = Path(out_dir)
    todo = [(p, out / p.name) for p in paths]
    if not overwrite:
        for _, dst in todo:
            if dst.exists():
                raise SkullstripError(f"{dst}: exists; use overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for path, dst in todo:
        nb = nbformat.read(path, as_version=4)
        try:
            nb.cells, counts[path.name] = _strip_solutions(nb.cells)
        except SkullstripError as exc:
            raise SkullstripError(f"{path}: {exc}") from None
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        atomic_write_text(dst, nbformat.writes(nb) + "\n")
    return counts


def resolve_model(model: str | os.PathLike | BrainModel | None = None, profile: str = "sample",
                  *, data_dir: str | os.PathLike | None = None) -> BrainModel:
    """The model a book chapter works with.

    Parameters
    ----------
    model : str, path-like, BrainModel or None
        An explicit choice (a notebook parameter): a bundled name, a model
        folder or file (see :func:`load_model`), or a training run folder
        (its ``export/`` is used). None picks by profile.
    profile : {"sample", "full"}
        With no explicit model, ``"full"`` uses a run trained on NFBS that
        has an ``export/``: ``<data dir>/runs/full``, else the newest run that
        chapter 7 made (``<data dir>/runs/ch07-full-*``); every other case,
        and a full profile with no such run, uses the bundled ``"default"`` model.
    data_dir : path-like, optional
        See :func:`skullstrip_lib.datasets.get_data_dir`.

    Returns
    -------
    BrainModel

    Examples
    --------
    >>> resolve_model(None, "sample").name
    'default'
    """
    if isinstance(model, BrainModel):
        return model
    if model is None:
        model = "default"
        if profile == "full":
            from ..datasets import get_data_dir

            runs = get_data_dir(data_dir) / "runs"
            # runs/full if it exists, else chapter 7's newest run (runs/ch07-full-*).
            found = [runs / "full", *sorted(runs.glob("ch07-full-*"),
                                           key=lambda p: p.stat().st_mtime, reverse=True)]
            model = next((run for run in found if (run / "export" / MODEL_FILE).is_file()),
                         "default")
    path = Path(model)
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "export").is_dir():
        path = path / "export"  # a training run: its exported model
        model = path
    return load_model(model)
