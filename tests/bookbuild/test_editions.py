"""The chapters as handed out: the student edition and the Colab edition (tools/bookbuild)."""

from __future__ import annotations

import json

import nbformat
import pytest

from skullstrip_lib.errors import SkullstripError
from tools.bookbuild import editions


def _chapter(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 1. A chapter"),
        nbformat.v4.new_markdown_cell("```{exercise}\n:label: ex-a\nWhy?\n```"),
        nbformat.v4.new_markdown_cell("```{solution} ex-a\n:class: dropdown\nBecause.\n```"),
        nbformat.v4.new_markdown_cell(
            "Text before.\n\n````{solution} ex-b\n:class: dropdown\n```python\nx = 1\n```\n"
            "````\nText after."),
        nbformat.v4.new_markdown_cell("```{exercise}\n:label: ex-c\nCompute it.\n```"),
        nbformat.v4.new_markdown_cell("```{solution-start} ex-c\n:class: dropdown\n```"),
        nbformat.v4.new_code_cell("answer = 42"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
        nbformat.v4.new_code_cell("print(1)"),
    ]
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    path = tmp_path / "01_chapter.ipynb"
    nbformat.write(nb, path)
    return path


def test_student_edition_removes_solutions_and_outputs(tmp_path):
    src = _chapter(tmp_path)
    counts = editions.student_edition(src, tmp_path / "student")
    assert counts == {"01_chapter.ipynb": 3}
    nb = nbformat.read(tmp_path / "student" / src.name, as_version=4)
    text = json.dumps([c.source for c in nb.cells])
    assert "solution" not in text and "Because" not in text and "answer = 42" not in text
    assert "Text before." in text and "Text after." in text
    assert sum("{exercise}" in c.source for c in nb.cells) == 2
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    with pytest.raises(SkullstripError, match="exists"):
        editions.student_edition(src, tmp_path / "student")
    editions.student_edition(src, tmp_path / "student", overwrite=True)


def test_student_edition_unclosed_solution(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("```{solution-start} ex\n```"),
                nbformat.v4.new_code_cell("x = 1")]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(SkullstripError, match=r"bad.ipynb: a \{solution-start\} has no"):
        editions.student_edition(path, tmp_path / "out")
    assert not (tmp_path / "out" / "bad.ipynb").exists()
