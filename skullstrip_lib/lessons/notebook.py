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
           "keep_data_on_drive", "load_subjects", "nbgrader_source", "print_config",
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
_ADMONITION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>note|tip|warning|important|caution)\}"
                         r"[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$\n?", re.MULTILINE | re.DOTALL)
_TERM = re.compile(r"\{term\}`([^`<]+?)(?:\s*<[^>`]+>)?`")
_NUMREF = re.compile(r"\{numref\}`[^`]+`")
_EQ = re.compile(r"\{eq\}`([^`]+)`")
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

    def admonition(match: re.Match) -> str:
        body = match["body"].strip().splitlines()
        lines = [f"**{match['name'].capitalize()}.** {body[0] if body else ''}", *body[1:]]
        return "\n".join(f"> {line}".rstrip() for line in lines) + "\n"

    def figure(match: re.Match) -> str:  # figure numbers exist only in the web book
        before = match.string[:match.start()].rstrip(" ")
        return "The figure" if not before or before[-1] in ".!?\n" else "the figure"

    text = _DIRECTIVE.sub(directive, text)
    text = _ADMONITION.sub(admonition, text)
    text = _TERM.sub(lambda m: m[1].strip(), text)
    text = _NUMREF.sub(figure, text)
    text = _EQ.sub(lambda m: f"({m[1]})", text)
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
    reveal them), ``{cite}`` roles into ``[key]``, note, tip and warning
    admonitions into quoted paragraphs, ``{term}`` roles into their text, ``{numref}``
    into "the figure" and ``{eq}`` into the equation's label, and links to other chapters
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
        # runs/full if it exists, else chapter 7's run (runs/ch07-full; runs/ch07-full-* from
        # earlier editions of the book, newest first).
        found = [runs / "full", runs / "ch07-full",
                 *sorted(runs.glob("ch07-full-*"), key=lambda p: p.stat().st_mtime,
                         reverse=True)]
        model = next((run for run in found if (run / "export" / MODEL_FILE).is_file()), None)
        if model is None:
            raise MissingFileError(f"{runs}: {no_model_message(runs)}")
    elif model is None:
        model = "default"
    path = Path(model)
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "export").is_dir():
        path = path / "export"  # a training run: its exported model
        model = path
    return load_model(model)


def no_model_message(runs: Path) -> str:
    """What to do when a full-profile chapter finds no NFBS-trained run in ``runs``.

    On Colab every chapter runs on a fresh machine, so chapter 7's run reaches
    chapters 8-10 only through Google Drive: the message says so when this
    session's data folder is not there.

    Examples
    --------
    >>> print(no_model_message(Path("/data/runs")))  # doctest: +NORMALIZE_WHITESPACE
    no model trained on NFBS here: run chapter 7 in the full profile first (its run lands in
    /data/runs/ch07-full), or pass model=<a model folder, file or run> (model="default" is the
    bundled synthetic-head model)
    """
    message = (f"no model trained on NFBS here: run chapter 7 in the full profile first (its run "
               f"lands in {runs / 'ch07-full'}), or pass model=<a model folder, file or run> "
               f"(model=\"default\" is the bundled synthetic-head model)")
    if in_colab() and not str(runs).startswith("/content/drive/"):
        message += (". On Colab each chapter starts on a fresh machine: tick keep_on_drive in the "
                    "set-up cell of chapter 7 and of this chapter, so that chapter 7's run is kept "
                    "on Google Drive and found here, then run chapter 7 (about an hour on a T4)")
    elif in_colab():
        message += (". The data folder is on Google Drive: open chapter 7 from its badge, keep "
                    "keep_on_drive ticked, and run it to the end (about an hour on a T4)")
    return message


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


# --------------------------------------------------------------------------- nbgrader
NBGRADER_POINTS = 2
"""Points of one autograded test cell (one ``checks.check_*`` call) by default."""

NBGRADER_SCHEMA = 3
"""The version of nbgrader's cell metadata written (nbgrader 0.6 to 0.9 read version 3)."""

NBGRADER_CONFIG = '''\
# nbgrader's configuration for the skullstrip chapters, written by `make assignments`
# (skullstrip_lib.lessons.notebook.nbgrader_source) when none existed; yours to edit,
# it is never overwritten. Run nbgrader in this folder (see book/instructors.md).
c = get_config()  # noqa: F821 (nbgrader defines it when it reads this file)

c.CourseDirectory.course_id = "skullstrip"
# A chapter trains and evaluates networks on a CPU: some cells take minutes in the
# sample profile, where nbgrader's default (30 s a cell) would stop them.
c.Execute.timeout = 900
# What a student sees in place of each solution (nbgrader's default, said here so that
# it can be changed in one place): the chapter's `def` line stays above it.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
'''

# Cells of a chapter before its first section (title, Overview, the Colab cell, the
# parameters, the imports): what every part of the chapter, the exercises included, needs.
_SECTION = re.compile(r"^## (?!Overview\s*$)", re.MULTILINE)
_LABEL = re.compile(r"^:label:\s*(\S+)", re.MULTILINE)
_START_LABEL = re.compile(r"\{solution-start\}\s*([^\s`:]+)")
_GRADE_ID = re.compile(r"[^A-Za-z0-9_-]+")


def _text(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _parse(source: str) -> Any:
    """The cell's syntax tree; IPython's ``%magic`` and ``!shell`` lines read as blank."""
    import ast

    lines = ["" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:
        return None


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines, names it reads): imports, assignments, defs, arguments."""
    import ast

    tree = _parse(source)
    defined: set[str] = set()
    read: set[str] = set()
    if tree is None:
        return defined, read
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            # Arguments are local, but telling scopes apart is not worth it here: counting
            # them as defined can only hide a missing name, never report a false one.
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    return defined, read


def _is_check(node: Any) -> bool:
    """A statement ``checks.check_x(...)`` (or ``check_x(...)``) standing on its own."""
    import ast

    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.startswith("check_")


def _segment(lines: list[str], node: Any) -> list[str]:
    """The source lines of a statement, decorators included."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return lines[first - 1:node.end_lineno]


def _body_start(lines: list[str], func: Any) -> int:
    """Index (0-based) of the first line of a def's body after any docstring, with the
    comment lines right above it (they belong to the body, not to the signature)."""
    import ast

    body = func.body
    if (len(body) > 1 and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
        body = body[1:]
    start = body[0].lineno - 1
    while start - 1 > func.lineno - 1 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _answer_cell(stub: str, solution: list[str], where: str) -> str:
    """The stub cell with each function's body replaced by the solution's, between
    nbgrader's markers, indented like the stub's body (nbgrader keeps that indentation
    when it puts its stub back, so the student sees the chapter's ``def`` lines)."""
    import ast
    import textwrap

    stub_tree = _parse(stub)
    funcs = [n for n in (stub_tree.body if stub_tree else [])
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not funcs:
        raise SkullstripError(f"{where}: the exercise-stub cell defines no function")
    bodies: dict[str, str] = {}
    helpers: list[str] = []
    helper_names: set[str] = set()
    for source in solution:
        tree = _parse(source)
        if tree is None:
            raise SkullstripError(f"{where}: a solution cell is not valid Python")
        lines = source.splitlines()
        for node in tree.body:
            if _is_check(node):
                break  # what follows the check shows the result off: not part of the answer
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and node.name in {f.name for f in funcs}):
                bodies[node.name] = textwrap.dedent(
                    "\n".join(lines[_body_start(lines, node):node.end_lineno]))
            else:  # an import, a constant, a helper function the answer needs
                text = "\n".join(_segment(lines, node))
                helpers.append(text)
                helper_names |= _names(text)[0]
    missing = [f.name for f in funcs if f.name not in bodies]
    if missing:
        raise SkullstripError(f"{where}: the solution does not define {', '.join(missing)}")
    # Helpers go inside the functions that use them: a solution region at the top level
    # would become a bare `raise NotImplementedError()` that stops the student's cell.
    users = [f for f in funcs if _names(bodies[f.name])[1] & helper_names] or funcs[:1]
    lines = stub.splitlines()
    for func in reversed(funcs):  # from the bottom, so that line numbers above stay valid
        body = bodies[func.name]
        if helpers and func in users:
            body = "\n".join(helpers) + "\n\n" + body
        start = _body_start(lines, func)
        indent = " " * (len(lines[start]) - len(lines[start].lstrip()))
        region = [f"{indent}### BEGIN SOLUTION",
                  *textwrap.indent(body, indent).splitlines(),
                  f"{indent}### END SOLUTION"]
        lines[start:func.end_lineno] = region
    return "\n".join(lines)


def _test_cells(check: str, points: int | dict[str, int], label: str,
                where: str) -> list[tuple[str, str, int]]:
    """One (grade id, source, points) per check call of a check cell, each strict."""
    import ast

    tree = _parse(check)
    if tree is None:
        raise SkullstripError(f"{where}: the check cell is not valid Python")
    lines = check.splitlines()
    preamble = "\n".join(line for node in tree.body if not _is_check(node)
                         for line in _segment(lines, node))
    cells = []
    for node in tree.body:
        if not _is_check(node):
            continue
        call = node.value
        name = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id
        call.keywords = [k for k in call.keywords if k.arg != "strict"]
        call.keywords.append(ast.keyword(arg="strict", value=ast.Constant(True)))
        n = points.get(name, NBGRADER_POINTS) if isinstance(points, dict) else int(points)
        source = (f"# Autograded, {n} points. strict=True: a function not written yet fails "
                  "too.\n" + (preamble + "\n\n" if preamble else "") + ast.unparse(call))
        cells.append((f"{label}-{name}", source, n))
    if not cells:
        raise SkullstripError(f"{where}: the cell after the exercise stub calls no check")
    return cells


def _nbgrader(cell: Any, grade_id: str, *, grade: bool = False, solution: bool = False,
              locked: bool = False, points: int | None = None) -> None:
    meta = {"grade": grade, "solution": solution, "locked": locked,
            "schema_version": NBGRADER_SCHEMA, "grade_id": grade_id}
    if grade:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta


def _assignment(nb: Any, points: int | dict[str, int], build_only: bool,
                where: str) -> tuple[list, int]:
    """The nbgrader source cells of one chapter and its total points."""
    import copy

    import nbformat

    cells = [copy.deepcopy(c) for c in nb.cells]
    setup = next((i for i, c in enumerate(cells)
                  if c.cell_type == "markdown" and _SECTION.search(c.source)), len(cells))
    stubs = [i for i, c in enumerate(cells) if "exercise-stub" in c.metadata.get("tags", [])]
    if not stubs:
        raise SkullstripError(f"{where}: no cell tagged exercise-stub (no build-it exercise)")
    keep = set(range(len(cells))) if not build_only else set(range(setup))
    replace: dict[int, list] = {}
    total, seen = 0, set()
    for k, s in enumerate(stubs):
        check = s + 1
        if check >= len(cells) or cells[check].cell_type != "code":
            raise SkullstripError(f"{where}: no check cell after the exercise stub")
        # The solution: the code cells between the {solution-start} after the check
        # and its {solution-end}.
        def marker(word: str, after: int) -> int | None:
            return next((i for i in range(after + 1, len(cells)) if cells[i].cell_type ==
                         "markdown" and word in cells[i].source), None)

        start = marker("{solution-start}", check)
        end = None if start is None else marker("{solution-end}", start)
        if start is None or end is None:
            raise SkullstripError(f"{where}: the exercise stub has no solution-start/-end after "
                                  "its check")
        found = _START_LABEL.search(cells[start].source)
        label = _GRADE_ID.sub("-", found[1]) if found else f"build-it-{k + 1}"
        while label in seen:
            label += "-2"
        seen.add(label)
        solution = [cells[i].source for i in range(start + 1, end) if cells[i].cell_type == "code"]
        answer = cells[s]
        answer.source = _answer_cell(answer.source, solution, f"{where}, cell {s}")
        _nbgrader(answer, f"{label}-answer", solution=True)
        tests = []
        for grade_id, source, n in _test_cells(cells[check].source, points, label,
                                               f"{where}, cell {check}"):
            test = nbformat.v4.new_code_cell(source)
            _nbgrader(test, grade_id, grade=True, locked=True, points=n)
            tests.append(test)
            total += n
        replace[check] = tests
        # The exercise's statement: the markdown cell above the stub that carries a label.
        task = next((i for i in range(s - 1, -1, -1) if cells[i].cell_type == "markdown"
                     and "{exercise}" in cells[i].source), None)
        if task is not None:
            _nbgrader(cells[task], f"{label}-task", locked=True)
            keep |= set(range(task, check + 1))
        keep |= {s, check}
    for i in range(setup):  # the set-up code is locked: autograde runs the chapter's own
        if cells[i].cell_type == "code":  # (a student's edits there would grade differently)
            _nbgrader(cells[i], f"setup-{i}", locked=True)
    dropped = [c for i, c in enumerate(cells) if i not in keep]
    out: list = []
    for i, cell in enumerate(cells):
        if i in keep:
            out.extend(replace.get(i, [cell]))
    # The build-it solutions are in the answer cells now; every solution block goes.
    gated = [c for c in out if c.cell_type == "code" and not _gated_ok(out, c)]
    out, _ = _strip_solutions(out)
    dropped += gated
    if build_only:
        note = nbformat.v4.new_markdown_cell(
            "*This assignment is the chapter's \"build it yourself\" exercise with the "
            "set-up it needs; the chapter itself, with every section, is in the book.*")
        out.insert(1, note)
    _check_names(out, dropped, where)
    for cell in out:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return out, total


def _gated_ok(cells: list, cell: Any) -> bool:
    """True unless the cell sits between a {solution-start} and its {solution-end}."""
    gated = False
    for c in cells:
        if c.cell_type == "markdown" and "{solution-start}" in c.source:
            gated = True
        elif c.cell_type == "markdown" and "{solution-end}" in c.source:
            gated = False
        elif c is cell:
            return not gated
    return True


def _check_names(kept: list, dropped: list, where: str) -> None:
    """Stop if the kept code reads a name that only a dropped cell defines: the
    assignment would fail with a NameError before the student's work is graded."""
    import builtins

    defined, read = set(), set()
    for cell in kept:
        if cell.cell_type == "code":
            d, r = _names(cell.source)
            defined |= d
            read |= r
    lost = set()
    for cell in dropped:
        if cell.cell_type == "code":
            lost |= _names(cell.source)[0]
    missing = sorted((read - defined - set(dir(builtins))) & lost)
    if missing:
        raise SkullstripError(f"{where}: the assignment reads {', '.join(missing)}, defined "
                              "only in cells it leaves out (solutions, or with build_only "
                              "the chapter's sections)")


def nbgrader_source(src: str | os.PathLike, course_dir: str | os.PathLike, *,
                    points: int | dict[str, int] = NBGRADER_POINTS, build_only: bool = False,
                    overwrite: bool = False) -> dict[str, int]:
    """The chapters as nbgrader *source* notebooks: build-it exercises that grade themselves.

    In each chapter, every "build it yourself" exercise (a code cell tagged
    ``exercise-stub``, the check cell after it, then its ``{solution-start}``
    block) becomes nbgrader's pair of cells:

    - the stub cell becomes an *autograded answer* cell holding the solution:
      each function keeps the stub's ``def`` line, and its body is the
      solution's (with the imports and helpers the solution defines above it),
      between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. ``nbgrader
      generate_assignment`` replaces each such region with ``raise
      NotImplementedError()``, so the student gets the chapter's stub back;
    - each ``checks.check_*`` call of the check cell becomes an *autograded
      test* cell of its own, worth ``points``, called with ``strict=True`` so
      that a function not written yet fails as a wrong one does (see
      :mod:`skullstrip_lib.lessons.checks`).

    Every solution (prose dropdowns, code blocks, the build-it solution and
    what it shows off after its check) is removed, as in
    :func:`student_edition`, and outputs are cleared. The exercise's
    statement and the chapter's set-up cells (before its first section: the
    Colab cell, the parameters, the imports) are read-only, so autograding
    runs them as written; the other cells stay plain. With the solutions in
    place the notebook runs top to bottom, as the chapter does.

    Parameters
    ----------
    src : str or path-like
        A chapter notebook, or a folder of them (``*.ipynb``).
    course_dir : str or path-like
        nbgrader's course folder: each chapter is written as
        ``<course_dir>/source/<name>/<name>.ipynb`` (the assignment is named
        after the notebook), and ``<course_dir>/nbgrader_config.py`` is
        written if there is none (a longer cell timeout; never overwritten).
    points : int or dict of str to int
        Points per test cell; a dict maps check names (``"check_dice"``) to
        points, others get ``NBGRADER_POINTS`` (2).
    build_only : bool
        Keep only the set-up cells and the build-it exercises (statement,
        answer, tests): a short assignment that autogrades in seconds instead
        of executing the whole chapter.
    overwrite : bool
        Replace existing source notebooks.

    Returns
    -------
    dict of str to int
        Total points per assignment name.

    Raises
    ------
    SkullstripError
        A notebook exists and *overwrite* is False; a chapter has no build-it
        exercise or one whose stub, check or solution is not as described; or
        the assignment would read a name that only a removed cell defines.

    Examples
    --------
    >>> import tempfile, nbformat
    >>> from nbformat.v4 import new_code_cell as code, new_markdown_cell as md
    >>> nb = nbformat.v4.new_notebook(cells=[
    ...     md("# 1. A chapter"), code("import numpy as np"), md("## A section"),
    ...     md("```{exercise}\\n:label: ex-1-sum\\nWrite my_sum.\\n```"),
    ...     code("def my_sum(x):\\n    raise NotImplementedError",
    ...          metadata={"tags": ["exercise-stub"]}),
    ...     code("checks.check_sum(my_sum)"),
    ...     md("```{solution-start} ex-1-sum\\n```"),
    ...     code("def my_sum(x):\\n    return np.sum(x)\\n\\n\\ncheck_sum(my_sum)"),
    ...     md("```{solution-end}\\n```")])
    >>> folder = Path(tempfile.mkdtemp())
    >>> nbformat.write(nb, folder / "01_chapter.ipynb")
    >>> nbgrader_source(folder / "01_chapter.ipynb", folder / "course")
    {'01_chapter': 2}
    >>> out = nbformat.read(folder / "course/source/01_chapter/01_chapter.ipynb", as_version=4)
    >>> print(out.cells[4].source)
    def my_sum(x):
        ### BEGIN SOLUTION
        return np.sum(x)
        ### END SOLUTION
    >>> print(out.cells[5].source.splitlines()[-1], out.cells[5].metadata.nbgrader["points"])
    checks.check_sum(my_sum, strict=True) 2
    """
    import nbformat

    src = Path(src)
    paths = sorted(src.glob("*.ipynb")) if src.is_dir() else [src]
    course = Path(course_dir)
    todo = [(p, course / "source" / p.stem / p.name) for p in paths]
    if not overwrite:
        for _, dst in todo:
            if dst.exists():
                raise SkullstripError(f"{dst}: exists; use overwrite=True")
    # Every chapter first, then the files: a chapter that cannot be converted writes nothing.
    made = []
    for path, dst in todo:
        nb = nbformat.read(path, as_version=4)
        cells, total = _assignment(nb, points, build_only, path.name)
        nb.cells = cells
        made.append((path.stem, dst, nb, total))
    totals = {}
    for name, dst, nb, total in made:
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(dst, nbformat.writes(nb) + "\n")
        totals[name] = total
    config = course / "nbgrader_config.py"
    if not config.exists():
        atomic_write_text(config, NBGRADER_CONFIG)
    return totals
