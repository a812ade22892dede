"""The notebook helpers a chapter calls: profiles, chapter data, the model, Drive."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import needs_default

from skullstrip_lib import inference
from skullstrip_lib.errors import InvalidArgumentError, MissingFileError, SkullstripError
from skullstrip_lib.lessons import notebook


def test_resolve_profile(monkeypatch):
    monkeypatch.delenv("SKULLSTRIP_PROFILE", raising=False)
    assert notebook.resolve_profile(None) == "sample"
    assert notebook.resolve_profile("full") == "full"
    monkeypatch.setenv("SKULLSTRIP_PROFILE", "full")
    assert notebook.resolve_profile(None) == "full"
    assert notebook.resolve_profile("sample") == "sample"
    with pytest.raises(InvalidArgumentError, match="^profile must be one of 'sample' or 'full', "
                                                   "got 'gpu'$"):
        notebook.resolve_profile("gpu")
    monkeypatch.setenv("SKULLSTRIP_PROFILE", "gpu")
    with pytest.raises(InvalidArgumentError, match="^SKULLSTRIP_PROFILE must be one of"):
        notebook.resolve_profile(None)


def test_colab_picks_full(monkeypatch):
    import sys
    import types

    monkeypatch.delenv("SKULLSTRIP_PROFILE", raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert notebook.in_colab()
    assert notebook.resolve_profile(None) == "full"


def test_load_subjects_sample(tmp_path):
    small = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}
    index = notebook.load_subjects("sample", 4, data_dir=tmp_path, progress=False, **small)
    assert index.columns.tolist() == ["subject", "t1w", "brainmask", "brain", "split"]
    assert len(index) == 4 and set(index["split"]) == {"train", "val", "test"}
    assert all(str(tmp_path) in p for p in index["t1w"])
    # Fewer subjects from the same folder: the first ones, split again among themselves.
    again = notebook.load_subjects("sample", 3, data_dir=tmp_path, progress=False, **small)
    assert again["subject"].tolist() == index["subject"].tolist()[:3]
    assert set(again["split"]) == {"train", "val", "test"}
    # Other head settings never share (or overwrite) a folder.
    t2 = notebook.load_subjects("sample", 1, data_dir=tmp_path, progress=False,
                                contrast="t2", **small)
    assert t2["t1w"][0] != index["t1w"][0]
    assert len(list((tmp_path / "sample").iterdir())) == 2


@pytest.mark.parametrize("profile", ["sample", "full"])
@pytest.mark.parametrize("n_subjects", [0, 2.5, "3"])
def test_load_subjects_refuses_a_bad_count_as_the_pipeline_does(tmp_path, profile, n_subjects):
    # Once int(n_subjects) for synthetic heads ("3" and 2.5 went through) and fetch_nfbs's
    # InvalidInputError for NFBS: now the error of datasets and synth, before anything is written.
    with pytest.raises(InvalidArgumentError, match="^n_subjects must be an integer >= 1 or None, "
                                                   f"got {n_subjects!r}$"):
        notebook.load_subjects(profile, n_subjects, data_dir=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_load_subjects_full_rejects_head_arguments(tmp_path):
    with pytest.raises(InvalidArgumentError,
                       match=r"^contrast applies to synthetic heads only \(the sample profile\)"):
        notebook.load_subjects("full", 1, data_dir=tmp_path, contrast="t2")


@needs_default
def test_resolve_model_uses_the_nfbs_run_or_stops(tmp_path):
    import shutil

    assert notebook.resolve_model(None, "sample", data_dir=tmp_path).name == "default"
    # No trained run yet: the full profile stops, naming what to run; it never falls back
    # to the bundled synthetic-head model.
    with pytest.raises(MissingFileError, match="run chapter 7 in the full profile"):
        notebook.resolve_model(None, "full", data_dir=tmp_path)
    assert notebook.resolve_model("default", "full", data_dir=tmp_path).name == "default"
    older = tmp_path / "runs" / "ch07-full-x1y2" / "export"  # an earlier edition's run folder
    shutil.copytree(inference.bundled_models()["default"], older,
                    ignore=shutil.ignore_patterns("split.csv"))  # its synthetic heads
    assert notebook.resolve_model(None, "full", data_dir=tmp_path).name == str(older)
    chapter7 = tmp_path / "runs" / "ch07-full" / "export"  # chapter 7's stable run folder
    shutil.copytree(inference.bundled_models()["default"], chapter7,
                    ignore=shutil.ignore_patterns("split.csv"))  # its synthetic heads
    assert notebook.resolve_model(None, "full", data_dir=tmp_path).name == str(chapter7)
    assert notebook.resolve_model(None, "sample", data_dir=tmp_path).name == "default"
    export = tmp_path / "runs" / "full" / "export"  # runs/full wins over chapter 7's runs
    shutil.copytree(inference.bundled_models()["default"], export,
                    ignore=shutil.ignore_patterns("split.csv"))  # its synthetic heads
    assert notebook.resolve_model(None, "full", data_dir=tmp_path).name == str(export)
    # A run folder given explicitly means its export; a BrainModel passes through.
    assert notebook.resolve_model(tmp_path / "runs" / "full").name == str(export)
    model = inference.load_model("default")
    assert notebook.resolve_model(model, "full", data_dir=tmp_path) is model


def test_no_model_stop_says_what_to_do(tmp_path, monkeypatch):
    """Chapters 8-10 in the full profile before chapter 7 has run (issue 17, item 4)."""
    import sys
    import types

    runs = tmp_path / "runs"
    with pytest.raises(MissingFileError) as stop:
        notebook.resolve_model(None, "full", data_dir=tmp_path)
    assert str(stop.value) == (
        f"{runs}: no model trained on NFBS here: run chapter 7 in the full profile first (its "
        f"run lands in {runs / 'ch07-full'}), or pass model=<a model folder, file or run> "
        '(model="default" is the bundled synthetic-head model)')
    # On Colab, with the data folder on the machine's own disk: chapter 7's run cannot be here.
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.raises(MissingFileError) as stop:
        notebook.resolve_model(None, "full", data_dir=tmp_path)
    assert str(stop.value).endswith(
        ". On Colab each chapter starts on a fresh machine: tick keep_on_drive in the set-up "
        "cell of chapter 7 and of this chapter, so that chapter 7's run is kept on Google Drive "
        "and found here, then run chapter 7 (about an hour on a T4)")
    # On Drive already: chapter 7 has not been run (to its end) with keep_on_drive.
    message = notebook.no_model_message(Path("/content/drive/MyDrive/skullstrip_data/runs"))
    assert message.endswith(". The data folder is on Google Drive: open chapter 7 from its "
                            "badge, keep keep_on_drive ticked, and run it to the end (about an "
                            "hour on a T4)")


def test_keep_data_on_drive(tmp_path, monkeypatch):
    import sys
    import types

    with pytest.raises(SkullstripError, match="Colab only"):
        notebook.keep_data_on_drive()
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=lambda where: mounted.append(where))
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("SKULLSTRIP_DATA", raising=False)
    path = notebook.keep_data_on_drive(mount_point=str(tmp_path / "drive"))
    assert mounted == [str(tmp_path / "drive")]
    assert path == tmp_path / "drive" / "MyDrive" / "skullstrip_data" and path.is_dir()
    from skullstrip_lib.datasets import get_data_dir

    assert get_data_dir() == path


def test_print_config(capsys):
    notebook.print_config()
    out = capsys.readouterr().out
    assert "skullstrip_lib 0.1.0" in out and "nibabel" in out and "onnxruntime" in out


def test_source_is_the_real_function_without_its_docstring():
    import inspect

    text = notebook.source(inference.predict)
    head, _, code = text.partition("\n")
    lines, first = inspect.getsourcelines(inference.predict)
    assert head == (f"# skullstrip_lib/inference.py, lines {first}-{first + len(lines) - 1}: "
                    "predict")
    # Every line shown is a line of the file, in order; only the docstring is left out.
    body = [line.rstrip("\n") for line in lines]
    assert [line for line in code.splitlines()] == [
        line for line in body if line not in inference.predict.__doc__.splitlines()
        and '"""' not in line]
    assert inference.predict.__doc__.strip().splitlines()[0] not in text
    assert "mask = probability_to_mask(" in code


def test_source_excerpt():
    from skullstrip_lib import metrics

    text = notebook.source(metrics.dice, start="def dice", stop="def dice")
    assert text.splitlines()[1].startswith("def dice(") and len(text.splitlines()) == 2
    assert "(an excerpt)" in text.splitlines()[0]
    with pytest.raises(ValueError, match="no line contains 'not in there'"):
        notebook.source(metrics.dice, start="not in there")
    with pytest.raises(ValueError, match="contains 'nor this'"):
        notebook.source(metrics.dice, stop="nor this")


# A training configuration that trains in seconds (tests/test_train.py's tiny one, 1 epoch).
TINY_RUN = {
    "profile": "sample", "epochs": 1,
    "synth": [{"n": 6, "shape": [64, 64, 48], "voxel_size": [4.0, 4.0, 4.0]}],
    "preprocess": {"shape": [24, 32, 40], "spacing": 6.0, "n4": "none", "normalization": "zscore"},
    "base_filters": 4, "depth": 2, "batch_size": 2, "steps_per_epoch": 3,
    "learning_rate": 1e-2, "workers": 1,
}


def test_student_run_folder_is_keyed_by_the_configuration(tmp_path):
    from skullstrip_lib.train import TrainConfig, resolve_config

    config = TrainConfig.from_dict(TINY_RUN)
    folder = notebook.student_run_dir(config, data_dir=tmp_path)
    assert folder.parent == tmp_path / "runs" and folder.name.startswith("ch07-sample-")
    # The same configuration, made again, names the same folder; any change, another one.
    assert notebook.student_run_dir(TrainConfig.from_dict(config.to_dict()),
                                    data_dir=tmp_path) == folder
    changed = [TrainConfig.from_dict({**TINY_RUN, **change}) for change in
               ({"epochs": 2}, {"seed": 1}, {"learning_rate": 2e-2}, {"synth_seed": 101})]
    assert len({notebook.student_run_dir(c, data_dir=tmp_path) for c in changed} - {folder}) == 4
    # Chapter 7's sample run (what chapters 8-10 ask for) is the profile's own configuration.
    sample = notebook.student_run_dir(resolve_config("sample"), data_dir=tmp_path)
    assert sample == notebook.student_run_dir(resolve_config("sample", epochs=None),
                                              data_dir=tmp_path)
    assert sample != notebook.student_run_dir(resolve_config("sample", epochs=3),
                                              data_dir=tmp_path)


def test_student_run_trained_once_reused_and_never_half(tmp_path, capsys, monkeypatch):
    import os
    import shutil

    from skullstrip_lib.train import TrainConfig

    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "elsewhere"))
    config = TrainConfig.from_dict(TINY_RUN)
    folder = notebook.student_run_dir(config, data_dir=tmp_path)
    # Not there: trained here, with a line saying so, and moved into place when finished.
    assert notebook.student_run(config, data_dir=tmp_path) == folder
    assert "training it here" in capsys.readouterr().out
    assert notebook.finished_run(folder)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [folder.name]  # nothing left over
    # Its data were cached in data_dir, and $SKULLSTRIP_DATA is as it was.
    assert (tmp_path / "cache").is_dir() and not (tmp_path / "elsewhere" / "cache").exists()
    assert os.environ["SKULLSTRIP_DATA"] == str(tmp_path / "elsewhere")
    # There: reused, not trained again.
    made = (folder / "export" / "model.onnx").stat().st_mtime_ns
    assert notebook.student_run(config, data_dir=tmp_path) == folder
    assert capsys.readouterr().out == ""
    assert (folder / "export" / "model.onnx").stat().st_mtime_ns == made
    # An incomplete run under that name (no export: stopped before its end) is not reused.
    shutil.rmtree(folder / "export")
    (folder / "summary.json").unlink()
    assert not notebook.finished_run(folder)
    assert notebook.student_run(config, data_dir=tmp_path) == folder
    assert "training it here" in capsys.readouterr().out and notebook.finished_run(folder)
    assert inference.load_model(folder / "export").config.shape == (24, 32, 40)
    # Chapter 7 keeps its own finished run under its configuration's name, replacing an
    # earlier one; an unfinished run is refused and nothing moves.
    mine = tmp_path / "runs" / "ch07-demo"
    shutil.copytree(folder, mine)
    (mine / "marker").write_text("chapter 7's")
    assert notebook.keep_student_run(mine, data_dir=tmp_path) == folder
    assert not mine.exists() and (folder / "marker").read_text() == "chapter 7's"
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [folder.name]
    half = tmp_path / "runs" / "half"
    shutil.copytree(folder, half)
    shutil.rmtree(half / "export")
    with pytest.raises(SkullstripError, match="half: not a finished training run"):
        notebook.keep_student_run(half, data_dir=tmp_path)
    assert half.is_dir() and (folder / "marker").exists()


@needs_default
def test_models_to_compare_in_the_full_profile(tmp_path):
    # The full profile's chapter model is already the student's (chapter 7's NFBS run): the
    # bundled model is loaded beside it; with no NFBS run there is nothing to compare.
    mine = inference.load_model("default")  # stands in for chapter 7's exported run
    pair = notebook.models_to_compare(mine, "full", data_dir=tmp_path)
    assert list(pair) == ["bundled", "yours"] and pair["yours"] is mine
    assert pair["bundled"].name == "default" and pair["bundled"] is not mine
    with pytest.raises(MissingFileError, match="run chapter 7 in the full profile"):
        notebook.student_model("full", data_dir=tmp_path)
