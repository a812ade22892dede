"""Native-space inference: outputs on exactly the input grid, the shipped model, bad models."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from helpers import needs_default, write_head

from skullstrip_lib import inference
from skullstrip_lib.errors import InvalidInputError, MissingFileError, SkullstripError
from skullstrip_lib.metrics import dice


def test_postprocess_keeps_largest_component_and_fills_holes():
    m = np.zeros((30, 30, 30), bool)
    m[5:20, 5:20, 5:20] = True
    m[10:13, 10:13, 10:13] = False  # a hole
    m[25:28, 25:28, 25:28] = True  # a stray blob
    out = inference.postprocess_mask(m)
    expected = np.zeros_like(m)
    expected[5:20, 5:20, 5:20] = True
    np.testing.assert_array_equal(out, expected)
    assert not inference.postprocess_mask(np.zeros((4, 4, 4), bool)).any()


def test_scan_name():
    assert inference.scan_name("/a/sub-01_T1w.nii.gz") == "sub-01_T1w"
    assert inference.scan_name("b.nii") == "b"


def test_not_a_model(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a network")
    (tmp_path / "model.json").write_text(json.dumps(
        {"preprocess": {"shape": [24, 32, 40], "spacing": 6.0}}))
    with pytest.raises(InvalidInputError, match="model.onnx: not an ONNX model"):
        inference.load_model(tmp_path)
    with pytest.raises(InvalidInputError, match="model.onnx: not an ONNX model"):
        inference.load_model(fake)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="model.json: not valid JSON"):
        inference.load_model(tmp_path)
    (tmp_path / "model.json").unlink()
    with pytest.raises(MissingFileError, match="model.json is missing"):
        inference.load_model(tmp_path)
    with pytest.raises(MissingFileError, match="no such model file or folder"):
        inference.load_model("no-such-model")
    txt = tmp_path / "weights.h5"
    txt.write_text("x")
    (tmp_path / "weights.json").write_text(json.dumps(
        {"preprocess": {"shape": [24, 32, 40], "spacing": 6.0}}))
    with pytest.raises(InvalidInputError, match="expected a .onnx or .keras"):
        inference.load_model(txt)
    (tmp_path / "model.json").write_text(json.dumps(
        {"preprocess": {"shape": [24, 32, 40], "spacing": 6.0}}))
    scan, _, _ = write_head(tmp_path, "scan", seed=1, shape=(48, 48, 40),
                            voxel_size=(4.0, 4.0, 4.0))
    res = subprocess.run([sys.executable, "-m", "skullstrip_lib", "predict", str(scan),
                          "-o", str(tmp_path / "out"), "--model", str(fake)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "not an ONNX model" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny trained run (a few steps): enough to compare runtimes, not to segment well."""
    import os

    from skullstrip_lib.train import TrainConfig, train

    base = tmp_path_factory.mktemp("tiny_run")
    old = os.environ.get("SKULLSTRIP_DATA")
    os.environ["SKULLSTRIP_DATA"] = str(base / "data")
    try:
        config = TrainConfig.from_dict({
            "synth": [{"n": 5, "shape": [64, 64, 48], "voxel_size": [4.0, 4.0, 4.0]}],
            "preprocess": {"shape": [24, 32, 40], "spacing": 6.0, "n4": "none"},
            "base_filters": 4, "depth": 2, "epochs": 2, "steps_per_epoch": 3,
            "learning_rate": 1e-2, "workers": 1})
        return train(config, base / "run", progress=False)
    finally:
        if old is None:
            os.environ.pop("SKULLSTRIP_DATA")
        else:
            os.environ["SKULLSTRIP_DATA"] = old


def test_onnx_and_keras_give_the_same_mask(tiny_run, tmp_path):
    import shutil

    path, _, _ = write_head(tmp_path, "scan", seed=21, shape=(64, 64, 48),
                            voxel_size=(4.0, 4.0, 4.0))
    keras_file = tmp_path / "best.keras"
    shutil.copy(tiny_run / "best.keras", keras_file)
    shutil.copy(tiny_run / "export" / "model.json", tmp_path / "best.json")
    scan = inference.load_scan(path)
    onnx_model = inference.load_model(tiny_run / "export")
    keras_model = inference.load_model(keras_file)
    p_onnx = inference.predict_mask(scan, onnx_model)[1]
    p_keras = inference.predict_mask(scan, keras_model)[1]
    np.testing.assert_allclose(p_onnx, p_keras, atol=1e-3)
    m_onnx = inference.predict_mask(scan, onnx_model)[0]
    m_keras = inference.predict_mask(scan, keras_model)[0]
    assert np.mean(m_onnx != m_keras) < 1e-4


@needs_default
@pytest.mark.parametrize("geometry", [
    {"orientation": "LPS"},
    {"orientation": "PIR", "voxel_size": (1.3, 1.0, 1.1), "shape": (150, 250, 180)},
    {"oblique_deg": (10.0, 0.0, 15.0)},
    {"shape": (180, 200, 120), "center_mm": (0.0, -5.0, 20.0)},  # cropped field of view
])
def test_predict_writes_on_exactly_the_input_grid(tmp_path, geometry):
    kwargs = {"seed": 31, "index": 2, "shape": (192, 224, 160), "voxel_size": (1.2, 1.2, 1.2),
              **geometry}
    path, truth, _ = write_head(tmp_path, "odd", **kwargs)
    # Give the file distinct qform and sform codes: both must survive.
    img = nib.load(path)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=2)
    nib.save(img, path)
    [res] = inference.strip(path, tmp_path / "out", progress=False)
    for key, dtype in (("brainmask", np.uint8), ("brain", np.int16)):
        out = nib.load(res[key])
        assert out.shape == img.shape
        np.testing.assert_allclose(out.affine, img.affine, atol=1e-6)
        assert out.get_data_dtype() == dtype
        assert int(out.header["qform_code"]) == 1 and int(out.header["sform_code"]) == 2
        assert nib.aff2axcodes(out.affine) == nib.aff2axcodes(img.affine)
    mask = np.asarray(nib.load(res["brainmask"]).dataobj) > 0
    brain = np.asarray(nib.load(res["brain"]).dataobj)
    np.testing.assert_array_equal(brain[~mask], 0)
    np.testing.assert_array_equal(brain[mask], np.asarray(img.dataobj)[mask])
    assert dice(mask, truth) > 0.9


@needs_default
def test_cli_predict_synthetic_subject_dice(tmp_path):
    """The done criterion: synth 1 subject, predict with the shipped model, Dice >= 0.95."""
    py = [sys.executable, "-m", "skullstrip_lib"]
    subprocess.run([*py, "synth", str(tmp_path / "d"), "--subjects", "1", "-q"], check=True)
    subject = next((tmp_path / "d" / "NFBS_Dataset").iterdir()).name
    scan = tmp_path / "d" / "NFBS_Dataset" / subject / f"sub-{subject}_ses-NFB3_T1w.nii.gz"
    res = subprocess.run([*py, "predict", str(scan), "-o", str(tmp_path / "out"), "--qc", "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    name = inference.scan_name(scan)
    pred = np.asarray(nib.load(tmp_path / "out" / f"{name}_brainmask.nii.gz").dataobj) > 0
    ref_path = scan.parent / f"sub-{subject}_ses-NFB3_T1w_brainmask.nii.gz"
    assert dice(pred, np.asarray(nib.load(ref_path).dataobj) > 0) >= 0.95
    assert (tmp_path / "out" / f"{name}_qc.png").stat().st_size > 10_000
    # Outputs are not silently overwritten.
    res = subprocess.run([*py, "predict", str(scan), "-o", str(tmp_path / "out"), "-q"],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "already exists" in res.stderr


@needs_default
def test_folder_input_and_collisions(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(2):
        write_head(tmp_path / "in", f"s{i}", seed=40 + i, shape=(96, 112, 80),
                   voxel_size=(2.0, 2.0, 2.4))
    results = inference.strip(tmp_path / "in", tmp_path / "out", progress=False)
    assert [r["scan"].split("/")[-1] for r in results] == ["s0.nii.gz", "s1.nii.gz"]
    assert all(900 < r["volume_ml"] < 2000 for r in results)
    with pytest.raises(SkullstripError, match="already exists"):
        inference.strip(tmp_path / "in", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError,
                       match=r"empty: no scans in this folder \(no files ending in .nii.gz, .nii"):
        inference.strip(tmp_path / "empty", tmp_path / "out2", progress=False)


