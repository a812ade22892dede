"""Native-space inference: outputs on exactly the input grid, the shipped model, bad models."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import needs_default, write_head

from skullstrip_lib import inference
from skullstrip_lib.errors import (
    ImplausibleMaskError,
    InputWarning,
    InvalidInputError,
    MissingFileError,
    SkullstripError,
)
from skullstrip_lib.metrics import dice
from skullstrip_lib.preprocess import PreprocessConfig


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


def test_a_garbage_keras_model_is_named_as_such(tmp_path):
    # Issue 18: Keras calls a .keras file it cannot open "File not found"; the file is there.
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"\x00garbage" * 100)
    (folder / "model.json").write_text(json.dumps(
        {"preprocess": {"shape": [24, 32, 40], "spacing": 6.0}}))
    problem = ("model.keras: not a Keras model file (a .keras file is a zip archive; this is "
               "not one: damaged, or another kind of file)")
    for where in (folder, folder / "model.keras"):
        with pytest.raises(InvalidInputError, match=rf"^{folder}/{re.escape(problem)}$"):
            inference.load_model(where)
    if importlib.util.find_spec("tensorflow") is None:
        return  # the command line needs the [train] extra for a .keras model
    scan, _, _ = write_head(tmp_path, "scan", seed=1, shape=(48, 48, 40),
                            voxel_size=(4.0, 4.0, 4.0))
    res = subprocess.run([sys.executable, "-m", "skullstrip_lib", "predict", str(scan),
                          "-o", str(tmp_path / "out"), "--model", str(folder / "model.keras")],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [f"skullstrip predict: error: {folder}/{problem}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="needs the [train] extra")
def test_a_keras_model_with_code_in_it_is_refused_not_run(tmp_path):
    # Keras' safe mode: a Lambda layer's Python code in a .keras file is never deserialised.
    import keras

    folder = tmp_path / "model"
    folder.mkdir()
    ran = tmp_path / "RAN"
    marker = str(ran)  # what the layer's code does when run: make this file
    inputs = keras.Input((8, 8, 8, 1))
    outputs = keras.layers.Lambda(lambda x: x * 0 + float(open(marker, "a").close() is None))(
        inputs)
    keras.Model(inputs, outputs).save(folder / "model.keras")
    ran.unlink()  # tracing the layer ran it once, here
    (folder / "model.json").write_text(json.dumps(
        {"preprocess": {"shape": [8, 8, 8], "spacing": 24.0}}))
    with pytest.raises(InvalidInputError, match=rf"^{folder}/model.keras: not a Keras model "
                                                r"\(.*Lambda"):
        inference.load_model(folder)
    assert not ran.exists()


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
    p_onnx = inference.predict_mask(scan, onnx_model, return_prob=True).probability
    p_keras = inference.predict_mask(scan, keras_model, return_prob=True).probability
    np.testing.assert_allclose(p_onnx, p_keras, atol=1e-3)
    m_onnx = inference.predict_mask(scan, onnx_model)
    m_keras = inference.predict_mask(scan, keras_model)
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




# --------------------------------------------------------------------------- issue 18
# Hostile and careless inputs to predict: outputs never over inputs, all or none written,
# a network or model.json that cannot be trusted refused, a likely failure flagged.
SMALL = {"shape": (128, 128, 100), "voxel_size": (2.0, 2.0, 2.0)}


def listing(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, hidden ones included, relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*"))


def never_run(batch):
    raise AssertionError("the network ran: the refusal came after the prediction")


def fake_model(run=never_run, *, flip=False):
    config = PreprocessConfig(shape=(48, 64, 80), spacing=4.0, n4="none")
    return inference.BrainModel("fake", config, run, flip_lr=flip, path=Path("fake.onnx"))


@pytest.fixture(scope="module")
def small_heads(tmp_path_factory):
    """Two small synthetic heads in one folder: (folder, [paths], [true masks])."""
    folder = tmp_path_factory.mktemp("heads")
    made = [write_head(folder, f"s{i}", seed=7, index=4 + i, **SMALL) for i in range(2)]
    return folder, [m[0] for m in made], [m[1] for m in made]


def copy_heads(small_heads, where: Path) -> list[Path]:
    import shutil

    where.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, where / p.name)) for p in small_heads[1]]


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_that_is_an_input_is_refused_whatever_the_flags(small_heads, tmp_path,
                                                                  overwrite):
    # The case: predict D/a.nii.gz D/a_brain.nii.gz -o D --overwrite.
    a, other = copy_heads(small_heads, tmp_path / "D")
    a_brain = other.rename(tmp_path / "D" / "a_brain.nii.gz")
    a = a.rename(tmp_path / "D" / "a.nii.gz")
    before = {p: p.read_bytes() for p in (a, a_brain)}
    with pytest.raises(InvalidInputError, match=r"a_brain.nii.gz: is also where the result "
                                                r"a_brain.nii.gz of .*a.nii.gz would be written"):
        inference.strip([a, a_brain], tmp_path / "D", fake_model(), overwrite=overwrite,
                        progress=False)
    assert {p: p.read_bytes() for p in (a, a_brain)} == before
    assert listing(tmp_path / "D") == ["a.nii.gz", "a_brain.nii.gz"]


def test_an_output_linked_to_an_input_is_refused(small_heads, tmp_path):
    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "s0_brain.nii.gz").symlink_to(scan)  # the same file under a new name
    before = scan.read_bytes()
    with pytest.raises(InvalidInputError, match="s0.nii.gz: is also where the result"):
        inference.strip(scan, tmp_path / "out", fake_model(), overwrite=True, progress=False)
    assert scan.read_bytes() == before


def test_two_scans_whose_outputs_collide_are_refused_before_any_work(small_heads, tmp_path):
    [one, _] = copy_heads(small_heads, tmp_path / "x")
    [two, _] = copy_heads(small_heads, tmp_path / "y")
    with pytest.raises(SkullstripError, match=r"s0_brainmask.nii.gz: the results of .*x/s0.nii.gz"
                                              r" and .*y/s0.nii.gz would both be written here"):
        inference.strip([one, two], tmp_path / "out", fake_model(), progress=False)
    assert not (tmp_path / "out").exists()


@needs_default
def test_a_folders_own_outputs_are_never_taken_for_scans(small_heads, tmp_path):
    # The case: predict D -o D twice, the second with --overwrite.
    copy_heads(small_heads, tmp_path / "D")
    first = inference.strip(tmp_path / "D", tmp_path / "D", progress=False)
    assert [Path(r["scan"]).name for r in first] == ["s0.nii.gz", "s1.nii.gz"]
    with pytest.warns(InputWarning, match=r"D: skipped 4 files named like results of "
                                          r"skullstrip, not scans \(s0_brain.nii.gz, "
                                          r"s0_brainmask.nii.gz, s1_brain.nii.gz, ...\)"):
        second = inference.strip(tmp_path / "D", tmp_path / "D", overwrite=True, progress=False)
    assert [Path(r["scan"]).name for r in second] == ["s0.nii.gz", "s1.nii.gz"]
    assert [r["volume_ml"] for r in second] == [r["volume_ml"] for r in first]
    assert listing(tmp_path / "D") == sorted(
        f"s{i}{end}" for i in range(2)
        for end in (".nii.gz", "_brain.nii.gz", "_brainmask.nii.gz", "_brainmask.json"))
    assert [inference.is_output_name(n) for n in ("T1_brain.mgz", "T1_brainstem.nii.gz")] == [
        True, False]


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_output_folder_is_refused_before_the_prediction(small_heads, tmp_path,
                                                                      where):
    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:  # not writable even by root
        out = Path("/proc/skullstrip-out")
    with pytest.raises(SkullstripError, match=rf"^{out}: cannot write results there \("):
        inference.strip(scan, out, fake_model(), progress=False)  # never_run: not predicted


@needs_default
def test_a_failed_write_names_the_users_file_and_leaves_nothing(small_heads, tmp_path):
    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    out = tmp_path / "out"
    (out / "s0_brain.nii.gz").mkdir(parents=True)  # the brain cannot be renamed into place
    with pytest.raises(SkullstripError, match=rf"^{out}/s0_brain.nii.gz: cannot write it "
                                              r"\(Is a directory\); nothing written"):
        inference.strip(scan, out, overwrite=True, progress=False)
    assert listing(out) == ["s0_brain.nii.gz"]  # no mask without its brain, no hidden file


@needs_default
def test_sigterm_mid_write_leaves_all_outputs_or_none_and_the_rerun_works(small_heads,
                                                                          tmp_path):
    import os
    import signal

    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)

    def terminated_while_drawing(image, mask, path, **kwargs):
        # The mask and the brain are written (under hidden names) by now.
        assert len([p for p in out.iterdir() if p.name.startswith(".")]) == 2
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt")

    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        inference.strip(scan, out, qc=terminated_while_drawing, progress=False)
    assert listing(out) == []
    assert signal.getsignal(signal.SIGTERM) is before
    [res] = inference.strip(scan, out, progress=False)  # not refused: nothing was left
    assert listing(out) == ["s0_brain.nii.gz", "s0_brainmask.json", "s0_brainmask.nii.gz"]
    assert res["volume_ml"] > 600


@needs_default
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_cli_sigterm_during_predict_writes_both_outputs_or_neither(small_heads, tmp_path,
                                                                   signame):
    import signal
    import time

    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "skullstrip_lib", "predict", str(scan), "-o", str(out),
               "--qc", "-q"]
    # A pytest-xdist worker ignores SIGINT, and a child would inherit that (Python then
    # installs no KeyboardInterrupt handler): start predict with the default disposition,
    # as from a terminal.
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and any(p.name.endswith(".part.nii.gz") for p in out.iterdir()):
            proc.send_signal(getattr(signal, signame))  # outputs being written
            break
        time.sleep(0.002)
    else:
        proc.kill()
        pytest.fail("predict finished (or hung) before it started writing")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "skullstrip predict: interrupted"
    assert listing(out) == []  # neither output, no hidden file
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert listing(out) == ["s0_brain.nii.gz", "s0_brainmask.json", "s0_brainmask.nii.gz",
                            "s0_qc.png"]


# Known answers of the bundled model on synthetic heads (benchmarks/bench_confidence.py:
# confidence 0.77-0.93 on heads it segments with Dice 0.93-0.98; negated heads 0.33-0.63).
@needs_default
@pytest.mark.parametrize("head", [{"index": 4}, {"index": 2, "contrast": "t2"},
                                  {"index": 3, "contrast": "mixed"}])
def test_normal_heads_are_read_with_confidence(tmp_path, head):
    path, truth, _ = write_head(tmp_path, "head", seed=7, **SMALL, **head)
    [res] = inference.strip(path, tmp_path / "out", progress=False)
    mask = np.asarray(nib.load(res["brainmask"]).dataobj) > 0
    assert dice(mask, truth) > 0.9
    assert res["contrast"] > 0.25 and res["flip_dice"] > 0.95
    assert 0.8 < res["confidence"] <= 1.0 and not res["low_confidence"]
    sidecar = json.loads(Path(res["sidecar"]).read_text())
    assert sidecar["Confidence"] == round(res["confidence"], 4)
    assert sidecar["LowConfidence"] is False and sidecar["Threshold"] == 0.45
    assert sidecar["BrainVolume_mL"] == round(res["volume_ml"], 1)
    assert sidecar["Model"] == "default" and sidecar["TestTimeAugmentation"] == "flip_lr"


@needs_default
def test_a_negated_head_is_refused_and_flagged_when_let_through(tmp_path, capsys):
    from skullstrip_lib.cli import main

    _, truth, head = write_head(tmp_path, "head", seed=7, index=4, **SMALL)
    data = np.asarray(head.t1w.dataobj).astype(np.float32)
    path = tmp_path / "negated.nii.gz"
    nib.save(nib.Nifti1Image(data.max() - data, head.t1w.affine), path)
    # This model's mask of it is too large for an adult brain: the volume check, which
    # runs first, refuses it; past that check, the head check names the problem.
    with pytest.raises(ImplausibleMaskError, match="above the adult range"):
        inference.strip(path, tmp_path / "out", progress=False)
    unreadable = (r"negated.nii.gz: does not look like a head the model can read: the brain "
                  r"is not brighter than the air around the head \(contrast -?0\.0\d")
    with pytest.raises(InvalidInputError, match=unreadable):
        inference.strip(path, tmp_path / "out", progress=False, check_volume=False)
    assert listing(tmp_path / "out") == []
    # Let through, it is written and flagged: the network is unsure and disagrees with itself.
    [res] = inference.strip(path, tmp_path / "out", progress=False, check_head=False,
                            check_volume=False)
    mask = np.asarray(nib.load(res["brainmask"]).dataobj) > 0
    assert dice(mask, truth) < 0.1  # a failure indeed
    assert res["low_confidence"] and res["confidence"] < 0.55 and res["flip_dice"] < 0.92
    assert json.loads(Path(res["sidecar"]).read_text())["LowConfidence"] is True
    # The command line says so: an error, then a warning when let through.
    assert main(["predict", str(path), "-o", str(tmp_path / "cli"), "-q",
                 "--no-volume-check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"skullstrip predict: error: {path}: does not")
    assert main(["predict", str(path), "-o", str(tmp_path / "cli"), "-q", "--no-head-check",
                 "--no-volume-check"]) == 0
    captured = capsys.readouterr()
    assert f"confidence {res['confidence']:.2f}" in captured.out
    assert captured.err.strip() == (f"skullstrip predict: warning: {path}: low confidence "
                                    f"{res['confidence']:.2f} (below 0.7): the mask is likely "
                                    "wrong, check it")


def test_assess_known_answers():
    grid = (20, 20, 20)
    sure = np.zeros(grid, np.float32)
    sure[5:15, 5:15, 5:15] = 1.0  # 1000 voxels, no doubt
    scan_data = np.zeros(grid, np.float32)
    scan_data[5:15, 5:15, 5:15] = 100.0  # the "brain" is the bright part

    class FakeScan:
        data = scan_data

    def judged(*looks):
        stack = np.stack(looks)
        p = stack.mean(axis=0)
        return inference.assess(FakeScan(), inference.Prediction(p >= 0.5, p, stack, None), 0.5)

    assert judged(sure, sure) == {"contrast": 1.0, "certainty": 1.0, "flip_dice": 1.0,
                                  "confidence": 1.0, "low_confidence": False}
    shifted = np.roll(sure, 2, axis=0)  # 800 of 1000 voxels shared: Dice 0.8
    res = judged(sure, shifted)
    assert res["flip_dice"] == pytest.approx(0.8)
    # The mean is 0.5 on the 400 voxels only one look has: uncertain, and in the mask
    # (p >= 0.5), which is their union of 1200 voxels: certainty 1 - 400/1200.
    assert res["certainty"] == pytest.approx(2 / 3) and res["confidence"] == pytest.approx(2 / 3)
    assert res["low_confidence"]
    unsure = np.where(sure > 0, 0.6, 0.0).astype(np.float32)  # one look, all doubtful
    res = judged(unsure)
    assert res["flip_dice"] is None and res["certainty"] == 0.0 and res["low_confidence"]


@pytest.mark.parametrize(("output", "problem"), [
    (np.nan, "the network's output holds 3840 non-finite values"),
    (np.inf, "the network's output holds 3840 non-finite values"),
    (1.5, r"the network's output spans 0 to 1.5, outside \[0, 1\]"),
    (-0.2, r"the network's output spans -0.2 to 0, outside \[0, 1\]"),
    ("shape", r"the network returned an array of shape \(1, 48, 64, 80\) for an input of "
              r"shape \(1, 48, 64, 80, 1\)"),
])
def test_a_network_output_that_is_not_probabilities_is_refused(small_heads, tmp_path, output,
                                                               problem):
    def run(batch):
        if output == "shape":
            return np.zeros(batch.shape[:-1], np.float32)
        out = np.zeros_like(batch)
        out[0, :16, :16, :15] = output  # 3840 voxels
        return out

    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    with pytest.raises(InvalidInputError, match=rf"^fake.onnx: {problem}"):
        inference.strip(scan, tmp_path / "out", fake_model(run), progress=False,
                        check_volume=False, check_head=False)
    assert listing(tmp_path / "out") == []


def write_onnx(path: Path, shape, op: str = "Identity") -> Path:
    """A tiny ONNX network on a grid: Identity (z-scores: not probabilities) or NaN times x."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("t1w", TensorProto.FLOAT, ["N", *shape, 1])
    y = helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", *shape, 1])
    if op == "Identity":
        nodes, inits = [helper.make_node("Identity", ["t1w"], ["mask"])], []
    else:
        nodes = [helper.make_node("Mul", ["t1w", "nan"], ["mask"])]
        inits = [helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])]
    graph = helper.make_graph(nodes, "fake", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def model_folder(where: Path, mutate=None, onnx_shape=(48, 64, 80), op=None) -> Path:
    """A model folder: the bundled model.onnx (or a tiny fake), its model.json mutated."""
    import shutil

    where.mkdir(parents=True)
    bundled = inference.bundled_models()["default"]
    if op is None:
        shutil.copy(bundled / "model.onnx", where / "model.onnx")
    else:
        write_onnx(where / "model.onnx", onnx_shape, op)
    meta = json.loads((bundled / "model.json").read_text())
    meta = mutate(meta) if mutate else meta
    (where / "model.json").write_text(json.dumps(meta))
    return where


def setting(path: str, value):
    def mutate(meta):
        *parents, key = path.split(".")
        node = meta
        for p in parents:
            node = node[p]
        node[key] = value
        return meta
    return mutate


@needs_default
@pytest.mark.parametrize(("mutate", "problem"), [
    (setting("threshold", None), r"'threshold' must be a number between 0 and 1 \(exclusive\), "
                                 "got None"),
    (setting("threshold", "0.5"), "'threshold' must be a number .* got '0.5'"),
    (setting("threshold", 1.5), "'threshold' must be a number .* got 1.5"),
    (setting("threshold", 0), "'threshold' must be a number .* got 0"),
    (setting("threshold", True), "'threshold' must be a number .* got True"),
    (setting("tta", "mirror"), "unknown test-time augmentation 'mirror'"),
    (setting("tta", ["flip_lr"]), r"unknown test-time augmentation \['flip_lr'\]"),
    (setting("preprocess.shape", [24, 32, 40]), r"its grid 24x32x40 \('preprocess.shape'\) "
                                                r"differs from the input of model.onnx "
                                                r"\(48x64x80, 5 axes\)"),
    (setting("preprocess.shape", [48, 64]), "'preprocess.shape' must be 3 positive whole"),
    (setting("preprocess.shape", [48, 0, 80]), "'preprocess.shape' must be 3 positive whole"),
    (setting("preprocess.spacing", 0), "'preprocess.spacing' must be a voxel size in mm"),
    (setting("preprocess.spacing", None), "'preprocess.spacing' must be a voxel size in mm"),
    (setting("preprocess.clip_percentiles", [99.5, 0.5]),
     r"'preprocess.clip_percentiles' must be two percentiles 0 <= low < high <= 100"),
    (setting("preprocess.normalization", "magic"), "model description lacks valid 'preprocess' "
                                                   r"\(normalization must be one of"),
    (setting("preprocess", None), "model description lacks valid 'preprocess'"),
    (lambda meta: [meta], r"not a model description \(a JSON object is expected\)"),
])
def test_bad_model_json_values_name_model_json(tmp_path, mutate, problem):
    folder = model_folder(tmp_path / "model", mutate)
    with pytest.raises(InvalidInputError, match=rf"^{folder}/model.json: {problem}"):
        inference.load_model(folder)


@needs_default
@pytest.mark.parametrize(("case", "problem"), [
    ("threshold-null", "model.json: 'threshold' must be a number"),
    ("grid", "model.json: its grid 24x32x40"),
    ("identity", "model.onnx: the network's output spans"),
    ("nan", "model.onnx: the network's output holds"),
])
def test_cli_model_problems_name_the_model_in_one_line(small_heads, tmp_path, case, problem):
    kwargs = {"threshold-null": {"mutate": setting("threshold", None)},
              "grid": {"mutate": setting("preprocess.shape", [24, 32, 40])},
              "identity": {"op": "Identity"}, "nan": {"op": "Mul"}}[case]
    folder = model_folder(tmp_path / "model", **kwargs)
    [scan, _] = copy_heads(small_heads, tmp_path / "in")
    before = scan.read_bytes()
    res = subprocess.run([sys.executable, "-m", "skullstrip_lib", "predict", str(scan), "-o",
                          str(tmp_path / "out"), "--model", str(folder), "-q",
                          "--no-volume-check"], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().startswith(f"skullstrip predict: error: {folder}/{problem}")
    assert len(res.stderr.strip().splitlines()) == 1
    assert scan.read_bytes() == before and listing(tmp_path / "out") == []


# --------------------------------------------------------------------------- BIDS
@pytest.fixture(scope="module")
def bids_raw(tmp_path_factory, small_heads):
    """A raw BIDS dataset: sub-01 (no session) and sub-02 (session 1, run 1)."""
    import shutil

    root = tmp_path_factory.mktemp("bids") / "raw"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-02" / "ses-1" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "test", "BIDSVersion": "1.9.0"}))
    a, b = small_heads[1]
    shutil.copy(a, root / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text("{}")  # sidecars are no scans
    shutil.copy(b, root / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_run-1_T1w.nii.gz")
    return root


@needs_default
def test_a_bids_dataset_gives_a_bids_derivatives_dataset(bids_raw, small_heads, tmp_path):
    from skullstrip_lib import bids

    raw_before = {p: p.read_bytes() for p in bids_raw.rglob("*") if p.is_file()}
    out = tmp_path / "derivatives" / "skullstrip"
    results = inference.strip(bids_raw, out, progress=False, qc=None)
    assert listing(out) == [
        "dataset_description.json",
        "sub-01", "sub-01/anat",
        "sub-01/anat/sub-01_desc-brain_T1w.nii.gz",
        "sub-01/anat/sub-01_desc-brain_mask.json",
        "sub-01/anat/sub-01_desc-brain_mask.nii.gz",
        "sub-02", "sub-02/ses-1", "sub-02/ses-1/anat",
        "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-brain_T1w.nii.gz",
        "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-brain_mask.json",
        "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-brain_mask.nii.gz",
    ]
    for name in listing(out):
        if name.endswith(".nii.gz"):
            assert bids.is_valid_derivative(name), name
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "skullstrip"
    assert description["BIDSVersion"] == bids.bids_version()
    for res, truth in zip(results, small_heads[2], strict=True):
        mask = np.asarray(nib.load(res["brainmask"]).dataobj) > 0
        assert dice(mask, truth) > 0.9
        sidecar = json.loads(Path(res["sidecar"]).read_text())
        assert sidecar["Type"] == "Brain" and sidecar["Threshold"] == 0.45
        assert sidecar["Model"] == "default" and sidecar["LowConfidence"] is False
        assert sidecar["Confidence"] == round(res["confidence"], 4) > 0.8
        assert sidecar["BrainVolume_mL"] == round(res["volume_ml"], 1) > 600
    assert {p: p.read_bytes() for p in bids_raw.rglob("*") if p.is_file()} == raw_before
    with pytest.raises(SkullstripError, match="sub-01_desc-brain_mask.nii.gz: already exists"):
        inference.strip(bids_raw, out, progress=False)
    assert len(inference.strip(bids_raw, out, progress=False, overwrite=True)) == 2


@pytest.mark.parametrize("inside", [".", "sub-01", "derivatives"])
def test_bids_results_never_go_among_the_raw_files(bids_raw, inside):
    out = bids_raw / inside
    with pytest.raises(SkullstripError, match=rf"^{out}: inside the input BIDS dataset "
                                              rf"{bids_raw}: results go in a derivatives "
                                              rf"dataset, e.g. {bids_raw}/derivatives/skullstrip"):
        inference.strip(bids_raw, out, fake_model(), progress=False)
    assert not (bids_raw / "derivatives").exists()


def test_bids_output_folder_holding_another_dataset_is_refused(bids_raw, tmp_path):
    (tmp_path / "dataset_description.json").write_text(json.dumps({"Name": "mine"}))
    with pytest.raises(SkullstripError, match="dataset_description.json: another dataset is "
                                              "already here"):
        inference.strip(bids_raw, tmp_path, fake_model(), progress=False)


def test_a_bids_dataset_cannot_be_mixed_with_other_scans(bids_raw, small_heads, tmp_path):
    with pytest.raises(SkullstripError, match=rf"^{bids_raw}: a BIDS dataset cannot be mixed "
                                              "with other scans"):
        inference.strip([bids_raw, small_heads[1][0]], tmp_path / "out", fake_model(),
                        progress=False)


@pytest.mark.parametrize("case", ["output-is-input", "collision", "unwritable", "bids-inside",
                                  "bids-mixed"])
def test_cli_refusals_before_any_work_are_one_line(small_heads, bids_raw, tmp_path, capsys,
                                                   case):
    from skullstrip_lib.cli import main

    a, b = copy_heads(small_heads, tmp_path / "D")
    (tmp_path / "file").write_text("x")
    args, named = {
        "output-is-input": ([str(a), str(b.rename(tmp_path / "D" / "s0_brain.nii.gz")), "-o",
                             str(tmp_path / "D"), "--overwrite"], tmp_path / "D/s0_brain.nii.gz"),
        "collision": ([str(a), str(copy_heads(small_heads, tmp_path / "E")[0]), "-o",
                       str(tmp_path / "out")], tmp_path / "out/s0_brainmask.nii.gz"),
        "unwritable": ([str(a), "-o", str(tmp_path / "file" / "out")], tmp_path / "file/out"),
        "bids-inside": ([str(bids_raw), "-o", str(bids_raw / "sub-01")], bids_raw / "sub-01"),
        "bids-mixed": ([str(bids_raw), str(a), "-o", str(tmp_path / "out")], bids_raw),
    }[case]
    files = {p: p.read_bytes() for p in (*tmp_path.rglob("*"), *bids_raw.rglob("*"))
             if p.is_file()}
    assert main(["predict", *args, "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"skullstrip predict: error: {named}: ")
    assert {p: p.read_bytes() for p in (*tmp_path.rglob("*"), *bids_raw.rglob("*"))
            if p.is_file()} == files
    assert not (tmp_path / "out").exists()


def test_float32_rounding_of_a_sigmoid_is_not_a_fault():
    # The bundled network gives 1.0000001 on some heads: rounding, clipped into [0, 1].
    model = fake_model(lambda batch: np.full_like(batch, np.float32(1.0000001)))
    looks = model.looks(np.zeros((48, 64, 80), np.float32))
    assert looks.max() == 1.0
    with pytest.raises(InvalidInputError, match=r"output spans 1.001 to 1.001, outside \[0, 1\]"):
        fake_model(lambda batch: np.full_like(batch, 1.001)).looks(np.zeros((48, 64, 80)))


def test_looks_accepts_a_read_only_network_output():
    # A Keras model called directly returns a tensor whose numpy view is read-only; the
    # mirrored look is written back into the array, and the clip works in place.
    from skullstrip_lib.inference import BrainModel
    from skullstrip_lib.preprocess import PreprocessConfig

    def run(batch):
        out = np.where(np.arange(batch.shape[1])[None, :, None, None, None] < 3, 0.9, 0.1)
        out = np.broadcast_to(out, batch.shape).astype(np.float32)
        out.flags.writeable = False
        return out

    model = BrainModel("ro", PreprocessConfig(shape=(8, 8, 8), spacing=4.0, n4="none"),
                       run=run, flip_lr=True)
    looks = model.looks(np.zeros((8, 8, 8), np.float32))
    assert looks.shape == (2, 8, 8, 8)
    assert looks[0, :3].min() == pytest.approx(0.9) and looks[1, -3:].min() == pytest.approx(0.9)
