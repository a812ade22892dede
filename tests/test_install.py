"""The light install: ``pip install skullstrip-lib`` (no extras) predicts without TensorFlow.

A fresh virtual environment gets the package from a copy of the working tree
(so the build writes nothing into the checkout), non-editable and without
extras. It must lack TensorFlow, Keras, TensorBoard and the ONNX exporters,
yet synthesise a head and skull-strip it with the bundled ONNX model; the
commands that need the ``[train]`` extra must say so in one line.

The ``[train]`` extra on Colab is checked here too, by pip's resolver alone
(``pip install --dry-run``) against a copy of a Colab runtime's packages.

One test, not several: under pytest-xdist each worker would build its own
environment. pip's cache is used, so a second run downloads nothing (the first
fetches about 200 MB of wheels).
"""

from __future__ import annotations

import json
import os
import re
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


# --------------------------------------------------------------------------- Colab
COLAB_CONSTRAINTS = REPO / "constraints" / "colab-2025.10.txt"
"""Colab's runtime the [train] extra is checked against (its pip freeze; README, "Colab")."""
KEPT = ("tensorflow", "numpy", "protobuf", "pandas", "ml-dtypes", "tf-keras", "jax", "jaxlib",
        "tensorboard", "grpcio")
"""Colab packages the install must leave as they are (others may only be added)."""
MAY_UPGRADE = {"keras"}  # keras>=3.11 fixes CVE-2025-9906; Colab 2025.10 has 3.10.0


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _colab() -> dict[str, str]:
    pins = {}
    for line in COLAB_CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[_norm(name)] = version
    return pins


def _dry_run(python: Path, tmp_path: Path, name: str, *args,
             env_path: Path | None = None) -> dict:
    """``pip install --dry-run --report`` of ``.[train]`` for Python 3.12 (Colab's), as JSON."""
    report = tmp_path / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path)  # "installed" packages pip sees
    cmd = [str(python), "-m", "pip", "install", "--dry-run", "--quiet",
           "--disable-pip-version-check", "--report", str(report), "--python-version", "3.12",
           "--implementation", "cp", "--only-binary=:all:", *args, f"{REPO}[train]"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if res.returncode and any(s in res.stderr for s in ("NewConnectionError", "ConnectTimeout",
                                                         "Network is unreachable")):
        pytest.skip(f"PyPI not reachable: {res.stderr.strip().splitlines()[-1]}")
    assert res.returncode == 0, res.stderr[-4000:]
    return {_norm(i["metadata"]["name"]): i["metadata"] for i in
            json.loads(report.read_text())["install"]}


@pytest.mark.slow
def test_train_extra_keeps_colabs_tensorflow_numpy_and_protobuf(tmp_path):
    """``pip install skullstrip-lib[train]`` on Colab's runtime (issue 17, item 2).

    1. With Colab's packages as constraints (keras free): the extra resolves,
       so versions of every dependency exist that leave Colab's stack alone.
       This is what the chapters' set-up cell asks pip for.
    2. A plain install, as a student would type it: pip sees Colab's packages
       as installed (their metadata, with the dependencies pip read in 1, in a
       folder on PYTHONPATH) and, free to upgrade them, must still keep
       TensorFlow, numpy, protobuf and the rest of :data:`KEPT`: the bounds in
       pyproject.toml steer it away from the releases that would drag them.
    """
    # A pip that resolves for another Python with --dry-run (24 or later), in its own venv.
    venv = tmp_path / "pip-venv"
    res = _run(sys.executable, "-m", "venv", venv, timeout=300)
    assert res.returncode == 0, res.stderr
    python = venv / "bin" / "python"
    res = _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "pip>=24.1", timeout=600)
    if res.returncode and "NewConnectionError" in res.stderr:
        pytest.skip("PyPI not reachable")
    assert res.returncode == 0, res.stderr[-3000:]
    colab = _colab()
    held = tmp_path / "colab-but-keras.txt"
    held.write_text("".join(f"{n}=={v}\n" for n, v in colab.items() if n not in MAY_UPGRADE))
    resolved = _dry_run(python, tmp_path, "constrained", "--ignore-installed", "--constraint", held)
    for name in ("tensorflow", "numpy", "protobuf"):
        assert resolved[name]["version"] == colab[name]
    assert int(resolved["keras"]["version"].split(".")[1]) >= 11  # the CVE fix

    site = tmp_path / "colab-site"  # Colab's packages as pip sees installed ones
    for name, version in colab.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        meta = resolved.get(name) if name not in MAY_UPGRADE else None
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        if meta is not None and meta["version"] == version:
            lines += [f"Requires-Dist: {r}" for r in meta.get("requires_dist", [])]
            lines += [f"Provides-Extra: {e}" for e in meta.get("provides_extra", [])]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "INSTALLER").write_text("pip\n")
    plain = _dry_run(python, tmp_path, "plain", env_path=site)
    replaced = {n: (colab[n], m["version"]) for n, m in plain.items() if n in colab}
    assert set(replaced) <= MAY_UPGRADE, f"Colab packages pip would replace: {replaced}"
    for name in KEPT:
        assert name not in plain
    assert "skullstrip-lib" in plain and "tf2onnx" in plain  # the extra itself is installed
