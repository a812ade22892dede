"""The chapters as handed out: the student edition and the Colab edition (tools/bookbuild)."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
    # The exercises stay, as plain Markdown (Jupyter shows MyST raw), with their labels.
    assert [c.source for c in nb.cells if "Exercise" in c.source] == [
        "**Exercise (ex-a).** Why?\n", "**Exercise (ex-c).** Compute it.\n"]
    assert "{" not in text
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


@pytest.mark.parametrize(("source", "expected"), [
    ("x = 2\nx + 1", "x = 2\nfrom IPython.display import display\ndisplay(x + 1)"),
    ("table.round(3)  # rounded", "from IPython.display import display\n"
     "display(table.round(3))  # rounded"),
    ("f(a,\n  b)", "from IPython.display import display\ndisplay(f(a,\n  b))"),
    ("%matplotlib inline\nx", "%matplotlib inline\nfrom IPython.display import display\n"
     "display(x)"),
    ("x + 1;", "x + 1;"),                      # Jupyter's own way to hide the value
    ("x = 1", "x = 1"),                        # not an expression
    ("print(x)", "print(x)"),                  # shows itself, returns None
    ("plt.show()", "plt.show()"),
    ("checks.check_dice(my_dice)", "checks.check_dice(my_dice)"),
    ("for i in x:\n    i", "for i in x:\n    i"),  # not at the top of the cell
    ("x +", "x +"),                            # not Python: left to fail where it runs
], ids=["sum", "comment", "multi-line", "magic", "semicolon", "assignment", "print", "show",
        "check", "loop", "syntax-error"])
def test_display_last_expression(source, expected):
    assert editions.display_last_expression(source) == expected


def _gated(tmp_path, code):
    new_code, new_md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [new_md("# 1. A chapter"), new_code("x = 20"),
                new_md("```{exercise}\n:label: ex-1\nDouble it.\n```"),
                new_md("```{solution-start} ex-1\n:class: dropdown\n```"), new_code(code),
                new_md("```{solution-end}\n```")]
    path = tmp_path / "01_chapter.ipynb"
    nbformat.write(nb, path)
    (out,) = editions.colab_edition(path, tmp_path / "colab", overwrite=True)
    return nbformat.read(out, as_version=4)


def _ticked(cell) -> str:
    """The form cell's code as Colab runs it once the student ticks show_solution."""
    assert cell.metadata.get("cellView") == "form"
    assert "show_solution = False  # @param" in cell.source
    return cell.source.replace("show_solution = False", "show_solution = True")


def test_a_form_cell_shows_its_last_expression_in_a_kernel(tmp_path):
    # Run in a real IPython kernel, as Colab does: before the fix, ticking the box showed
    # nothing; now the value of the solution's last line is the cell's output.
    from nbclient import NotebookClient

    nb = _gated(tmp_path, "y = x * 2\ny + 1")
    form = nb.cells[4]
    assert form.source.endswith("    display(y + 1)\n")
    nb.cells[4].source = _ticked(form)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    (shown,) = nb.cells[4].outputs
    assert shown["output_type"] == "display_data" and shown["data"]["text/plain"] == "41"
    # Unticked (as "Run all" runs it) the cell shows nothing and runs nothing.
    nb = _gated(tmp_path, "y = x * 2\ny + 1")
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert nb.cells[4].outputs == []


def _form_cell(nb, needle):
    (cell,) = [c for c in nb.cells if "show_solution" in c.source and needle in c.source]
    return cell


def _run_ticked(cell, namespace, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    exec(compile(_ticked(cell), "<form cell>", "exec"), namespace)
    return shown


def test_the_chapters_form_cells_that_end_in_an_expression_show_it(tmp_path, monkeypatch):
    # colab/02 (cell 52) and colab/07 (cell 42) ended in a bare expression inside
    # `if show_solution:`: made from the chapters now, each shows its value.
    import numpy as np

    from skullstrip_lib import datasets
    from skullstrip_lib.lessons import training_lab

    root = Path(__file__).resolve().parents[2] / "notebooks"
    made = {name[:2]: nbformat.read(editions.colab_edition(root / name, tmp_path)[0],
                                    as_version=4)
            for name in ("02_nfbs_dataset.ipynb", "07_training.ipynb")}
    split = _form_cell(made["02"], "split_subjects(ids_125, fractions=(0.8, 0.1, 0.1)")
    ids = [f"A{i:08d}" for i in range(125)]
    (counts,) = _run_ticked(split, {"datasets": datasets, "ids_125": ids, "split_seed": 0},
                            monkeypatch)
    assert counts.index.tolist() == list(datasets.SPLITS) and counts.sum() == 125
    assert counts["train"] == 100

    losses = _form_cell(made["07"], '"everything is brain"')
    ball = training_lab.toy_ball((64, 64, 64), fraction=0.1)
    (table,) = _run_ticked(losses, {"training_lab": training_lab, "np": np, "ball": ball},
                           monkeypatch)
    assert table.index.tolist() == ["everything is brain"]
    assert table.equals(training_lab.compare_losses(
        ball, {"everything is brain": np.ones(ball.shape)}).round(3))


def test_no_chapter_shows_raw_myst_in_the_student_edition(tmp_path):
    # Jupyter renders no MyST: the student edition has none left, and each exercise is
    # still there, named by its label.
    root = Path(__file__).resolve().parents[2] / "notebooks"
    editions.student_edition(root, tmp_path)
    for path in sorted(root.glob("[0-9][0-9]_*.ipynb")):
        original = nbformat.read(path, as_version=4)
        labels = [m for c in original.cells if c.cell_type == "markdown"
                  for m in re.findall(r"```\{exercise\}\n:label: (\S+)", c.source)]
        cells = nbformat.read(tmp_path / path.name, as_version=4).cells
        text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        assert editions.raw_myst(text) == [], path.name
        assert labels and all(f"**Exercise ({label}).**" in text for label in labels)
        # A link to another chapter opens the copy beside it; no link is left relative
        # to the repository's folders (../book/...).
        assert "](../" not in text, path.name
        assert f"{editions.COLAB_FOLDER}/{path.name}" in cells[0].source


def test_plain_markdown_links():
    text = "[setup](../book/setup.md) [ch 8](08_evaluation.ipynb#dice) [web](https://x.org)"
    assert editions.plain_markdown(text, chapters="relative") == (
        f"[setup](https://github.com/{editions.REPOSITORY}/blob/main/book/setup.md) "
        "[ch 8](08_evaluation.ipynb#dice) [web](https://x.org)")
    assert editions.plain_markdown(text).split()[2] == (
        f"8](https://colab.research.google.com/github/{editions.REPOSITORY}/blob/main/colab/"
        "08_evaluation.ipynb#dice)")
    assert editions.plain_markdown("(a-target)=\n# Title") == "# Title"


@pytest.mark.parametrize(("myst", "plain"), [
    ("{py:func}`skullstrip_lib.model.build_unet`", "`skullstrip_lib.model.build_unet`"),
    ("{py:func}`~skullstrip_lib.model.build_unet`", "`build_unet`"),
    ("{py:func}`unet.build_unet <skullstrip_lib.model.build_unet>`", "`unet.build_unet`"),
    ("{py:class}`TrainConfig <skullstrip_lib.train.TrainConfig>`", "`TrainConfig`"),
    ("{py:data}`inference.BRAIN_VOLUME_ML <skullstrip_lib.inference.BRAIN_VOLUME_ML>`",
     "`inference.BRAIN_VOLUME_ML`"),
    ("{py:mod}`skullstrip_lib.train`", "`skullstrip_lib.train`"),
])
def test_python_roles_become_code_text(myst, plain):
    # A link to the API page in the web book; the name as code everywhere else.
    text = f"Call {myst}, then {myst}."
    converted = editions.plain_markdown(text)
    assert converted == f"Call {plain}, then {plain}."
    assert editions.raw_myst(text) and editions.raw_myst(converted) == []


def test_python_roles_in_the_editions(tmp_path):
    # The student edition, the Colab edition and the nbgrader source all go through
    # plain_markdown: none keeps a Python role.
    path = _chapter(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nSee {py:func}`unet.build_unet <skullstrip_lib.model.build_unet>`."
    nbformat.write(nb, path)
    for make in (editions.student_edition, editions.colab_edition):
        out = tmp_path / make.__name__
        make(path, out)
        text = (out / path.name).read_text()
        assert "{py:func}" not in text and "See `unet.build_unet`." in text, make.__name__
