"""Training runs: the run folder, falling loss, overfitting one subject, resuming a killed run."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from skullstrip_lib.data import AugmentConfig
from skullstrip_lib.errors import SkullstripError
from skullstrip_lib.lessons.training_lab import interrupt_after
from skullstrip_lib.preprocess import PreprocessConfig
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
    assert sample.preprocess.shape == (48, 64, 80)
    assert full.preprocess.shape == (96, 128, 160) and full.preprocess.spacing == 2.0
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
        train(tiny(epochs=4), run, progress=False, callbacks=[interrupt_after(2)])
    assert list(pd.read_csv(run / "log.csv")["epoch"]) == [0, 1]
    assert not (run / "export").exists()
    train(TrainConfig(), run, resume=True, progress=False)  # config comes from the run
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]  # continued at epoch 2, nothing redone
    assert (run / "export" / "model.onnx").exists()
    with pytest.raises(SkullstripError, match="no run to resume"):
        train(tiny(), tmp_path / "never", resume=True, progress=False)


def test_training_leaves_no_global_state(tmp_path, data_dir):
    # Mixed precision (as on a GPU) is scoped to the run: Keras' global policy is restored
    # even when the fit fails, as float16 pooling does on a CPU.
    import keras

    with pytest.raises(Exception, match="MaxPool3D|half|Half|HALF"):
        train(tiny(epochs=1, steps_per_epoch=1, mixed_precision="on"), tmp_path / "mixed",
              progress=False)
    assert keras.mixed_precision.global_policy().name == "float32"
    train(tiny(epochs=1, steps_per_epoch=1), tmp_path / "plain", progress=False)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["mixed_precision"] is False
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_config_round_trips_through_yaml_with_typed_parts():
    config = resolve_config("default", epochs=3)
    assert isinstance(config.preprocess, PreprocessConfig)
    assert isinstance(config.augment, AugmentConfig)
    again = TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    off = TrainConfig.from_dict({**config.to_dict(), "augment": {"enabled": False}})
    assert off.augment is None and off.to_dict()["augment"] == {"enabled": False}
    with pytest.raises(SkullstripError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "red"})


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


