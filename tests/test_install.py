"""The light install: ``pip install skullstrip-lib`` (no extras) predicts without TensorFlow.

A fresh virtual environment gets the package from a copy of the working tree
(so the build writes nothing into the checkout), non-editable and without
extras. It must lack TensorFlow, Keras, TensorBoard and the ONNX exporters,
yet synthesise a head and skull-strip it with the bundled ONNX model; the
commands that need the ``[train]`` extra must say so in one line.

One test, not several: under pytest-xdist each worker would build its own
environment. pip's cache is used, so a second run downloads nothing (the first
fetches about 200 MB of wheels).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("tensorflow", "keras", "tensorboard", "tf2onnx", "onnx")


def _copy_working_tree(dst: Path) -> None:
    """Copy the files git tracks or would track (not ignored ones: no .venv, no data)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=REPO, capture_output=True, check=True,
                             timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout of the repository")
    for name in out.stdout.decode().split("\0"):
        src = REPO / name
        if name and src.is_file():  # a file deleted but not yet staged is listed too
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def _run(*cmd, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
def test_base_install_predicts_without_tensorflow(tmp_path):
    src, venv = tmp_path / "src", tmp_path / "venv"
    _copy_working_tree(src)
    res = _run(sys.executable, "-m", "venv", venv, timeout=300)
    assert res.returncode == 0, res.stderr
    python, skullstrip = venv / "bin" / "python", venv / "bin" / "skullstrip"
    res = _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", src,
               timeout=3600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _run(python, "-m", "pip", "check", timeout=300).returncode == 0

    # No training stack: each import fails.
    code = ("import importlib, sys\n"
            "for m in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except ModuleNotFoundError:\n"
            "        continue\n"
            "    print(m)\n")
    res = _run(python, "-c", code, *TRAIN_ONLY, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == []  # the modules that imported

    # A synthetic head, skull-stripped by the bundled ONNX model.
    data, out = tmp_path / "data", tmp_path / "out"
    res = _run(skullstrip, "synth", data, "--subjects", "1", "--seed", "0", "-q")
    assert res.returncode == 0, res.stderr
    (t1w,) = sorted((data / "NFBS_Dataset").glob("*/*_T1w.nii.gz"))
    res = _run(skullstrip, "predict", t1w, "-o", out, "-q")
    assert res.returncode == 0, res.stderr
    scan = nib.load(t1w)
    mask = nib.load(out / t1w.name.replace("_T1w.nii.gz", "_T1w_brainmask.nii.gz"))
    assert mask.shape == scan.shape
    assert np.array_equal(mask.affine, scan.affine)
    voxels = np.asarray(mask.dataobj) > 0
    volume_ml = voxels.sum() * np.prod(mask.header.get_zooms()[:3]) / 1000
    assert 900 < volume_ml < 2000
    truth = np.asarray(nib.load(str(t1w).replace("_T1w.nii.gz", "_T1w_brainmask.nii.gz"))
                       .dataobj) > 0
    assert 2 * (voxels & truth).sum() / (voxels.sum() + truth.sum()) > 0.9  # Dice

    # The [train] commands: help works; running one says what to install, in one line.
    res = _run(skullstrip, "train", "--help")
    assert res.returncode == 0 and "usage: skullstrip train" in res.stdout
    run_dir = tmp_path / "runs" / "first"
    res = _run(skullstrip, "train", "-o", run_dir, "--epochs", "1", "-q")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("skullstrip train: error: ")
    assert "pip install 'skullstrip-lib[train]'" in lines[0]
    assert not run_dir.exists()

    # So does a .keras model for predict (the ONNX one above needed no TensorFlow).
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy2(REPO / "skullstrip_lib" / "models" / "default" / "model.json", model)
    (model / "model.keras").write_bytes(b"not read: keras is missing")
    res = _run(skullstrip, "predict", t1w, "-o", tmp_path / "out_keras", "--model",
               model / "model.keras", "-q")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip predict: error: "), res.stderr
    assert "skullstrip-lib[train]" in lines[0]
