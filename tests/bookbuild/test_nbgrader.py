"""The chapters as nbgrader assignments: conversion, then nbgrader's own grading of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from skullstrip_lib.errors import SkullstripError
from tools.bookbuild import nbgrader as assignments
from tools.bookbuild.answers import NUMERIC_ANSWERS
from tools.bookbuild.editions import raw_myst

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHAPTER = "08_evaluation"  # its build-it part (Dice, HD95) runs in seconds, with 2 test cells


def _nbgrader_meta(cell):
    return cell.metadata.get("nbgrader", {})


def _answers(nb):
    """The build-it answer cells (the other exercises' answers are not counted here)."""
    return [c for c in nb.cells if _nbgrader_meta(c).get("solution")
            and "-build" in _nbgrader_meta(c)["grade_id"]]


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
        # Each check, strict, then again on unseen cases in nbgrader's hidden part.
        checks_ = [c for c in tests if "-check_" in _nbgrader_meta(c)["grade_id"]]
        assert checks_ and all(_nbgrader_meta(c)["points"] == 2 for c in checks_), name
        for test in checks_:
            lines = test.source.splitlines()
            assert lines[-4].endswith("strict=True)") and lines[-3] == "### BEGIN HIDDEN TESTS"
            assert re.fullmatch(re.escape(lines[-4][:-1]) + r", unseen=\d+\)", lines[-2])
            assert lines[-1] == "### END HIDDEN TESTS"
        # Tests are read-only; hand-graded answers (solution and grade) are the student's.
        assert all(_nbgrader_meta(c)["locked"] != _nbgrader_meta(c)["solution"] for c in tests)
        assert totals[name] == sum(_nbgrader_meta(c)["points"] for c in tests)
        # Every other exercise: a hand-graded answer, and the numbers autograded.
        labels = re.findall(r"```\{exercise\}\n:label: (\S+)",
                            "\n".join(c.source for c in original.cells))
        others = [lab for lab in labels if "-build-" not in lab]
        ids = {_nbgrader_meta(c)["grade_id"] for c in nb.cells if _nbgrader_meta(c)}
        for label in others if not build_only else []:
            numbers, prose = NUMERIC_ANSWERS.get(label, ((), True))
            assert (f"{label}-prose" in ids) == prose, label
            assert all(f"{label}-{a.name}" in ids for a in numbers), label
            assert (f"{label}-answer" in ids) == bool(numbers), label
        if build_only:
            assert not any(i.endswith(("-prose", "-answer")) and "-build-" not in i
                           for i in ids), name
        ids = [_nbgrader_meta(c)["grade_id"] for c in nb.cells if _nbgrader_meta(c)]
        assert len(ids) == len(set(ids)), name
        # No solution is left, prose or code, and no output; no MyST shows raw.
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert raw_myst(text) == [] and "<details>" not in text, name
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
        if build_only:
            assert len(nb.cells) < len(original.cells) / 2, name


def test_every_numeric_answer_names_an_exercise_of_the_book():
    text = "\n".join(c.source for path in NOTEBOOKS.glob("*.ipynb")
                     for c in nbformat.read(path, as_version=4).cells)
    labels = set(re.findall(r"```\{exercise\}\n:label: (\S+)", text))
    assert set(NUMERIC_ANSWERS) <= labels - {lab for lab in labels if "-build-" in lab}
    names = [a.name for answers, _ in NUMERIC_ANSWERS.values() for a in answers]
    assert len(names) == len(set(names)) and all(n.isidentifier() for n in names)


def test_points_per_check_and_no_overwrite(tmp_path):
    src = NOTEBOOKS / f"{CHAPTER}.ipynb"
    assert assignments.nbgrader_source(src, tmp_path, points={"check_dice": 3},
                                       build_only=True) == {CHAPTER: 5}
    nb = nbformat.read(tmp_path / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    assert [_nbgrader_meta(c)["points"] for c in _tests(nb)] == [3, 2]
    with pytest.raises(SkullstripError, match="exists"):
        assignments.nbgrader_source(src, tmp_path)
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()  # the instructor's\n")
    assert assignments.nbgrader_source(src, tmp_path, points=1, overwrite=True,
                                       build_only=True) == {CHAPTER: 2}
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
    # 2 for the build-it's check, 2 for the hand-graded answer to the other exercise
    assert assignments.nbgrader_source(path, tmp_path / "course") == {"01_chapter": 4}
    nb = nbformat.read(tmp_path / "course" / "source" / "01_chapter" / path.name, as_version=4)
    (answer,), (prose, test) = _answers(nb), _tests(nb)
    assert prose.cell_type == "markdown" and _nbgrader_meta(prose)["solution"]
    assert _nbgrader_meta(prose)["grade_id"] == "ex-1-sum-prose"
    assert prose.source == ("**Your answer to ex-1-sum** (graded by hand):\n\n"
                            "```python\nanswer = 42\n```")
    assert answer.source == ("# Build it yourself.\ndef my_sum(x):\n    ### BEGIN SOLUTION\n"
                             "    import math\n    SCALE = 1.0\n\n    # add them up\n"
                             "    return SCALE * math.fsum(x)\n    ### END SOLUTION")
    assert test.source.splitlines()[2:5] == [
        "from skullstrip_lib.lessons import checks", "", "check_sum(my_sum, strict=True)"]
    # The solutions are gone but from the hand-graded cell's model answer, which nbgrader
    # replaces in the student's copy.
    assert not any("answer = 42" in c.source or "print(my_sum" in c.source for c in nb.cells
                   if c is not prose)
    # The statements of the exercise and the set-up cells are read-only; the rest is plain.
    locked = [c.source.splitlines()[0] for c in nb.cells
              if _nbgrader_meta(c).get("locked") and not _nbgrader_meta(c).get("grade")]
    assert locked == ["import numpy as np", "**Exercise (ex-1-sum).** Compute it.",
                      "## Exercises"]


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


def _env(tmp_path: Path) -> dict:
    return {**os.environ,
            # nbgrader runs `alembic` (its database migrations) from PATH: the venv's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter"),  # no user nbgrader config
            # the submissions import the library as the graded kernel would (this checkout)
            "PYTHONPATH": f"{Path(__file__).resolve().parents[2]}{os.pathsep}"
                          f"{os.environ.get('PYTHONPATH', '')}",
            "SKULLSTRIP_DATA": str(tmp_path / "data"), "SKULLSTRIP_PROFILE": "sample",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def _submit(course: Path, assignment: str, release: Path, answers: dict) -> None:
    """One submission per student: the release with the given answer cells' sources."""
    for student, sources in answers.items():
        nb = nbformat.read(release, as_version=4)
        for cell in nb.cells:
            grade_id = _nbgrader_meta(cell).get("grade_id")
            if grade_id in sources:
                cell.source = sources[grade_id]
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / release.name)


def _scores(course: Path, assignment: str, student: str) -> tuple[float, float, dict]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(assignment, student)
        grades = {g.name: g.score for g in submission.notebooks[0].grades}
        return submission.score, submission.max_score, grades


def _errors(course: Path, assignment: str, student: str) -> list:
    graded = nbformat.read(course / "autograded" / student / assignment / f"{assignment}.ipynb",
                           as_version=4)
    return [o for c in _tests(graded) if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]


@pytest.mark.slow
def test_nbgrader_grades_right_aliasing_wrapping_overfitted_and_wrong_submissions(tmp_path):
    """nbgrader itself, as an instructor runs it, on chapter 8's build-it: generate the
    student version, then autograde a right submission, one that aliases the library
    (``my_dice = metrics.dice``), one that wraps it, one tuned to the cases the student
    saw, a Dice without its factor 2, and nothing written."""
    course = tmp_path / "course"
    assignments.nbgrader_source(NOTEBOOKS / f"{CHAPTER}.ipynb", course, build_only=True,
                                seed=2026)
    env = _env(tmp_path)
    _nbgrader(course, "generate_assignment", CHAPTER, env=env)
    release = course / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    handed_out = nbformat.read(release, as_version=4)
    (stub,) = _answers(handed_out)
    assert "def my_dice(pred, ref):\n    # YOUR CODE HERE\n    raise NotImplementedError()" \
        in stub.source
    assert "logical_and" not in stub.source and "SOLUTION" not in stub.source
    # The unseen cases are not in the student's copy; the visible checks are.
    text = "\n".join(c.source for c in handed_out.cells)
    assert "unseen=" not in text and "HIDDEN" not in text
    assert "checks.check_dice(my_dice, strict=True)" in text

    source = nbformat.read(course / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    answer_id = _nbgrader_meta(_answers(source)[0])["grade_id"]
    solution = "\n".join(line for line in _answers(source)[0].source.splitlines()
                         if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    then = "\n\n\n"
    _submit(course, CHAPTER, release, {student: {answer_id: text} for student, text in {
        "right": solution,
        "aliasing": solution + then + "my_dice = metrics.dice\n",
        "wrapping": solution + then + "def my_dice(a, b):\n    return metrics.dice(a, b)\n",
        # right on the chapter's cubes (12^3) and balls (40^3), half of it elsewhere
        "overfitted": solution + then + "right_dice = my_dice\n\n\ndef my_dice(pred, ref):\n"
                      "    d = right_dice(pred, ref)\n"
                      "    return d if pred.shape in {(12, 12, 12), (40, 40, 40)} else d / 2\n",
        "wrong": solution + then + "def my_dice(pred, ref):\n    return np.logical_and(pred, "
                 "ref).sum() / (pred.sum() + ref.sum())\n",
        "blank": stub.source}.items()})
    _nbgrader(course, "autograde", CHAPTER, env=env)

    dice, hd95 = (f"ex-08-build-metrics-{c}" for c in ("check_dice", "check_hausdorff95"))
    assert _scores(course, CHAPTER, "right") == (4.0, 4.0, {dice: 2.0, hd95: 2.0})
    for student in ("aliasing", "wrapping", "overfitted", "wrong"):
        assert _scores(course, CHAPTER, student) == (2.0, 4.0, {dice: 0.0, hd95: 2.0}), student
    assert _scores(course, CHAPTER, "blank") == (0.0, 4.0, {dice: 0.0, hd95: 0.0})
    # Each failed for its own reason, in the Dice test.
    reasons = {"aliasing": "is metrics.dice itself, the library's own implementation",
               "wrapping": "it calls metrics.dice, the library's own implementation",
               "overfitted": "fails the case 'unseen balls",
               "wrong": "the factor 2 is missing"}
    for student, reason in reasons.items():
        (error,) = _errors(course, CHAPTER, student)
        assert error.ename == "AssertionError" and reason in error.evalue, (student, error)


@pytest.mark.slow
def test_nbgrader_grades_a_number_from_the_chapters_data(tmp_path, monkeypatch):
    """An exercise whose answer is a number: nbgrader's hidden test recomputes it from the
    chapter's own code solution and accepts the student's within the tolerance."""
    from tools.bookbuild.answers import Answer

    new_code, new_md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        new_md("# 1. A chapter"),
        new_code("import numpy as np\n\nfrom skullstrip_lib import metrics\n"
                 "from skullstrip_lib.lessons import checks, evaluation_lab"),
        new_md("## A section\n\nSee {term}`Dice`."),
        new_md("```{exercise}\n:label: ex-1-shift\nHow much Dice does a 2-voxel shift cost?\n```"),
        new_md("```{solution-start} ex-1-shift\n:class: dropdown\n```"),
        new_code("ref = evaluation_lab.sphere((40, 40, 40), (20, 20, 20), 10.0)\n"
                 "shifted = evaluation_lab.sphere((40, 40, 40), (22, 20, 20), 10.0)"),
        new_md("About 0.9: the overlap lost is $3s/4r$ of the ball.\n\n```{solution-end}\n```"),
        new_md("```{exercise}\n:label: ex-1-build-dice\nWrite my_dice.\n```"),
        new_code("def my_dice(pred, ref):\n    raise NotImplementedError('yours')",
                 metadata={"tags": ["exercise-stub"]}),
        new_code("checks.check_dice(my_dice)"),
        new_md("```{solution-start} ex-1-build-dice\n```"),
        new_code("def my_dice(pred, ref):\n    total = pred.sum() + ref.sum()\n"
                 "    return 1.0 if total == 0 else 2.0 * (pred & ref).sum() / total"),
        new_md("```{solution-end}\n```"),
    ]
    nbformat.write(nb, tmp_path / "01_chapter.ipynb")
    monkeypatch.setitem(assignments.NUMERIC_ANSWERS, "ex-1-shift", (
        (Answer("shift_dice", "the Dice of the shifted ball", "metrics.dice(shifted, ref)",
                0.005, points=3),), True))
    course = tmp_path / "course"
    assert assignments.nbgrader_source(tmp_path / "01_chapter.ipynb", course, seed=1) == {
        "01_chapter": 3 + 2 + 2}  # the number, the prose, the build-it
    env = _env(tmp_path)
    _nbgrader(course, "generate_assignment", "01_chapter", env=env)
    release = course / "release" / "01_chapter" / "01_chapter.ipynb"
    handed_out = nbformat.read(release, as_version=4)
    text = "\n".join(c.source for c in handed_out.cells)
    # The student sees the name to set and the visible test, not the expected value nor
    # the chapter's solution.
    assert "#   shift_dice: the Dice of the shifted ball (autograded, within ± 0.005)" in text
    assert "checks.check_number('shift_dice', shift_dice)" in text
    assert "shifted = " not in text and "About 0.9" not in text and "_expected" not in text
    assert raw_myst(text) == []
    dice = ("def my_dice(pred, ref):\n    total = pred.sum() + ref.sum()\n"
            "    return 1.0 if total == 0 else 2.0 * (pred & ref).sum() / total")
    computed = ("a = evaluation_lab.sphere((40, 40, 40), (20, 20, 20), 10.0)\n"
                "b = evaluation_lab.sphere((40, 40, 40), (22, 20, 20), 10.0)\n"
                "shift_dice = metrics.dice(b, a)")
    _submit(course, "01_chapter", release, {
        "computed": {"ex-1-shift-answer": computed, "ex-1-build-dice-answer": dice},
        "guessed": {"ex-1-shift-answer": "shift_dice = 0.94", "ex-1-build-dice-answer": dice},
        "words": {"ex-1-shift-answer": "shift_dice = 'about 0.9'",
                  "ex-1-build-dice-answer": dice}})
    _nbgrader(course, "autograde", "01_chapter", env=env)
    number, build = "ex-1-shift-shift_dice", "ex-1-build-dice-check_dice"
    assert _scores(course, "01_chapter", "computed")[2] == {
        number: 3.0, build: 2.0, "ex-1-shift-prose": 0.0}  # prose: graded by hand, later
    assert _scores(course, "01_chapter", "guessed")[2][number] == 0.0
    assert _scores(course, "01_chapter", "words")[2][number] == 0.0
    (error,) = _errors(course, "01_chapter", "guessed")
    assert "shift_dice is 0.94; the chapter's data give 0.8" in error.evalue
