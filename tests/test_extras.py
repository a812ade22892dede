"""Commands that need the [train] extra say so in one line when it is missing.

TensorFlow and friends are "removed" by a ``None`` in ``sys.modules``: an import
of the name then fails with ModuleNotFoundError, and ``find_spec`` finds nothing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from skullstrip_lib.cli import main
from skullstrip_lib.errors import MissingExtraError, missing_extra

MODEL_JSON = Path(__file__).resolve().parents[1] / "skullstrip_lib/models/default/model.json"
HINT = "pip install 'skullstrip-lib[train]'"


def _one_line(capsys, command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"skullstrip {command}: error: this command needs TensorFlow")
    assert lines[0].endswith(HINT)
    return lines[0]


def test_train_without_tensorflow(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    run_dir = tmp_path / "run"
    assert main(["train", "-o", str(run_dir), "--epochs", "1", "-q"]) == 1
    assert "'tensorflow'" in _one_line(capsys, "train")
    assert not run_dir.exists()  # refused before anything was written


def test_export_without_tf2onnx(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    assert main(["export", str(tmp_path)]) == 1
    assert "'tf2onnx'" in _one_line(capsys, "export")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_keras_model_without_keras(command, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "keras", None)
    shutil.copy2(MODEL_JSON, tmp_path / "model.json")
    (tmp_path / "model.keras").write_bytes(b"never read")
    out = str(tmp_path / "out")
    args = {"predict": ["predict", str(tmp_path / "scan.nii.gz"), "-o", out],
            "evaluate": ["evaluate", "--data", str(tmp_path), "-o", out + ".csv"]}[command]
    assert main([*args, "--model", str(tmp_path / "model.keras"), "-q"]) == 1
    assert "'keras'" in _one_line(capsys, command)


def test_other_missing_modules_are_not_blamed_on_the_extra():
    assert missing_extra(ModuleNotFoundError("No module named 'foo'", name="foo")) is None
    error = missing_extra(ModuleNotFoundError("...", name="tensorflow.python.framework"))
    assert isinstance(error, MissingExtraError) and error.module == "tensorflow"
    assert error.extra == "train" and str(error).endswith(HINT)

