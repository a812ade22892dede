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

from ..errors import MissingFileError, SkullstripError
from ..inference import MODEL_FILE, BrainModel, load_model
from ..io import atomic_write_text, settings_key

__all__ = ["BOOK_PROFILES", "COLAB_FOLDER", "REPOSITORY", "colab_edition", "in_colab",
           "keep_data_on_drive", "load_subjects", "print_config",
           "resolve_model", "resolve_profile", "student_edition"]

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


REPOSITORY = "skullstrip/skullstrip"
"""The book's GitHub repository (owner/name): where Colab badges and links point."""
COLAB_FOLDER = "colab"
"""Where the Colab edition of the chapters lives in the repository (what the badges open)."""

_DIRECTIVE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>exercise|solution)\}(?P<arg>[^\n]*)\n"
                        r"(?P<body>.*?)^(?P=fence)[ \t]*$\n?", re.MULTILINE | re.DOTALL)
_OPTION = re.compile(r"^:(label|class): .*\n", re.MULTILINE)
_CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
_LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


def _colab_link(target: str) -> str:
    """A relative link of a chapter, made absolute for a notebook opened in Colab."""
    path, _, anchor = target.partition("#")
    if path.endswith(".ipynb") and "/" not in path:  # another chapter: its Colab edition
        url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{COLAB_FOLDER}/{path}"
    else:  # a book page or any other file of the repository
        url = f"https://github.com/{REPOSITORY}/blob/main/{(Path('notebooks') / path).as_posix()}"
        url = url.replace("/notebooks/../", "/")
    return url + (f"#{anchor}" if anchor else "")


def _colab_markdown(text: str) -> str:
    """MyST that Colab would show as raw text, as plain Markdown (HTML for the folds)."""

    def directive(match: re.Match) -> str:
        body = _OPTION.sub("", match["body"]).strip()
        if match["name"] == "exercise":
            return "**Exercise.** " + body + "\n"
        return (f"<details><summary><b>Solution</b> (click to open)</summary>\n\n{body}\n\n"
                "</details>\n")

    text = _DIRECTIVE.sub(directive, text)
    text = _CITE.sub(lambda m: "[" + ", ".join(k.strip() for k in m[1].split(",")) + "]", text)
    return _LINK.sub(lambda m: f"]({_colab_link(m[1])})", text)


def _guard(source: str, where: str) -> str:
    """A solution's code as a Colab form cell that runs only when asked (not by "Run all")."""
    if '"""' in source or "'''" in source:  # indenting would change the strings
        raise SkullstripError(f"{where}: a solution cell holds a triple-quoted string")
    body = "\n".join(("    " + line) if line.strip() else "" for line in source.splitlines())
    return ("# @title Solution: tick show_solution, then run this cell { display-mode: \"form\" }\n"
            "show_solution = False  # @param {type:\"boolean\"}\n"
            "if show_solution:\n" + body + "\n")


def colab_edition(src: str | os.PathLike, out_dir: str | os.PathLike, *,
                  overwrite: bool = False) -> list[Path]:
    """The chapters as their Colab badges open them: plain Markdown, solutions folded away.

    Colab renders neither MyST directives nor roles, and shows every code
    cell. This copy of each chapter turns an ``{exercise}`` into a bold
    "Exercise." paragraph, a prose ``{solution}`` into a closed HTML
    ``<details>`` fold, a code solution (``{solution-start}`` to
    ``{solution-end}``) into Colab form cells whose code is hidden and which
    run only when the student ticks ``show_solution`` (so "Run all" does not
    reveal them), ``{cite}`` roles into ``[key]``, and links to other chapters
    and pages into links that work from Colab; the badge points at the copy
    itself. Outputs are dropped. The web book keeps its own dropdowns.

    Parameters
    ----------
    src : str or path-like
        A notebook, or a folder of notebooks (``*.ipynb``).
    out_dir : str or path-like
        Folder for the copies (same file names; ``colab/`` in the repository).
    overwrite : bool
        Replace existing copies.

    Returns
    -------
    list of pathlib.Path
        The copies written.

    Raises
    ------
    SkullstripError
        A copy exists and ``overwrite`` is False, a gated solution is not
        closed, or a solution cell holds a triple-quoted string (it is
        indented under the ``show_solution`` check).
    """
    import nbformat

    src = Path(src)
    paths = sorted(src.glob("*.ipynb")) if src.is_dir() else [src]
    out = Path(out_dir)
    if not overwrite:
        for path in paths:
            if (out / path.name).exists():
                raise SkullstripError(f"{out / path.name}: exists; use overwrite=True")
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        gated = False
        for i, cell in enumerate(nb.cells):
            text = cell.source
            if cell.cell_type == "markdown":
                if "{solution-start}" in text:
                    gated = True
                    text = _DIRECTIVE_START.sub(
                        "**Solution:** in the cells below, folded; tick `show_solution` in a "
                        "cell and run it to see that part of the answer.\n", text)
                if "{solution-end}" in text:
                    gated = False
                    before, _, after = text.partition(_solution_end_fence(text))
                    text = (f"<details><summary><b>Solution</b>, continued (click to open)"
                            f"</summary>\n\n{before.strip()}\n\n</details>\n{after}"
                            if before.strip() else after)
                text = _colab_markdown(text)
                if i == 0:
                    text = text.replace(f"/blob/main/notebooks/{path.name}",
                                        f"/blob/main/{COLAB_FOLDER}/{path.name}")
            elif cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
                if gated:
                    text = _guard(text, f"{path.name}, cell {i}")
                    cell.metadata["cellView"] = "form"
            cell.source = text
        if gated:
            raise SkullstripError(f"{path}: a {{solution-start}} has no {{solution-end}}")
        nb.metadata["colab"] = {"name": path.name, "provenance": []}
        written.append(atomic_write_text(out / path.name, nbformat.writes(nb) + "\n",
                                         overwrite=True))
    return written


_DIRECTIVE_START = re.compile(r"^(`{3,}|:{3,})\{solution-start\}[^\n]*\n(?::[a-z]+: [^\n]*\n)*"
                              r"\1[ \t]*$\n?", re.MULTILINE)


def _solution_end_fence(text: str) -> str:
    match = re.search(r"^(`{3,}|:{3,})\{solution-end\}[^\n]*\n\1[ \t]*$\n?", text, re.MULTILINE)
    if match is None:
        raise SkullstripError("a {solution-end} is not a fenced directive")
    return match[0]


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
        With no explicit model, ``"sample"`` uses the bundled ``"default"``
        model (trained on synthetic heads) and ``"full"`` the NFBS-trained run
        of chapter 7: ``<data dir>/runs/full``, else the newest
        ``<data dir>/runs/ch07-full-*`` with an ``export/``. There is no
        fallback from one to the other: a chapter that scores NFBS subjects
        with a model trained on synthetic heads would measure something else.
    data_dir : path-like, optional
        See :func:`skullstrip_lib.datasets.get_data_dir`.

    Returns
    -------
    BrainModel

    Raises
    ------
    MissingFileError
        The full profile, no explicit model, and no NFBS-trained run in the
        data folder (the message says what to run, or which ``model=`` to pass).

    Examples
    --------
    >>> resolve_model(None, "sample").name
    'default'
    """
    if isinstance(model, BrainModel):
        return model
    if model is None and resolve_profile(profile) == "full":
        from ..datasets import get_data_dir

        runs = get_data_dir(data_dir) / "runs"
        # runs/full if it exists, else chapter 7's newest run (runs/ch07-full-*).
        found = [runs / "full", *sorted(runs.glob("ch07-full-*"),
                                       key=lambda p: p.stat().st_mtime, reverse=True)]
        model = next((run for run in found if (run / "export" / MODEL_FILE).is_file()), None)
        if model is None:
            raise MissingFileError(
                f"{runs}: no model trained on NFBS here: run chapter 7 in the full profile "
                "first (its run lands in runs/ch07-full-*), or pass model=<a model folder, "
                "file or run> (model=\"default\" is the bundled synthetic-head model)")
    elif model is None:
        model = "default"
    path = Path(model)
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "export").is_dir():
        path = path / "export"  # a training run: its exported model
        model = path
    return load_model(model)


def keep_data_on_drive(folder: str = "skullstrip_data", *,
                       mount_point: str = "/content/drive") -> Path:
    """On Colab, keep the data folder on Google Drive, so it outlives the session.

    Every chapter opened from its Colab badge starts on a fresh machine. With
    the data folder on Drive, downloads (NFBS), preprocessing caches and
    chapter 7's training run persist from one chapter (and one day) to the
    next. Drive asks for permission the first time. Call it in the set-up
    cell, before anything reads the data folder: it sets ``SKULLSTRIP_DATA``
    (see :func:`skullstrip_lib.datasets.get_data_dir`) for this session.

    Parameters
    ----------
    folder : str
        The folder inside "My Drive".
    mount_point : str
        Where Drive is mounted.

    Returns
    -------
    pathlib.Path
        The data folder, created if needed.

    Raises
    ------
    SkullstripError
        Not running on Colab.
    """
    if not in_colab():
        raise SkullstripError("keep_data_on_drive works on Colab only; elsewhere set "
                              "SKULLSTRIP_DATA or pass data_dir")
    from google.colab import drive  # only on Colab

    drive.mount(mount_point)
    path = Path(mount_point) / "MyDrive" / folder
    path.mkdir(parents=True, exist_ok=True)
    os.environ["SKULLSTRIP_DATA"] = str(path)
    return path


def print_config() -> None:
    """Print the versions this chapter runs with, and the device (as MONAI's ``print_config``).

    Worth including in a question about a failing chapter: most problems are
    a version or a missing GPU. TensorFlow is reported only if it is already
    imported or importable, and not imported here for the check.
    """
    import importlib.metadata as md
    import platform

    from .. import __version__

    names = ["numpy", "scipy", "nibabel", "SimpleITK", "nilearn", "nipype", "pandas",
             "onnxruntime", "tensorflow", "keras", "matplotlib"]
    print(f"skullstrip_lib {__version__} | Python {platform.python_version()} "
          f"({platform.machine()}) | {os.cpu_count()} CPU cores"
          f"{' | Colab' if in_colab() else ''}")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} -")
    print(" | ".join(versions))
    if "tensorflow" in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        print("GPU:", ", ".join(g.name for g in gpus) if gpus else "none (TensorFlow sees no GPU)")
