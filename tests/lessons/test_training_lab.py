"""Tests of skullstrip_lib.lessons.training_lab: toy losses, sweeps, run folders."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from skullstrip_lib.errors import SkullstripError
from skullstrip_lib.lessons.training_lab import (
    adam_first_step,
    compare_losses,
    describe_run,
    learning_rate_sweep,
    score_on_grid,
    toy_ball,
    toy_volumes,
)


def test_compare_losses_on_known_values():

    ball = toy_ball((32, 32, 32), 0.1)
    assert abs(ball.mean() - 0.1) < 0.01
    table = compare_losses(ball, {"none": np.zeros(ball.shape), "perfect": ball * 1.0,
                                  "half": np.where(ball, 0.5, 0.0)})
    none, perfect = table.loc["none"], table.loc["perfect"]
    assert none["accuracy"] == pytest.approx(1 - ball.mean())  # high accuracy, no brain found
    assert none["dice"] == 0.0 and none["dice_loss"] == pytest.approx(1.0, abs=1e-3)
    assert none["bce"] == pytest.approx(ball.mean() * -np.log(1e-7), rel=1e-3)
    assert perfect["dice"] == 1.0 and perfect["accuracy"] == 1.0
    assert perfect[["bce", "focal", "dice_loss"]].max() < 1e-5
    # p = 0.5 on brain: BCE log 2 there; focal 0.25 * 0.5**2 * log 2 there; soft Dice 2/3.
    half = table.loc["half"]
    f = ball.mean()
    assert half["bce"] == pytest.approx(f * np.log(2), rel=1e-3)
    assert half["focal"] == pytest.approx(f * 0.25 * 0.25 * np.log(2), rel=1e-3)
    n = ball.sum()
    assert half["dice_loss"] == pytest.approx(1 - (n + 1) / (1.5 * n + 1), rel=1e-4)
    with pytest.raises(ValueError, match="shape"):
        compare_losses(ball, {"bad": np.zeros(3)})


def test_toy_volumes():

    x, y = toy_volumes(3, 16, seed=1)
    assert x.shape == y.shape == (3, 16, 16, 16, 1) and x.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(toy_volumes(3, 16, seed=1)[0], x)
    assert np.std(x[y == 0]) == pytest.approx(0.3, rel=0.1)


def test_learning_rate_sweep_restarts_each_rate():

    df = learning_rate_sweep((1e-2, 1e-3, 1e-2), epochs=3, n=2)
    assert list(df.columns) == ["learning_rate", "epoch", "loss", "dice"]
    assert len(df) == 9 and list(df["epoch"][:3]) == [0, 1, 2]
    first, second, third = (df.iloc[i:i + 3] for i in (0, 3, 6))
    # The same rate from the same weights and a fresh Adam gives the same curve.
    np.testing.assert_allclose(first["loss"], third["loss"], rtol=1e-5)
    assert first["loss"].iloc[0] == pytest.approx(second["loss"].iloc[0], rel=1e-5)
    assert first["loss"].iloc[-1] != pytest.approx(second["loss"].iloc[-1], rel=1e-3)


def test_adam_first_step_moves_weights_by_the_rate():

    df = adam_first_step((1e-3, 1e-1))
    for rate, group in df.groupby("learning_rate"):
        # Adam's first step is lr * g / (|g| + eps): every weight moves by about lr.
        assert group["step_rms"].between(0.9 * rate, 1.0001 * rate).all()
        np.testing.assert_allclose(group["ratio"], group["step_rms"] / group["weight_rms"])
    assert set(df["layer"]) >= {"enc0_conv1", "mask"}


def test_describe_run(tmp_path):

    (tmp_path / "config.yaml").write_text("a: 1\n")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.onnx").write_bytes(b"x" * 2000)
    (tmp_path / "export" / "model.json").write_bytes(b"{}")
    (tmp_path / "notes.txt").write_text("mine")
    table = describe_run(tmp_path)
    assert table["entry"].tolist() == ["config.yaml", "export/", "notes.txt"]
    assert table["files"].tolist() == [1, 2, 1]
    assert table.loc[1, "kB"] == 2.0
    assert "predict" in table.loc[1, "what"] and table.loc[2, "what"] == ""
    with pytest.raises(SkullstripError, match="not a run folder"):
        describe_run(tmp_path / "nope")


def test_score_on_grid(tmp_path):
    from skullstrip_lib.data import write_tfrecords
    from skullstrip_lib.inference import BrainModel
    from skullstrip_lib.preprocess import PreprocessConfig

    rows = []
    for i, fraction in enumerate([0.05, 0.1]):
        mask = toy_ball((8, 8, 16), fraction).astype(np.uint8)
        for kind, array in (("t1w", mask * 2.0 - 1.0), ("brainmask", mask)):
            nib.save(nib.Nifti1Image(array.astype(np.float32), np.eye(4)),
                     tmp_path / f"s{i}_{kind}.nii.gz")
        rows.append({"subject": f"s{i}", "t1w": str(tmp_path / f"s{i}_t1w.nii.gz"),
                     "brainmask": str(tmp_path / f"s{i}_brainmask.nii.gz"), "split": "val"})
    write_tfrecords(pd.DataFrame(rows), tmp_path / "tf", progress=False)
    config = PreprocessConfig(shape=(8, 8, 16))
    models = {"perfect": BrainModel("p", config, lambda b: (b > 0).astype(np.float32)),
              "empty": BrainModel("e", config, lambda b: np.zeros_like(b))}
    scores = score_on_grid(models, tmp_path / "tf", "val")
    assert scores.index.tolist() == ["s0", "s1"]
    assert scores["perfect"].tolist() == [1.0, 1.0] and scores["empty"].tolist() == [0.0, 0.0]
    wrong = {"w": BrainModel("w", PreprocessConfig(shape=(8, 8, 8)), lambda b: b)}
    with pytest.raises(SkullstripError, match="expects a"):
        score_on_grid(wrong, tmp_path / "tf")
