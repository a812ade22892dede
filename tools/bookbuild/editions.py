"""The chapters as handed out: the student edition and the Colab edition.

Book-build tooling, not part of the installed package: the Makefile
(``make student-edition``, ``make colab-edition``) and the tests call it from the
repository root (``from tools.bookbuild.editions import colab_edition``).

- :func:`student_edition`: the chapters without their solutions and outputs, their
  MyST turned into plain Markdown (:func:`plain_markdown`), for a local Jupyter.
- :func:`colab_edition`: the chapters as their Colab badges open them (``colab/``),
  the same Markdown, code solutions folded into form cells.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from skullstrip_lib.errors import SkullstripError
from skullstrip_lib.io import atomic_write_text

__all__ = ["COLAB_FOLDER", "REPOSITORY", "colab_edition", "display_last_expression",
           "plain_cells", "plain_markdown", "raw_myst", "strip_solutions",
           "student_edition"]


# A fenced ```{solution} ...``` directive (any fence length of 3 or more backticks or colons).
_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}.*?^(?P=fence)[ \t]*$\n?",
                       re.MULTILINE | re.DOTALL)


def strip_solutions(cells: list) -> tuple[list, int]:
    """The cells without their solutions, and how many were removed.

    A prose solution (a fenced ``{solution}`` directive) is cut out of its
    markdown cell (the cell goes if nothing else is left); a code solution,
    the cells from a ``{solution-start}`` to its ``{solution-end}``, goes whole.

    Raises
    ------
    SkullstripError
        A ``{solution-start}`` has no ``{solution-end}``.
    """
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
    ``{solution-end}``) are dropped. The exercises themselves stay. The MyST
    that only the web book renders becomes plain Markdown
    (:func:`plain_markdown`), so that Jupyter shows no raw ``{exercise}`` or
    ``{term}``; links to other chapters point at the copies beside it.

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
            nb.cells, counts[path.name] = strip_solutions(nb.cells)
        except SkullstripError as exc:
            raise SkullstripError(f"{path}: {exc}") from None
        plain_cells(nb.cells, path.name, chapters="relative")
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
# A Python cross-reference to the API pages: {py:func}`skullstrip_lib.model.build_unet`,
# {py:func}`~skullstrip_lib.model.build_unet` (shown as its last part) or
# {py:func}`unet.build_unet <skullstrip_lib.model.build_unet>` (shown as its title).
_PY = re.compile(r"\{py:[a-z]+\}`(?P<tilde>~?)(?P<text>[^`<]+?)(?:\s*<[^>`]+>)?`")
_LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")
_EXERCISE_LABEL = re.compile(r"^:label:\s*(\S+)", re.MULTILINE)
_TARGET = re.compile(r"^\([A-Za-z0-9_.:-]+\)=[ \t]*\n?", re.MULTILINE)


def _link(target: str, chapters: str) -> str:
    """A relative link of a chapter, made to work outside the web book.

    Another chapter (``08_evaluation.ipynb#anchor``) stays relative with
    ``chapters="relative"`` (the copies sit side by side) and becomes its Colab
    edition's address with ``chapters="colab"``; a book page or any other file
    of the repository becomes its address on GitHub.
    """
    path, _, anchor = target.partition("#")
    if path.endswith(".ipynb") and "/" not in path:  # another chapter
        if chapters == "relative":
            return target
        url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/{COLAB_FOLDER}/{path}"
    else:  # a book page or any other file of the repository
        url = f"https://github.com/{REPOSITORY}/blob/main/{(Path('notebooks') / path).as_posix()}"
        url = url.replace("/notebooks/../", "/")
    return url + (f"#{anchor}" if anchor else "")


def _py_code(match: re.Match) -> str:
    """A Python role as the code text the web book shows for it."""
    text = match["text"].strip()
    return f"`{text.rsplit('.', 1)[-1] if match['tilde'] else text}`"


def plain_markdown(text: str, *, chapters: str = "colab") -> str:
    """A chapter's MyST Markdown as plain Markdown, for Jupyter, Colab and nbgrader.

    Only the web book renders MyST; anywhere else its directives and roles show
    as raw text. An ``{exercise}`` becomes a paragraph led by a bold "Exercise
    (its label).", a prose
    ``{solution}`` a closed HTML ``<details>`` fold (the student edition and the
    nbgrader release have none left by then), note, tip and warning admonitions
    quoted paragraphs, ``{term}`` roles their text, ``{numref}`` "the figure",
    ``{eq}`` the equation's label, ``{cite}`` roles ``[key]``, ``{py:func}`` and the
    other Python roles (links to the API pages) their name as code, a ``(target)=``
    line nothing, and relative links links that work outside the book (see
    *chapters*).

    Parameters
    ----------
    text : str
        The source of a markdown cell.
    chapters : {"colab", "relative"}
        Where a link to another chapter points: its Colab edition, or the
        notebook of the same name beside this one (the student edition).

    Returns
    -------
    str

    Examples
    --------
    >>> print(plain_markdown("```{exercise}\\n:label: ex-1\\nWhy is a {term}`voxel` small?\\n```"))
    **Exercise (ex-1).** Why is a voxel small?
    <BLANKLINE>
    >>> plain_markdown("Use {py:func}`unet.build_unet <skullstrip_lib.model.build_unet>`.")
    'Use `unet.build_unet`.'
    >>> plain_markdown("See [chapter 8](08_evaluation.ipynb).", chapters="relative")
    'See [chapter 8](08_evaluation.ipynb).'
    """

    def directive(match: re.Match) -> str:
        body = _OPTION.sub("", match["body"]).strip()
        if match["name"] == "exercise":  # its label names it in the book, the tests, nbgrader
            label = _EXERCISE_LABEL.search(match["body"])
            return (f"**Exercise ({label[1]}).** " if label else "**Exercise.** ") + body + "\n"
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
    text = _TARGET.sub("", text)
    text = _ADMONITION.sub(admonition, text)
    text = _TERM.sub(lambda m: m[1].strip(), text)
    text = _NUMREF.sub(figure, text)
    text = _EQ.sub(lambda m: f"({m[1]})", text)
    text = _PY.sub(_py_code, text)
    text = _CITE.sub(lambda m: "[" + ", ".join(k.strip() for k in m[1].split(",")) + "]", text)
    return _LINK.sub(lambda m: f"]({_link(m[1], chapters)})", text)


_RAW_MYST = re.compile(r"\{[a-z][a-z0-9:-]*\}`[^`]*`"          # a role: {term}`voxel`
                       r"|^[ \t]*(?:`{3,}|:{3,})\{[a-z-]+\}.*$"  # a directive's fence
                       r"|^\([A-Za-z0-9_.:-]+\)=[ \t]*$", re.MULTILINE)  # a target: (name)=


def raw_myst(text: str) -> list[str]:
    """The MyST roles, directives and targets left in a markdown text (what a reader
    outside the web book would see raw); empty for plain Markdown.

    Examples
    --------
    >>> raw_myst("A {term}`voxel`.\\n```{exercise}\\n:label: ex-1\\nWhy?\\n```")
    ['{term}`voxel`', '```{exercise}']
    >>> raw_myst(plain_markdown("A {term}`voxel`.\\n```{exercise}\\n:label: ex-1\\nWhy?\\n```"))
    []
    """
    return _RAW_MYST.findall(text)


def plain_cells(cells: list, name: str, *, chapters: str = "colab") -> None:
    """Every markdown cell of a chapter as :func:`plain_markdown`, in place; the Colab
    badge of the title cell (the first) opens the Colab edition of chapter *name*."""
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source, chapters=chapters)
            if i == 0:
                cell.source = cell.source.replace(f"/blob/main/notebooks/{name}",
                                                  f"/blob/main/{COLAB_FOLDER}/{name}")


# Calls that show something themselves or return None: a display() around them would
# add a stray "None" (Jupyter's own display hook skips None; display() does not).
_SHOWS_ITSELF = re.compile(r"^(print|display|show|savefig|close|assert\w*|check_\w+)$")


def display_last_expression(source: str) -> str:
    r"""The cell's code with its last line, a bare expression, wrapped in ``display()``.

    Jupyter shows the value of a cell's last expression; indented under
    ``if show_solution:`` (a Colab form cell) the same line is a statement in a
    block and shows nothing. Wrapping it in IPython's ``display()`` shows the
    value either way. Left as it is: a last statement that is not an expression,
    one ended by ``;`` (Jupyter's way to hide a value), and a call that shows
    its result itself or returns None (``print``, ``plt.show``, ``checks.check_*``,
    ``assert_*``). IPython's ``%magic`` and ``!shell`` lines are skipped when parsing.

    Examples
    --------
    >>> print(display_last_expression("x = 2\nx + 1  # three"))
    x = 2
    from IPython.display import display
    display(x + 1)  # three
    >>> display_last_expression("print(1)")
    'print(1)'
    """
    import ast

    lines = source.splitlines()
    try:
        tree = ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                   for line in lines))
    except SyntaxError:
        return source
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return source
    node = tree.body[-1]
    value = node.value
    if isinstance(value, ast.Constant):  # a string standing alone: a comment, in effect
        return source
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if _SHOWS_ITSELF.match(name):
            return source
    first, last = node.lineno - 1, node.end_lineno - 1
    tail = lines[last][node.end_col_offset:]
    if tail.lstrip().startswith(";"):
        return source
    segment = "\n".join(lines[first:last + 1])
    segment = segment[node.col_offset:len(segment) - len(tail)]
    wrapped = f"display({segment}){tail}".splitlines()
    return "\n".join([*lines[:first], "from IPython.display import display", *wrapped,
                      *lines[last + 1:]])


def _guard(source: str, where: str) -> str:
    """A solution's code as a Colab form cell that runs only when asked (not by "Run all")."""
    if '"""' in source or "'''" in source:  # indenting would change the strings
        raise SkullstripError(f"{where}: a solution cell holds a triple-quoted string")
    source = display_last_expression(source)
    body = "\n".join(("    " + line) if line.strip() else "" for line in source.splitlines())
    return ("# @title Solution: tick show_solution, then run this cell { display-mode: \"form\" }\n"
            "show_solution = False  # @param {type:\"boolean\"}\n"
            "if show_solution:\n" + body + "\n")


def colab_edition(src: str | os.PathLike, out_dir: str | os.PathLike, *,
                  overwrite: bool = False) -> list[Path]:
    """The chapters as their Colab badges open them: plain Markdown, solutions folded away.

    Colab renders neither MyST directives nor roles, and shows every code cell. This
    copy of each chapter turns an ``{exercise}`` into a bold "Exercise (label)." paragraph, a
    prose ``{solution}`` into a closed HTML ``<details>`` fold, a code solution
    (``{solution-start}`` to ``{solution-end}``) into Colab form cells whose code is
    hidden and which run only when the student ticks ``show_solution`` (so "Run all"
    does not reveal them; a solution that ends in a bare expression shows its value
    through ``display()``, see :func:`display_last_expression`), ``{cite}`` roles into
    ``[key]``, note, tip and warning admonitions into quoted paragraphs, ``{term}``
    roles into their text, ``{py:func}`` and the other Python roles into their name
    as code, ``{numref}`` into "the figure" and ``{eq}`` into the
    equation's label, and links to other chapters and pages into links that work from
    Colab; the badge points at the copy itself. Outputs are dropped. The web book keeps
    its own dropdowns.

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
                text = plain_markdown(text)
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
