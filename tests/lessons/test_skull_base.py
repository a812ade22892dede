"""Tests of skullstrip_lib.lessons.skull_base: the drawing, the conditions, Dice by height."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skullstrip_lib.lessons import skull_base
from skullstrip_lib.synth import HeadSettings


def test_conditions_are_head_settings_the_generator_takes():
    assert next(iter(skull_base.SKULL_BASE_CONDITIONS)) == "uniform shell"
    bases = [HeadSettings.from_kwargs(**kw).anatomy.skull_base
             for kw in skull_base.SKULL_BASE_CONDITIONS.values()]
    assert bases == ["uniform", "realistic", "thin"]


def test_drawing_labels_what_a_real_skull_base_holds():
    ax = skull_base.draw_skull_base()
    text = " ".join(t.get_text() for t in ax.texts)
    for part in ("orbital roof", "middle fossa floor", "clivus", "pituitary", "tentorium",
                 "sinuses: air", "muscle and fat under the base", "mastoid"):
        assert part in text, part
    assert ax.get_aspect() == 1.0  # mm in both directions


def test_low_share_counts_false_positives_by_world_height():
    truth = np.zeros((4, 4, 9), bool)
    truth[1:3, 1:3, 3:9] = True  # z 3..8: the lowest third is z <= 3 + 5/3
    pred = truth.copy()
    pred[1:3, 1:3, 0:3] = True  # 12 wrong voxels below the brain
    pred[0, 1:3, 8] = True  # 2 wrong voxels at the top
    assert skull_base._low_share(pred, truth, np.eye(4)) == pytest.approx(12 / 14)
    flipped = np.diag([1.0, 1.0, -1.0, 1.0])  # the third axis points down: the same voxels
    assert skull_base._low_share(pred[:, :, ::-1], truth[:, :, ::-1], flipped) == pytest.approx(
        12 / 14)
    assert np.isnan(skull_base._low_share(truth, truth, np.eye(4)))


def test_height_scores_find_a_leak_below_the_brain(monkeypatch, tmp_path):
    # A stand-in network that adds a slab under the brain: the lowest third drops, the
    # middle stays perfect, and every false positive lies low.
    import nibabel as nib

    truth = np.zeros((32, 32, 30), np.uint8)
    truth[8:24, 8:24, 10:28] = 1
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(truth.astype(np.float32) * 100, affine), tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(truth, affine), tmp_path / "mask.nii.gz")
    leaky = truth.astype(bool).copy()
    leaky[8:24, 8:24, 4:10] = True
    monkeypatch.setattr(skull_base, "as_model", lambda m: m)
    monkeypatch.setattr(skull_base, "predict_mask", lambda scan, model: leaky)
    table = pd.DataFrame({"condition": ["leak"], "subject": ["S1"],
                          "t1w": [str(tmp_path / "t1.nii.gz")],
                          "brainmask": [str(tmp_path / "mask.nii.gz")]})
    scores = skull_base.height_scores("stand-in", table).iloc[0]
    # Lowest third: z 10..15 (6 slices of the brain) and the 6 leaked slices below.
    assert scores["dice lowest third"] == pytest.approx(2 * 6 / (6 + 12))
    assert scores["dice middle third"] == 1.0 and scores["dice top third"] == 1.0
    assert scores["false positives in lowest third"] == 1.0
