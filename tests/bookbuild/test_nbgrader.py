"""The chapters as nbgrader assignments: conversion, then nbgrader's own grading of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from skullstrip_lib.errors import SkullstripError
from tools.bookbuild import nbgrader as assignments
from tools.bookbuild.editions import raw_myst

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHAPTER = "08_evaluation"  # its build-it part (Dice, HD95) runs in seconds, with 2 test cells


def _nbgrader_meta(cell):
    return cell.metadata.get("nbgrader", {})


def _answers(nb):
    return [c for c in nb.cells if _nbgrader_meta(c).get("solution")]


def _tests(nb):
    return [c for c in nb.cells if _nbgrader_meta(c).get("grade")]


@pytest.mark.parametrize("build_only", [False, True], ids=["whole", "build-only"])
def test_every_chapter_becomes_a_source_notebook(tmp_path, build_only):
    totals = assignments.nbgrader_source(NOTEBOOKS, tmp_path, build_only=build_only)
    chapters = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert sorted(totals) == chapters
    assert (tmp_path / "nbgrader_config.py").is_file()
    for name in chapters:
        original = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        stubs = [c for c in original.cells if "exercise-stub" in c.metadata.get("tags", [])]
        nb = nbformat.read(tmp_path / "source" / name / f"{name}.ipynb", as_version=4)
        answers, tests = _answers(nb), _tests(nb)
        assert len(answers) == len(stubs), name
        for answer, stub in zip(answers, stubs, strict=True):
            meta = _nbgrader_meta(answer)
            assert meta["grade"] is False and meta["locked"] is False
            assert meta["schema_version"] == 3
            # Every def line of the stub is kept; its raise is now a marked solution.
            defs = [line for line in stub.source.splitlines() if line.startswith("def ")]
            assert all(line in answer.source.splitlines() for line in defs), name
            assert answer.source.count("### BEGIN SOLUTION") == len(defs)
            assert "NotImplementedError" not in answer.source, name
        assert tests and all(c.source.rstrip().endswith("strict=True)") for c in tests), name
        assert all(_nbgrader_meta(c)["locked"] and _nbgrader_meta(c)["points"] == 2
                   for c in tests)
        assert totals[name] == 2 * len(tests)
        ids = [_nbgrader_meta(c)["grade_id"] for c in nb.cells if _nbgrader_meta(c)]
        assert len(ids) == len(set(ids)), name
        # No solution is left, prose or code, and no output; no MyST shows raw.
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert raw_myst(text) == [] and "<details>" not in text, name
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
        if build_only:
            assert len(nb.cells) < len(original.cells) / 2, name


def test_points_per_check_and_no_overwrite(tmp_path):
    src = NOTEBOOKS / f"{CHAPTER}.ipynb"
    assert assignments.nbgrader_source(src, tmp_path, points={"check_dice": 3}) == {CHAPTER: 5}
    nb = nbformat.read(tmp_path / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    assert [_nbgrader_meta(c)["points"] for c in _tests(nb)] == [3, 2]
    with pytest.raises(SkullstripError, match="exists"):
        assignments.nbgrader_source(src, tmp_path)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # the instructor's\n")
    assert assignments.nbgrader_source(src, tmp_path, points=1, overwrite=True) == {CHAPTER: 2}
    assert "the instructor's" in (tmp_path / "nbgrader_config.py").read_text()


def _chapter(tmp_path, later="print(answer)"):
    """A chapter with a build-it exercise whose solution needs a helper, and a prose
    exercise's code solution that defines ``answer``, which *later* may read."""
    new_code, new_md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        new_md("# 1. A chapter"), new_md("## Overview\n\nGoals."),
        new_code("import numpy as np"), new_md("## A section"),
        new_md("```{exercise}\n:label: ex-1-sum\nCompute it.\n```"),
        new_md("```{solution-start} ex-1-sum\n```"), new_code("answer = 42"),
        new_md("```{solution-end}\n```"), new_code(later),
        new_md("## Exercises\n\n```{exercise}\n:label: ex-1-build\nWrite my_sum.\n```"),
        new_code("# Build it yourself.\ndef my_sum(x):\n    raise NotImplementedError('yours')",
                 metadata={"tags": ["exercise-stub"]}),
        new_code("from skullstrip_lib.lessons import checks\n\ncheck_sum(my_sum)  # a comment"),
        new_md("```{solution-start} ex-1-build\n:class: dropdown\n```"),
        new_code("import math\n\nSCALE = 1.0\n\n\ndef my_sum(x):\n    # add them up\n"
                 "    return SCALE * math.fsum(x)\n\n\ncheck_sum(my_sum)\nprint(my_sum([1]))"),
        new_md("```{solution-end}\n```"),
    ]
    path = tmp_path / "01_chapter.ipynb"
    nbformat.write(nb, path)
    return path


def test_helpers_go_into_the_function_and_the_demo_goes(tmp_path):
    path = _chapter(tmp_path, later="print(np.pi)")
    assert assignments.nbgrader_source(path, tmp_path / "course") == {"01_chapter": 2}
    nb = nbformat.read(tmp_path / "course" / "source" / "01_chapter" / path.name, as_version=4)
    (answer,), (test,) = _answers(nb), _tests(nb)
    assert answer.source == ("# Build it yourself.\ndef my_sum(x):\n    ### BEGIN SOLUTION\n"
                             "    import math\n    SCALE = 1.0\n\n    # add them up\n"
                             "    return SCALE * math.fsum(x)\n    ### END SOLUTION")
    assert test.source.splitlines()[1:] == [
        "from skullstrip_lib.lessons import checks", "", "check_sum(my_sum, strict=True)"]
    assert not any("answer = 42" in c.source or "print(my_sum" in c.source for c in nb.cells)
    # The statements of the exercise and the set-up cells are read-only; the rest is plain.
    locked = [c.source.splitlines()[0] for c in nb.cells
              if _nbgrader_meta(c).get("locked") and not _nbgrader_meta(c).get("grade")]
    assert locked == ["import numpy as np", "## Exercises"]


def test_a_cell_that_needs_a_removed_solution_stops_it(tmp_path):
    path = _chapter(tmp_path)  # print(answer): answer comes from a solution
    with pytest.raises(SkullstripError, match="reads answer, defined only in cells"):
        assignments.nbgrader_source(path, tmp_path / "course")
    assert not (tmp_path / "course").exists()  # nothing written
    # Build-only leaves that cell out as well, so that assignment can be made.
    assert assignments.nbgrader_source(path, tmp_path / "short", build_only=True) == {
        "01_chapter": 2}


def _nbgrader(course: Path, *args: str, env: dict) -> None:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_nbgrader_grades_right_and_wrong_submissions(tmp_path):
    """nbgrader itself, as an instructor runs it: generate the student version, then
    autograde three submissions (right, a Dice without its factor 2, nothing written)."""
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    assignments.nbgrader_source(NOTEBOOKS / f"{CHAPTER}.ipynb", course, build_only=True)
    env = {**os.environ,
           # nbgrader runs `alembic` (its database migrations) from PATH: the venv's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),  # no user nbgrader config
           "SKULLSTRIP_DATA": str(tmp_path / "data"), "SKULLSTRIP_PROFILE": "sample",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    _nbgrader(course, "generate_assignment", CHAPTER, env=env)
    release = course / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    handed_out = nbformat.read(release, as_version=4)
    (stub,) = _answers(handed_out)
    assert "def my_dice(pred, ref):\n    # YOUR CODE HERE\n    raise NotImplementedError()" \
        in stub.source
    assert "logical_and" not in stub.source and "SOLUTION" not in stub.source

    source = nbformat.read(course / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    solution = "\n".join(line for line in _answers(source)[0].source.splitlines()
                         if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    no_factor_2 = ("\n\n\ndef my_dice(pred, ref):\n"
                   "    return np.logical_and(pred, ref).sum() / (pred.sum() + ref.sum())\n")
    for student, answer in {"right": solution, "wrong": solution + no_factor_2,
                            "blank": None}.items():
        nb = nbformat.read(release, as_version=4)
        if answer is not None:
            _answers(nb)[0].source = answer
        folder = course / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{CHAPTER}.ipynb")
    _nbgrader(course, "autograde", CHAPTER, env=env)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        def scores(student):
            submission = gradebook.find_submission(CHAPTER, student)
            grades = {g.name.rpartition("-")[2]: g.score for g in submission.notebooks[0].grades}
            return submission.score, submission.max_score, grades

        assert scores("right") == (4.0, 4.0, {"check_dice": 2.0, "check_hausdorff95": 2.0})
        assert scores("wrong") == (2.0, 4.0, {"check_dice": 0.0, "check_hausdorff95": 2.0})
        assert scores("blank") == (0.0, 4.0, {"check_dice": 0.0, "check_hausdorff95": 0.0})
    # The wrong Dice failed its check's case, not on something else.
    graded = nbformat.read(course / "autograded" / "wrong" / CHAPTER / f"{CHAPTER}.ipynb",
                           as_version=4)
    errors = [o for c in _tests(graded) for o in c.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["AssertionError"]
    assert "the factor 2 is missing" in errors[0].evalue
