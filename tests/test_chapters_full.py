"""Every chapter in the full profile, in a student's order, against an NFBS stand-in.

The full profile is what a student runs from a chapter's Colab badge: NFBS
downloaded by the real :func:`skullstrip_lib.datasets.fetch_nfbs`, chapter 7
training on it, chapters 8 to 10 using chapter 7's run. Here NFBS is a stand-in
archive in NFBS's exact layout (synthetic heads, 256x256x192 at 1 mm) served
on 127.0.0.1, and the parameters are small (a few subjects, a tiny network
trained for two epochs of two steps on the CPU, through the GPU check's
override), so that every full-profile branch runs in minutes. The chapters
share one data folder, as they do on Google Drive.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STAND_IN_SUBJECTS = 6

# Small parameters: what makes a full-profile chapter fit in a CI run.
PARAMETERS = {
    "07_training": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 1, "base_filters": 4,
                    "allow_cpu": True},
    "08_evaluation": {"n_spaces": 1, "n_seen": 1},
    # Chapter 7's two-epoch network cannot draw a brain yet: its masks fail the volume check.
    "09_stripping_a_new_scan": {"check_volume": False},
    # The conditions the chapter's text and figures single out (the rest are alike).
    "10_data_drift": {"n_heads": 1,
                      "conditions": ["T1 (as trained)", "T2 contrast", "bias x4", "noise 40%"]},
    "11_classical_baseline": {"n_heads": 1},
}


@pytest.mark.notebook
def test_every_chapter_runs_in_the_full_profile(tmp_path, server, monkeypatch):
    import papermill

    from skullstrip_lib.synth import write_nfbs_archive

    archive = write_nfbs_archive(tmp_path / "stand-in" / "NFBS_Dataset.tar.gz",
                                 STAND_IN_SUBJECTS, seed=11, progress=False)
    body = archive.read_bytes()
    url = server.serve("/NFBS_Dataset.tar.gz", body)
    monkeypatch.setenv("SKULLSTRIP_NFBS_URL", url)
    monkeypatch.setenv("SKULLSTRIP_NFBS_HASH", f"md5:{hashlib.md5(body).hexdigest()}")
    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SKULLSTRIP_PROFILE", "full")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    seconds = {}
    for path in NOTEBOOKS:  # in order: chapters 8-10 use chapter 7's run
        out = tmp_path / "executed" / path.name
        out.parent.mkdir(exist_ok=True)
        start = time.perf_counter()
        papermill.execute_notebook(path, out,
                                   parameters={"profile": "full", **PARAMETERS.get(path.stem, {})},
                                   cwd=str(path.parent), kernel_name="python3",
                                   execution_timeout=900, progress_bar=False, log_output=False)
        seconds[path.stem] = round(time.perf_counter() - start, 1)
        executed = nbformat.read(out, as_version=4)
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
                  if o.output_type == "error"]
        assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
        text = json.dumps([c.get("outputs", []) for c in executed.cells])
        assert "profile: full" in text, f"{path.name} did not run in the full profile"
    # Chapter 7 trained on the stand-in; chapters 8-10 used that run, not the bundled model.
    run = tmp_path / "data" / "runs" / "ch07-full"  # chapter 7's stable run folder
    assert (run / "export" / "model.onnx").is_file()
    for stem in ("08_evaluation", "09_stripping_a_new_scan", "10_data_drift",
                 "11_classical_baseline"):
        text = (tmp_path / "executed" / f"{stem}.ipynb").read_text()
        assert "runs/ch07-full" in text, f"{stem} did not use chapter 7's run"
    print("\nfull-profile run times on the stand-in (s):", json.dumps(seconds, indent=1))
    (tmp_path / "seconds.json").write_text(json.dumps(seconds))


def _gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def _stopped_colab_edition(stem: str, parameters: dict, tmp_path, server, monkeypatch):
    """Run a chapter's Colab edition in the full profile until it stops; return the stop.

    The NFBS URL serves a stand-in that must never be fetched (the callers check
    ``server.requests``); the data folder is ``tmp_path / "data"``.
    """
    import papermill

    body = b"not fetched" * 1000
    url = server.serve("/NFBS_Dataset.tar.gz", body)
    monkeypatch.setenv("SKULLSTRIP_NFBS_URL", url)
    monkeypatch.setenv("SKULLSTRIP_NFBS_HASH", f"md5:{hashlib.md5(body).hexdigest()}")
    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    path = ROOT / "colab" / f"{stem}.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as stop:
        papermill.execute_notebook(path, tmp_path / path.name,
                                   parameters={"profile": "full", **parameters},
                                   cwd=str(tmp_path), kernel_name="python3",
                                   execution_timeout=600, progress_bar=False, log_output=False)
    return stop.value


@pytest.mark.notebook
@pytest.mark.skipif(bool(_gpus()), reason="checks the stop on a machine without a GPU")
def test_chapter7_without_a_gpu_stops_before_downloading(tmp_path, server, monkeypatch):
    """Chapter 7's Colab edition, full profile, no GPU, allow_cpu off (issue 17, item 3).

    It must stop at the device check, in one line, before a byte of NFBS is fetched.
    """
    stop = _stopped_colab_edition("07_training", {"allow_cpu": False}, tmp_path, server,
                                  monkeypatch)
    assert stop.ename == "DeviceError"
    assert stop.evalue.startswith("no GPU: the full profile needs one (on Colab: Runtime > "
                                  "Change runtime type > GPU)")
    assert server.requests == []  # nothing was downloaded, not even asked for
    assert not (tmp_path / "data" / "NFBS_Dataset").exists()


@pytest.mark.notebook
@pytest.mark.parametrize("stem", ["08_evaluation", "09_stripping_a_new_scan", "10_data_drift",
                                  "11_classical_baseline"])
def test_chapters_after_7_without_its_run_say_what_to_do(stem, tmp_path, server, monkeypatch):
    """Chapters 8-11's Colab editions, full profile, before chapter 7 has run (issue 17, item 4).

    Each stops at its model, with the message that names chapter 7's run folder (on
    Colab it adds: tick keep_on_drive in chapter 7 and here; tests/lessons/test_notebook.py),
    before it downloads anything: no fall-back to the bundled synthetic-head model.
    """
    from skullstrip_lib.lessons.notebook import no_model_message

    stop = _stopped_colab_edition(stem, {}, tmp_path, server, monkeypatch)
    runs = tmp_path / "data" / "runs"
    assert stop.ename == "MissingFileError"
    assert stop.evalue == f"{runs}: {no_model_message(runs)}"
    assert f"its run lands in {runs / 'ch07-full'}" in stop.evalue
    assert server.requests == []  # nothing was downloaded, not even asked for
    assert not runs.exists() and not (tmp_path / "data" / "NFBS_Dataset").exists()
