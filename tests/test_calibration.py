"""Test-time flipping (inference.BrainModel) and threshold calibration (evaluate)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset
from skullstrip_lib.errors import InvalidInputError
from skullstrip_lib.evaluate import CALIBRATION_THRESHOLDS, calibrate_threshold
from skullstrip_lib.preprocess import PreprocessConfig


def _ramp_model(flip_lr: bool) -> inference.BrainModel:
    """A 'network' that weighs each voxel by its position along x: not mirror-symmetric."""
    ramp = np.linspace(0.0, 1.0, 8, dtype=np.float32)[None, :, None, None, None]
    return inference.BrainModel("ramp", PreprocessConfig(shape=(8, 8, 8), spacing=4.0),
                                run=lambda batch: batch * ramp, flip_lr=flip_lr)


def test_flip_averages_the_volume_and_its_mirror():
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 8), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, 8, dtype=np.float32)[:, None, None]
    np.testing.assert_allclose(_ramp_model(False).probabilities(image), image * ramp)
    # Mirror, run, mirror back: the mirrored pass sees the ramp reversed.
    expected = 0.5 * (image * ramp + image * ramp[::-1])
    np.testing.assert_allclose(_ramp_model(True).probabilities(image), expected, rtol=1e-6)


def _model_copy(tmp_path, **meta_changes):
    folder = tmp_path / "model"
    shutil.copytree(inference.bundled_models()["default"], folder,
                    ignore=shutil.ignore_patterns("split.csv"))  # its synthetic heads
    meta = json.loads((folder / "model.json").read_text())
    meta.update(meta_changes)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_tta_is_read_from_the_model_description(tmp_path):
    assert inference.load_model(_model_copy(tmp_path, tta="flip_lr")).flip_lr
    shutil.rmtree(tmp_path / "model")
    assert not inference.load_model(_model_copy(tmp_path, tta="none")).flip_lr
    shutil.rmtree(tmp_path / "model")
    with pytest.raises(InvalidInputError, match="model.json.*unknown test-time augmentation"):
        inference.load_model(_model_copy(tmp_path, tta="rotate"))


def test_flipping_changes_little_on_a_symmetric_head(full_head):
    from skullstrip_lib.io import load_mask, load_scan
    from skullstrip_lib.metrics import dice

    scan = load_scan(full_head[0])
    plain = inference.load_model()
    plain.flip_lr = False
    flipped = inference.load_model()
    flipped.flip_lr = True
    a = inference.predict_mask(scan, plain)
    b = inference.predict_mask(scan, flipped)
    truth = load_mask(full_head[1], scan)
    assert dice(a, b) > 0.98  # a second look at the same head, not another answer
    assert dice(b, truth) > 0.9


def test_calibration_picks_the_best_threshold_and_records_it(small_dataset, tmp_path):
    index = index_dataset(small_dataset).assign(split="val")
    folder = _model_copy(tmp_path)
    threshold, table = calibrate_threshold(folder, index, write=True, progress=False)
    assert list(table["threshold"]) == list(CALIBRATION_THRESHOLDS)
    assert threshold == table.loc[table["dice_mean"].idxmax(), "threshold"]
    assert (table["dice_min"] <= table["dice_mean"] + 1e-12).all()
    meta = json.loads((folder / "model.json").read_text())
    assert meta["threshold"] == threshold
    assert meta["calibration"]["subjects"] == len(index)
    assert inference.load_model(folder).threshold == threshold
    # The chosen threshold is what predict_mask now uses: its Dice is the table's.
    from skullstrip_lib.evaluate import evaluate

    scores = evaluate(folder, index, split="val", progress=False)
    best = table.loc[table["threshold"] == threshold, "dice_mean"].item()
    assert scores["dice"].mean() == pytest.approx(best, abs=1e-9)


def test_calibration_refuses_thresholds_outside_0_1(small_dataset):
    index = index_dataset(small_dataset).assign(split="val")
    with pytest.raises(ValueError, match="thresholds"):
        calibrate_threshold("default", index, thresholds=(0.0, 0.5), progress=False)
