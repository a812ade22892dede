"""The chapters as nbgrader source notebooks: build-it exercises that grade themselves.

Book-build tooling, not part of the installed package: ``make assignments`` and
the tests call it from the repository root
(``from tools.bookbuild.nbgrader import nbgrader_source``); book/instructors.md
says how an instructor runs nbgrader on what it writes.
"""

from __future__ import annotations

import os
import random
import re
import secrets
from pathlib import Path
from typing import Any

from skullstrip_lib.errors import SkullstripError
from skullstrip_lib.io import atomic_write_text

from .answers import NUMERIC_ANSWERS, Answer
from .editions import plain_cells, strip_solutions

__all__ = ["NBGRADER_POINTS", "nbgrader_source"]

NBGRADER_POINTS = 2
"""Points of one autograded test cell (one ``checks.check_*`` call) by default."""

PROSE_POINTS = 2
"""Points of a hand-graded prose answer (an exercise that is not a build-it)."""

NBGRADER_SCHEMA = 3
"""The version of nbgrader's cell metadata written (nbgrader 0.6 to 0.9 read version 3)."""

NBGRADER_CONFIG = '''\
# nbgrader's configuration for the skullstrip chapters, written by `make assignments`
# (tools.bookbuild.nbgrader.nbgrader_source) when none existed; yours to edit,
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
_EXERCISE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{exercise\}[^\n]*\n"
                       r"(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
_PROSE_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}\s*(?P<label>\S+)[^\n]*\n"
                             r"(?P<body>.*?)^(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL)
_OPTION = re.compile(r"^:[a-z-]+:.*\n", re.MULTILINE)
_END_FENCE = re.compile(r"^(`{3,}|:{3,})\{solution-end\}", re.MULTILINE)


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
                where: str, seeds: Any) -> list[tuple[str, str, int]]:
    """One (grade id, source, points) per check call of a check cell, each strict, with
    the same check on unseen cases (a seed from *seeds*) between nbgrader's hidden-test
    markers: removed from the student's copy, put back by ``nbgrader autograde``."""
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
        visible = ast.unparse(call)
        call.keywords.append(ast.keyword(arg="unseen", value=ast.Constant(seeds.randrange(
            2**31))))
        source = (f"# Autograded, {n} points. strict=True: a function not written yet fails, "
                  "and so does one that is\n# or calls the library's own implementation. "
                  "Grading adds cases you have not seen.\n"
                  + (preamble + "\n\n" if preamble else "") + visible
                  + "\n### BEGIN HIDDEN TESTS\n" + ast.unparse(call) + "\n### END HIDDEN TESTS")
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


def _solutions(cells: list) -> dict[str, dict[str, list[str]]]:
    """Per exercise label, its solution: ``prose`` (the bodies of ``{solution}``
    directives), ``code`` and ``text`` (the code and markdown cells of its
    ``{solution-start}`` block)."""
    found: dict[str, dict[str, list[str]]] = {}
    label = None
    for cell in cells:
        text = cell.source
        if cell.cell_type == "markdown":
            for match in _PROSE_SOLUTION.finditer(text):
                body = _OPTION.sub("", match["body"]).strip()
                found.setdefault(match["label"], {"prose": [], "code": [], "text": []})[
                    "prose"].append(body)
            start = _START_LABEL.search(text)
            if start:
                label = start[1]
                found.setdefault(label, {"prose": [], "code": [], "text": []})
                continue
            if "{solution-end}" in text:
                end = _END_FENCE.search(text)
                before = text[:end.start()].strip() if end else ""
                if label is not None and before:
                    found[label]["text"].append(before)
                label = None
                continue
        if label is not None:
            found[label]["code" if cell.cell_type == "code" else "text"].append(text)
    return found


def _numeric_cells(label: str, answers: tuple[Answer, ...], code: list[str],
                   where: str) -> tuple[list, int]:
    """The autograded answer cell of a numeric exercise and one test cell per number: the
    test's hidden part runs the exercise's own code solution in a function (its names stay
    local) and compares the student's number with the expected one, within its tolerance."""
    import textwrap

    import nbformat

    solution = "\n\n".join(code).strip()
    if '"""' in solution or "'''" in solution:
        raise SkullstripError(f"{where}: the solution of {label} holds a triple-quoted string "
                              "(it is indented into the hidden test)")
    names = "\n".join(f"#   {a.name}: {a.what} (autograded, within ± {a.tolerance:g})"
                      for a in answers)
    answer = nbformat.v4.new_code_cell(
        f"# Your answer to {label}: set these variables to numbers, computed in this cell or "
        f"above.\n{names}\n### BEGIN SOLUTION\n"
        + (solution + "\n" if solution else "")
        + "\n".join(f"{a.name} = {a.expected}" for a in answers) + "\n### END SOLUTION")
    _nbgrader(answer, f"{label}-answer", solution=True)
    cells, total = [answer], 0
    body = textwrap.indent(solution + "\n" if solution else "", "    ")
    for a in answers:
        test = nbformat.v4.new_code_cell(
            f"# Autograded, {a.points} point{'s' if a.points != 1 else ''}: {a.name}, "
            f"{a.what}, within ± {a.tolerance:g}.\n"
            f"from skullstrip_lib.lessons import checks\n\n"
            f"checks.check_number({a.name!r}, {a.name})\n"
            "### BEGIN HIDDEN TESTS\n"
            f"def _expected_{a.name}():  # the chapter's own computation, from its data\n"
            f"{body}    return {a.expected}\n\n\n"
            f"checks.check_number({a.name!r}, {a.name}, _expected_{a.name}(), "
            f"tolerance={a.tolerance!r})\n"
            "### END HIDDEN TESTS")
        _nbgrader(test, f"{label}-{a.name}", grade=True, locked=True, points=a.points)
        cells.append(test)
        total += a.points
    return cells, total


def _prose_cell(label: str, solution: dict[str, list[str]]) -> Any:
    """A hand-graded markdown answer cell; in the source it holds the model answer (the
    prose solution, the solution's text and code), which nbgrader replaces in the release."""
    import nbformat

    parts = [*solution.get("prose", []), *solution.get("text", []),
             *(f"```python\n{c.strip()}\n```" for c in solution.get("code", []))]
    cell = nbformat.v4.new_markdown_cell(
        f"**Your answer to {label}** (graded by hand):\n\n" + "\n\n".join(parts))
    _nbgrader(cell, f"{label}-prose", grade=True, solution=True, points=PROSE_POINTS)
    return cell


def _exercise_answers(cells: list, built: set[str], where: str
                      ) -> tuple[dict[int, list], int]:
    """Answer cells (and tests) for every exercise but the build-its, by the index of the
    cell that states it (they go right below it), and their points."""
    solutions = _solutions(cells)
    extra: dict[int, list] = {}
    total = 0
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for match in _EXERCISE.finditer(cell.source):
            found = _LABEL.search(match["body"])
            if found is None or found[1] in built:
                continue
            label = found[1]
            if "{solution-start}" in cell.source:
                raise SkullstripError(f"{where}: {label}'s statement and its solution-start "
                                      "share a cell; its answer cell would be removed with "
                                      "the solution")
            solution = solutions.get(label, {})
            numbers, prose = NUMERIC_ANSWERS.get(label, ((), True))
            new: list = []
            if numbers:
                made, points = _numeric_cells(label, numbers, solution.get("code", []),
                                              f"{where}, {label}")
                new += made
                total += points
            if prose:
                new.append(_prose_cell(label, solution))
                total += PROSE_POINTS
            extra.setdefault(i, []).extend(new)
        if i in extra and "nbgrader" not in cell.metadata:
            first = _LABEL.search(cell.source)
            _nbgrader(cell, f"{first[1] if first else i}-task", locked=True)
    return extra, total


def _assignment(nb: Any, points: int | dict[str, int], build_only: bool,
                where: str, seeds: Any) -> tuple[list, int]:
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
    total, seen, built = 0, set(), set()
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
        if found:
            built.add(found[1])
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
                                               f"{where}, cell {check}", seeds):
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
    # Every other exercise gets its answer cell (and tests) below its statement.
    extra: dict[int, list] = {}
    if not build_only:
        extra, more = _exercise_answers(cells, built, where)
        total += more
    dropped = [c for i, c in enumerate(cells) if i not in keep]
    out: list = []
    for i, cell in enumerate(cells):
        if i in keep:
            out.extend(replace.get(i, [cell]))
            out.extend(extra.get(i, []))
    # The build-it solutions are in the answer cells now; every solution block goes.
    gated = [c for c in out if c.cell_type == "code" and not _gated_ok(out, c)]
    out, _ = strip_solutions(out)
    dropped += gated
    if build_only:
        note = nbformat.v4.new_markdown_cell(
            "*This assignment is the chapter's \"build it yourself\" exercise with the "
            "set-up it needs; the chapter itself, with every section, is in the book.*")
        out.insert(1, note)
    _check_names(out, dropped, where)
    # MyST shows raw in Jupyter: the release gets the plain Markdown of the Colab edition.
    plain_cells(out, where, chapters="colab")
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
                    seed: int | None = None, overwrite: bool = False) -> dict[str, int]:
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
      that a function not written yet fails as a wrong one does, and so does
      one that is or calls the library's own implementation (see
      :mod:`skullstrip_lib.lessons.checks`). Below it, between nbgrader's
      ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, the same check
      runs on cases the student has not seen (``unseen=<seed>``): ``nbgrader
      generate_assignment`` removes them from the student's copy and
      ``nbgrader autograde`` puts them back.

    Unless *build_only*, every other exercise gets answer cells right below its
    statement: a hand-graded Markdown cell (``PROSE_POINTS``, holding the model
    answer in the source), and, for an exercise whose answer is a number
    (:data:`tools.bookbuild.answers.NUMERIC_ANSWERS`), an autograded answer
    cell where the student sets named variables, and one test cell per number
    whose hidden part computes the expected value from the chapter's own data
    (the exercise's code solution, run inside a function) and accepts it within
    its tolerance (:func:`skullstrip_lib.lessons.checks.check_number`).

    Every solution (prose dropdowns, code blocks, the build-it solution and
    what it shows off after its check) is removed, as in
    :func:`~tools.bookbuild.editions.student_edition`, the MyST that only the
    web book renders becomes plain Markdown
    (:func:`~tools.bookbuild.editions.plain_markdown`; links to other chapters
    open their Colab editions), and outputs are cleared. The exercise's
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
    seed : int or None
        Seed of the hidden tests' unseen cases; None draws a fresh one, so
        that each course's hidden cases are its own.
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
    >>> print(*out.cells[5].source.splitlines()[-4:], sep="\\n")  # doctest: +ELLIPSIS
    checks.check_sum(my_sum, strict=True)
    ### BEGIN HIDDEN TESTS
    checks.check_sum(my_sum, strict=True, unseen=...)
    ### END HIDDEN TESTS
    >>> out.cells[5].metadata.nbgrader["points"]
    2
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
    # The seeds of the unseen cases: fresh for every course unless given (reproducible).
    seeds = random.Random(secrets.randbits(64) if seed is None else seed)
    # Every chapter first, then the files: a chapter that cannot be converted writes nothing.
    made = []
    for path, dst in todo:
        nb = nbformat.read(path, as_version=4)
        cells, total = _assignment(nb, points, build_only, path.name, seeds)
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
