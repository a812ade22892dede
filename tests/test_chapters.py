"""The book's chapters: their structure, and every one executed in the sample profile.

Each notebook runs top to bottom with papermill (``profile = "sample"``) in its
own empty data folder, so a broken chapter fails CI; chapters 7-10 share one thing,
the folder of training runs, so that chapter 7's sample run is trained once and
chapters 8-10 score it (alone, each trains it itself). The structure tests check
the skeleton every chapter follows (see the README's "Writing a chapter").
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COLAB = "https://colab.research.google.com/github/skullstrip/skullstrip/blob/main/colab/"
ids = [p.stem for p in NOTEBOOKS]


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def test_eleven_chapters_in_the_toc():
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 12)]
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert [f for f in files if f.startswith("notebooks/")] == [
        f"notebooks/{p.stem}" for p in NOTEBOOKS]
    for f in files:
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_chapter_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = nb.cells
    md = [_source(c) for c in cells if c.cell_type == "markdown"]
    code = [c for c in cells if c.cell_type == "code"]
    # Stored without outputs.
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs stored"
    # One H1, "N. Title", numbered like the file; the Colab badge opens its Colab edition.
    h1 = [line for text in md for line in text.splitlines() if re.match(r"# \S", line)]
    assert len(h1) == 1 and h1[0].startswith(f"# {int(path.stem[:2])}. "), h1
    assert f"{COLAB}{path.name})" in md[0]
    headings = [line.split()[0] for text in md for line in text.splitlines()
                if re.match(r"#{2,} ", line)]
    assert "## Overview" in "\n".join(md) and "## Exercises" in "\n".join(md)
    assert "## Summary" in "\n".join(md)
    assert all(len(b) <= len(a) + 1 for a, b in zip(["#", *headings], headings, strict=False))
    # The Colab set-up cell, then the papermill parameters.
    setup = next(c for c in code if "google.colab" in _source(c))
    assert "hide-input" in setup.metadata.get("tags", [])
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and re.search(r"^profile = None", _source(params[0]), re.M)
    assert code.index(setup) < code.index(params[0])
    # Exercises, each with its (hidden) solution.
    text = "\n".join(md)
    labels = re.findall(r"\{exercise\}\n:label: (\S+)", text)
    assert len(labels) >= 2
    for label in labels:
        assert re.search(r"\{solution(-start)?\} " + re.escape(label) + r"\n:class: dropdown",
                         text), f"{label}: no dropdown solution"
    # No logic lives only in a notebook: functions and classes belong in skullstrip_lib.
    # Two exceptions, for the "build it yourself" exercises, may define functions (`def`,
    # never `class`): the student's stub, a code cell tagged "exercise-stub" that raises
    # NotImplementedError until the student writes it (the book runs it as it is) and is
    # followed by a check cell (checks.check_*), and a code solution, between
    # {solution-start} and {solution-end}.
    gated = False
    for i, c in enumerate(cells):
        source = _source(c)
        if c.cell_type == "markdown":
            gated = (gated or "{solution-start}" in source) and "{solution-end}" not in source
            continue
        stub = "exercise-stub" in c.metadata.get("tags", [])
        if stub:
            assert "raise NotImplementedError" in source, source[:80]
            after = next(d for d in cells[i + 1:] if d.cell_type == "code")
            assert "checks.check_" in _source(after), f"no check after the stub {source[:80]}"
        forbidden = "class" if stub or gated else "def|class"
        assert not re.search(rf"^\s*({forbidden}) ", source, re.M), source[:80]
    # Every chapter has a "build it yourself" exercise: the student writes the chapter's piece.
    assert re.search(rf"\{{exercise\}}\n:label: ex-{path.stem[:2]}-build-", text), (
        "no build-it exercise (label ex-NN-build-...)")
    assert any("exercise-stub" in c.metadata.get("tags", []) for c in code), "no exercise stub"


def test_exercise_labels_unique():
    labels = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        labels += re.findall(r"\{exercise\}\n:label: (\S+)",
                             "\n".join(_source(c) for c in nb.cells))
    assert len(labels) == len(set(labels))


# Chapter 7 trains the student's sample run and keeps it in the data folder's runs/;
# chapters 8-10 score it. In the tests they share that folder (and only it), so that the
# run is trained once per session, by chapter 7 or by the first of 8-10 that needs it.
STUDENT_RUN_CHAPTERS = ("07", "08", "09", "10")


def _shared_runs(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one folder for all of this session's workers
        base = base.parent
    runs = base / "student-runs"
    runs.mkdir(exist_ok=True)
    return runs


@contextlib.contextmanager
def _student_run_made_once(chapter: str, data: Path, tmp_path_factory):
    """Link data/runs to the session's shared runs; hold a lock while this chapter may train.

    Chapter 7 always trains (its resume demonstration), so it holds the lock; chapters
    8-10 hold it only when the run is not there yet (then they train it, and the others
    wait for it instead of training it again).
    """
    import fcntl

    from skullstrip_lib.lessons import notebook
    from skullstrip_lib.train import resolve_config

    runs = _shared_runs(tmp_path_factory)
    data.mkdir(parents=True, exist_ok=True)
    (data / "runs").symlink_to(runs, target_is_directory=True)
    kept = notebook.student_run_dir(resolve_config("sample"), data_dir=data)
    with open(runs.parent / "student-runs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if chapter != "07" and notebook.finished_run(kept):
            fcntl.flock(lock, fcntl.LOCK_UN)  # there already: nothing to wait for
        yield


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_chapter_runs_in_sample_profile(path, tmp_path, monkeypatch, tmp_path_factory):
    import papermill

    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SKULLSTRIP_PROFILE", "sample")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    out = tmp_path / path.name
    chapter = path.stem[:2]
    shared = (_student_run_made_once(chapter, tmp_path / "data", tmp_path_factory)
              if chapter in STUDENT_RUN_CHAPTERS else contextlib.nullcontext())
    with shared:
        papermill.execute_notebook(path, out, parameters={"profile": "sample"},
                                   cwd=str(path.parent), kernel_name="python3",
                                   execution_timeout=900,
                                   progress_bar=False, log_output=False)
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert not errors
    # Every chapter shows at least one figure.
    assert any(o.get("data", {}).get("image/png") for c in executed.cells
               if c.cell_type == "code" for o in c.outputs)
    # Nothing was written into the repository.
    assert not list((ROOT / "notebooks").glob("*.ipynb.*"))


def test_colab_edition_is_up_to_date(tmp_path):
    # colab/ is what the badges open: made from notebooks/ by `make colab-edition`.
    from tools.bookbuild.editions import colab_edition, raw_myst

    colab_edition(ROOT / "notebooks", tmp_path)
    committed = sorted(p.name for p in (ROOT / "colab").glob("*.ipynb"))
    assert committed == [p.name for p in NOTEBOOKS], "run make colab-edition"
    for path in NOTEBOOKS:
        made = (tmp_path / path.name).read_text()
        assert (ROOT / "colab" / path.name).read_text() == made, (
            f"colab/{path.name} is out of date: run make colab-edition")
        nb = nbformat.read(tmp_path / path.name, as_version=4)
        text = "\n".join(_source(c) for c in nb.cells if c.cell_type == "markdown")
        assert raw_myst(text) == [], path.name
        assert f"{COLAB}{path.name})" in _source(nb.cells[0])
        solutions = [c for c in nb.cells if "show_solution = False" in _source(c)]
        assert all(c.metadata.get("cellView") == "form" for c in solutions)
        for cell in nb.cells:
            if cell.cell_type == "code":  # what Colab runs still parses (magics aside)
                compile("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                   for line in _source(cell).splitlines()), path.name, "exec")


def _colab_setup_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(_source(c) for c in nb.cells if c.cell_type == "code" and "google.colab" in
                _source(c))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_colab_setup_installs_the_books_release_keeping_colabs_packages(path, monkeypatch,
                                                                        capsys):
    """The set-up cell as it runs on Colab, with pip stood in for (issue 17, item 2)."""
    import json
    import subprocess
    import sys
    import types
    from importlib import metadata

    from skullstrip_lib import __version__

    source = _colab_setup_cell(path)
    assert re.search(r"^keep_on_drive = True  # @param", source, re.M)  # on by default
    assert f'RELEASE = "{__version__}"' in source  # the release this book was built with
    source = source.replace("keep_on_drive = True", "keep_on_drive = False")
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls, replaced = [], {}

    def pip(cmd, **kwargs):
        calls.append(cmd)
        report = cmd[cmd.index("--report") + 1]
        Path(report).write_text(json.dumps({"install": [
            {"metadata": {"name": n, "version": v}} for n, v in replaced.items()]}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", pip)
    exec(compile(source, path.name, "exec"), {})
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and "-q" not in cmd
    assert cmd[-1] == ("skullstrip-lib[train] @ git+https://github.com/skullstrip/skullstrip"
                       f"@v{__version__}")
    held = Path(cmd[cmd.index("--constraint") + 1]).read_text().splitlines()
    for name in ("tensorflow", "numpy", "protobuf", "pandas"):
        assert f"{name}=={metadata.version(name)}" in held
    assert not any(line.startswith("keras==") for line in held)  # 3.11 fixes a CVE
    out = capsys.readouterr().out
    assert "Colab's packages replaced: none" in out and "RESTART" not in out
    # pip replaced keras (not imported yet) and numpy (imported): a restart is needed.
    replaced.update({"keras": "99.0", "numpy": "99.0", "skullstrip-lib": __version__})
    exec(compile(source, path.name, "exec"), {})
    out = capsys.readouterr().out
    assert f"keras {metadata.version('keras')} -> 99.0" in out
    (line,) = [line for line in out.splitlines() if line.startswith("RESTART NEEDED")]
    assert "imported" in line and "numpy" in line and "Runtime > Restart session" in line
    # pip fails: the cell stops, pointing at pip's own message (not hidden by -q).
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(RuntimeError, match="pip could not install skullstrip-lib: its message"):
        exec(compile(source, path.name, "exec"), {})
