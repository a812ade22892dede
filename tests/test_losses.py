"""Tests of skullstrip_lib.losses: soft losses and thresholded volumetric metrics."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from skullstrip_lib import losses, metrics
from skullstrip_lib.errors import InvalidArgumentError
from skullstrip_lib.losses import (
    DiceScore,
    IoUScore,
    dice_bce_loss,
    get_loss,
    soft_dice_loss,
)


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _cube(shape=(2, 8, 8, 8, 1), lo=0, hi=4) -> np.ndarray:
    m = np.zeros(shape, np.float32)
    m[:, lo:hi] = 1.0
    return m


def test_identical_masks_score_perfectly():
    t = _cube()
    np.testing.assert_allclose(_np(soft_dice_loss(t, t)), 0.0, atol=1e-6)
    assert _np(soft_dice_loss(t, t)).shape == (2,)
    for metric in (DiceScore(), IoUScore()):
        metric.update_state(t, t)
        assert float(metric.result()) == pytest.approx(1.0)


def test_disjoint_masks_score_zero():
    a, b = _cube(lo=0, hi=4), _cube(lo=4, hi=8)
    n = 2 * 4 * 8 * 8  # voxels in a plus voxels in b
    np.testing.assert_allclose(_np(soft_dice_loss(a, b)), 1 - 1 / (n + 1), rtol=1e-6)
    np.testing.assert_allclose(_np(soft_dice_loss(a, b, smooth=0.0)), 1.0, atol=1e-6)
    for metric in (DiceScore(), IoUScore()):
        metric.update_state(a, b)
        assert float(metric.result()) == 0.0


def test_half_overlap_known_values():
    # a covers rows 0-3, b rows 2-5: intersection 2 rows of 4, Dice 0.5, IoU 1/3.
    a, b = _cube(lo=0, hi=4), _cube(lo=2, hi=6)
    np.testing.assert_allclose(_np(soft_dice_loss(a, b, smooth=0.0)), 0.5, rtol=1e-6)
    inter, total = 2 * 64, 2 * 4 * 64
    np.testing.assert_allclose(_np(soft_dice_loss(a, b)), 1 - (2 * inter + 1) / (total + 1),
                               rtol=1e-6)
    dice, iou = DiceScore(), IoUScore()
    dice.update_state(a, b)
    iou.update_state(a, b)
    assert float(dice.result()) == pytest.approx(0.5)
    assert float(iou.result()) == pytest.approx(1 / 3)


def test_soft_dice_is_per_sample_not_pooled():
    # A perfect volume and a disjoint one: per-sample losses 0 and ~1.
    t = np.concatenate([_cube((1, 8, 8, 8, 1)), _cube((1, 8, 8, 8, 1), 0, 4)])
    p = np.concatenate([_cube((1, 8, 8, 8, 1)), _cube((1, 8, 8, 8, 1), 4, 8)])
    loss = _np(soft_dice_loss(t, p, smooth=0.0))
    np.testing.assert_allclose(loss, [0.0, 1.0], atol=1e-6)


def test_dice_bce_adds_mean_cross_entropy():
    rng = np.random.default_rng(0)
    t = (rng.random((2, 6, 6, 6, 1)) > 0.5).astype(np.float32)
    p = rng.uniform(0.05, 0.95, t.shape).astype(np.float32)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=(1, 2, 3, 4))
    expected = _np(soft_dice_loss(t, p)) + 0.5 * bce
    np.testing.assert_allclose(_np(dice_bce_loss(t, p, bce_weight=0.5)), expected, rtol=1e-5)
    assert _np(dice_bce_loss(t, t)).max() < 1e-5  # identical masks: ~0 (BCE clipped)


def test_metrics_match_numpy_reference_and_accumulate():
    rng = np.random.default_rng(1)
    t = rng.random((5, 6, 7, 8, 1)) > 0.6
    p = rng.random(t.shape).astype(np.float32)
    t[4], p[4] = False, 0.1  # empty vs empty: 1 by convention
    ref_dice = [metrics.dice(p[i] > 0.5, t[i]) for i in range(5)]
    ref_iou = [metrics.iou(p[i] > 0.5, t[i]) for i in range(5)]
    assert ref_dice[4] == 1.0
    for metric, ref in ((DiceScore(), ref_dice), (IoUScore(), ref_iou)):
        metric.update_state(t[:2].astype(np.float32), p[:2])  # two batches: mean over all 5
        metric.update_state(t[2:].astype(np.float32), p[2:])
        assert float(metric.result()) == pytest.approx(np.mean(ref), abs=1e-6)
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_metric_threshold_and_names():
    t = _cube()
    p = t * 0.6
    assert DiceScore().name == "dice" and IoUScore().name == "iou"
    high = DiceScore(threshold=0.7)
    high.update_state(t, p)
    assert float(high.result()) == 0.0  # nothing above 0.7: predicted empty
    assert DiceScore.from_config(high.get_config()).threshold == 0.7
    with pytest.raises(InvalidArgumentError, match=r"^threshold must be a number in \[0, 1\], "
                                                   "got 1.5$"):
        DiceScore(threshold=1.5)


def test_float16_predictions_computed_in_float32():
    rng = np.random.default_rng(2)
    t = (rng.random((2, 8, 8, 8, 1)) > 0.5).astype(np.float32)
    p32 = rng.random(t.shape).astype(np.float32)
    p16 = p32.astype(np.float16)
    for fn in (soft_dice_loss, dice_bce_loss):
        out = fn(t, p16)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        np.testing.assert_allclose(_np(out), _np(fn(t, p32)), rtol=1e-3)
    metric = DiceScore()
    metric.update_state(t, p16)
    expected = np.mean([metrics.dice(p16[i] > 0.5, t[i] > 0.5) for i in range(2)])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)


def test_get_loss():
    assert get_loss("dice") is soft_dice_loss
    assert get_loss("dice_bce") is dice_bce_loss
    with pytest.raises(InvalidArgumentError,
                       match="^loss must be one of 'dice' or 'dice_bce', got 'focal'$"):
        get_loss("focal")
    with pytest.raises(InvalidArgumentError, match="^loss must be one of .*, got None$"):
        get_loss(None)


def test_compiled_model_saves_and_loads(tmp_path):
    inputs = keras.Input((4, 4, 4, 1))
    outputs = keras.layers.Conv3D(1, 1, activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=losses.dice_bce_loss,
                  metrics=[DiceScore(), IoUScore(threshold=0.4)])
    x = np.random.default_rng(3).random((2, 4, 4, 4, 1)).astype(np.float32)
    y = (x > 0.5).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode: registered objects only
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert set(after) == {"loss", "dice", "iou"}
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-6)
