"""Training runs: the run folder, falling loss, overfitting one subject, resuming a killed run."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from skullstrip_lib.errors import SkullstripError
from skullstrip_lib.train import TrainConfig, export_run, resolve_config, train

TINY = {
    "synth": [{"n": 6, "shape": [64, 64, 48], "voxel_size": [4.0, 4.0, 4.0]}],
    "preprocess": {"shape": [24, 32, 40], "spacing": 6.0, "n4": "none",
                   "normalization": "zscore"},
    "base_filters": 4, "depth": 2, "batch_size": 2, "steps_per_epoch": 3,
    "learning_rate": 1e-2, "workers": 1,
}


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    # One cache for the whole module: the synthetic heads and TFRecords are reused.
    d = tmp_path_factory.getbasetemp() / "train_cache"
    monkeypatch.setenv("SKULLSTRIP_DATA", str(d))
    return d


def tiny(**overrides) -> TrainConfig:
    return TrainConfig.from_dict({"profile": "sample", **TINY, **overrides})


def test_profiles_resolve():
    sample, full = resolve_config("sample"), resolve_config("full", epochs=3)
    assert sample.preprocess["shape"] == [48, 64, 80]
    assert full.preprocess["shape"] == [96, 128, 160] and full.preprocess["spacing"] == 2.0
    assert full.base_filters == 16 and full.batch_size == 4 and full.epochs == 3
    with pytest.raises(SkullstripError, match="unknown profile"):
        resolve_config("huge")
    with pytest.raises(SkullstripError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "blue"})


def test_run_folder_and_falling_loss(tmp_path, data_dir):
    run = train(tiny(epochs=4), tmp_path / "run", progress=False)
    for name in ("config.yaml", "log.csv", "best.keras", "last.keras", "tensorboard",
                 "export/model.onnx", "export/model.json"):
        assert (run / name).exists(), name
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["preprocess"]["shape"] == [24, 32, 40] and config["seed"] == 0
    meta = json.loads((run / "export" / "model.json").read_text())
    assert meta["preprocess"]["spacing"] == 6.0 and meta["network"]["parameters"] > 0
    # A run folder is never reused by accident.
    with pytest.raises(SkullstripError, match="already exists"):
        train(tiny(), run, progress=False)


def test_same_seed_same_weights(tmp_path, data_dir):
    import keras

    a = train(tiny(epochs=1, steps_per_epoch=2), tmp_path / "a", progress=False)
    b = train(tiny(epochs=1, steps_per_epoch=2), tmp_path / "b", progress=False)
    wa = keras.saving.load_model(a / "last.keras", compile=False).get_weights()
    wb = keras.saving.load_model(b / "last.keras", compile=False).get_weights()
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_killed_run_resumes_from_its_last_epoch(tmp_path, data_dir):
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(tiny(epochs=4), run, progress=False, stop_after_epoch=2)
    assert list(pd.read_csv(run / "log.csv")["epoch"]) == [0, 1]
    assert not (run / "export").exists()
    train(TrainConfig(), run, resume=True, progress=False)  # config comes from the run
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]  # continued at epoch 2, nothing redone
    assert (run / "export" / "model.onnx").exists()
    with pytest.raises(SkullstripError, match="no run to resume"):
        train(tiny(), tmp_path / "never", resume=True, progress=False)


def test_overfits_one_synthetic_subject(tmp_path):
    """A small U-Net learns one preprocessed synthetic head to Dice >= 0.9."""
    import keras

    from skullstrip_lib import preprocess as pp
    from skullstrip_lib.losses import DiceScore, get_loss
    from skullstrip_lib.metrics import dice
    from skullstrip_lib.model import build_unet
    from skullstrip_lib.synth import make_head

    head = make_head(seed=9, shape=(64, 64, 48), voxel_size=(4.0, 4.0, 4.0))
    nib.save(head.t1w, tmp_path / "t1w.nii.gz")
    nib.save(head.brainmask, tmp_path / "mask.nii.gz")
    config = pp.PreprocessConfig(shape=(32, 40, 48), spacing=5.0, n4="none")
    res = pp.preprocess_subject("s", tmp_path / "t1w.nii.gz", tmp_path / "out",
                                tmp_path / "mask.nii.gz", config)
    x = np.asarray(nib.load(res["t1w"]).dataobj, np.float32)[None, ..., None]
    y = np.asarray(nib.load(res["brainmask"]).dataobj, np.float32)[None, ..., None]
    keras.utils.set_random_seed(0)
    model = build_unet((32, 40, 48, 1), base_filters=8, depth=3, dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), loss=get_loss("dice_bce"), metrics=[DiceScore()])
    history = model.fit(x, y, epochs=60, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert dice(model.predict(x, verbose=0)[0, ..., 0] > 0.5, y[0, ..., 0] > 0) >= 0.9


def test_export_refuses_to_overwrite(tmp_path, data_dir):
    run = train(tiny(epochs=1, steps_per_epoch=1), tmp_path / "r", progress=False)
    with pytest.raises(SkullstripError, match="already holds a model"):
        export_run(run, overwrite=False)


# --------------------------------------------------------------------------- teaching helpers
def test_compare_losses_on_known_values():
    from skullstrip_lib.train import compare_losses, toy_ball

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
    from skullstrip_lib.train import toy_volumes

    x, y = toy_volumes(3, 16, seed=1)
    assert x.shape == y.shape == (3, 16, 16, 16, 1) and x.dtype == np.float32
    assert set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(toy_volumes(3, 16, seed=1)[0], x)
    assert np.std(x[y == 0]) == pytest.approx(0.3, rel=0.1)


def test_learning_rate_sweep_restarts_each_rate():
    from skullstrip_lib.train import learning_rate_sweep

    df = learning_rate_sweep((1e-2, 1e-3, 1e-2), epochs=3, n=2)
    assert list(df.columns) == ["learning_rate", "epoch", "loss", "dice"]
    assert len(df) == 9 and list(df["epoch"][:3]) == [0, 1, 2]
    first, second, third = (df.iloc[i:i + 3] for i in (0, 3, 6))
    # The same rate from the same weights and a fresh Adam gives the same curve.
    np.testing.assert_allclose(first["loss"], third["loss"], rtol=1e-5)
    assert first["loss"].iloc[0] == pytest.approx(second["loss"].iloc[0], rel=1e-5)
    assert first["loss"].iloc[-1] != pytest.approx(second["loss"].iloc[-1], rel=1e-3)


def test_adam_first_step_moves_weights_by_the_rate():
    from skullstrip_lib.train import adam_first_step

    df = adam_first_step((1e-3, 1e-1))
    for rate, group in df.groupby("learning_rate"):
        # Adam's first step is lr * g / (|g| + eps): every weight moves by about lr.
        assert group["step_rms"].between(0.9 * rate, 1.0001 * rate).all()
        np.testing.assert_allclose(group["ratio"], group["step_rms"] / group["weight_rms"])
    assert set(df["layer"]) >= {"enc0_conv1", "mask"}


def test_describe_run(tmp_path):
    from skullstrip_lib.train import describe_run

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


def test_plot_history_marks_the_best_epoch():
    import matplotlib

    matplotlib.use("Agg")
    from skullstrip_lib.viz import plot_history

    log = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.0, 0.5, 0.4], "val_loss": [0.9, 0.6, 0.7],
                        "dice": [0.2, 0.6, 0.7], "val_dice": [0.3, 0.8, 0.75]})
    fig = plot_history(log)
    assert len(fig.axes) == 2
    lines = fig.axes[1].get_lines()
    assert list(lines[0].get_xdata()) == [1, 2, 3]  # epochs from 1
    rings = [ln for ln in lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "none"]
    assert [float(r.get_xdata()[0]) for r in rings] == [2.0, 2.0]  # best val Dice: epoch 2


def test_score_on_grid(tmp_path):
    from skullstrip_lib.data import write_tfrecords
    from skullstrip_lib.inference import BrainModel
    from skullstrip_lib.preprocess import PreprocessConfig
    from skullstrip_lib.train import score_on_grid, toy_ball

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
