"""Training runs: the run folder, falling loss, overfitting one subject, resuming a killed run."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from skullstrip_lib import train as train_module
from skullstrip_lib.data import AugmentConfig
from skullstrip_lib.errors import DeviceError, InvalidArgumentError, SkullstripError
from skullstrip_lib.preprocess import PreprocessConfig
from skullstrip_lib.train import (
    MEMORY_MARGIN,
    TrainConfig,
    check_device,
    export_run,
    fit_batch_size,
    gpu_free_bytes,
    resolve_config,
    train,
)
from skullstrip_lib.train import devices as train_devices
from skullstrip_lib.train import fit as train_fit


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    # One cache for the whole module: the synthetic heads and TFRecords are reused.
    d = tmp_path_factory.getbasetemp() / "train_cache"
    monkeypatch.setenv("SKULLSTRIP_DATA", str(d))
    return d


def test_profiles_resolve():
    sample, full = resolve_config("sample"), resolve_config("full", epochs=3)
    assert sample.preprocess.shape == (48, 64, 80)
    assert full.preprocess.shape == (96, 128, 160) and full.preprocess.spacing == 2.0
    assert full.base_filters == 16 and full.batch_size == 4 and full.epochs == 3
    assert full.auto_batch and not sample.auto_batch  # the full profile sizes it to the GPU
    with pytest.raises(InvalidArgumentError, match="^profile must be one of 'sample', 'default' "
                                                   "or 'full', got 'huge'$"):
        resolve_config("huge")
    with pytest.raises(SkullstripError, match="unknown training settings: colour"):
        TrainConfig.from_dict({"colour": "blue"})


def test_run_folder_and_falling_loss(tmp_path, data_dir, tiny):
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
    # The split it trained on is stored with the run and its export, as the TFRecords hold it.
    from skullstrip_lib.data import read_manifest
    from skullstrip_lib.evaluate import training_split

    manifest = read_manifest(json.loads((run / "summary.json").read_text())["data"])
    stored = training_split(run / "export")
    for split, subjects in manifest["subjects"].items():
        assert sorted(stored.index[stored == split]) == sorted(subjects)
    assert (run / "split.csv").read_text() == (run / "export" / "split.csv").read_text()
    # A run folder is never reused by accident.
    with pytest.raises(SkullstripError, match="already exists"):
        train(tiny(), run, progress=False)


def test_same_seed_same_weights(tmp_path, data_dir, tiny):
    import keras

    a = train(tiny(epochs=1, steps_per_epoch=2), tmp_path / "a", progress=False)
    b = train(tiny(epochs=1, steps_per_epoch=2), tmp_path / "b", progress=False)
    wa = keras.saving.load_model(a / "last.keras", compile=False).get_weights()
    wb = keras.saving.load_model(b / "last.keras", compile=False).get_weights()
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_killed_run_resumes_from_its_last_epoch(tmp_path, data_dir, tiny):
    import keras

    def ctrl_c(epoch, logs):  # at the end of the second epoch, as a killed run would stop
        if epoch == 1:
            raise KeyboardInterrupt

    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(tiny(epochs=4), run, progress=False,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=ctrl_c)])
    assert list(pd.read_csv(run / "log.csv")["epoch"]) == [0, 1]
    assert not (run / "export").exists()
    train(TrainConfig(), run, resume=True, progress=False)  # config comes from the run
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2, 3]  # continued at epoch 2, nothing redone
    assert (run / "export" / "model.onnx").exists()
    with pytest.raises(SkullstripError, match="no run to resume"):
        train(tiny(), tmp_path / "never", resume=True, progress=False)


def test_training_leaves_no_global_state(tmp_path, data_dir, tiny):
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


def test_make_default_model_reproduces_the_bundled_recipe():
    # `make default-model` trains the default profile: every setting of the bundled
    # model's run (heads, seeds, network, schedule, preprocessing) must be the profile's,
    # so that the command makes it again.
    from skullstrip_lib.inference import bundled_models, load_model
    from skullstrip_lib.train import REALISTIC_SYNTH, read_config

    folder = bundled_models()["default"]
    assert read_config(folder / "config.yaml") == resolve_config("default")
    assert resolve_config("default").synth == REALISTIC_SYNTH
    meta = load_model("default").meta
    assert (meta["network"]["base_filters"], meta["network"]["depth"]) == (12, 4)
    assert meta["network"]["parameters"] == 837_157
    assert meta["training"]["seed"] == 0 and meta["training"]["epochs"] == 100
    split = (folder / "split.csv").read_text().splitlines()
    assert len(split) == 1 + sum(group["n"] for group in REALISTIC_SYNTH)  # 104 heads


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


def test_export_refuses_to_overwrite(tmp_path, data_dir, tiny):
    run = train(tiny(epochs=1, steps_per_epoch=1), tmp_path / "r", progress=False)
    with pytest.raises(SkullstripError, match="already holds a model"):
        export_run(run, overwrite=False)


@pytest.mark.slow
def test_mixed_precision_checkpoint_exports_in_float32(tmp_path):
    """A run trained on a GPU (mixed_float16) exports, and agrees with the float32 network.

    Fitting in mixed precision fails on a CPU (float16 pooling), but saving and
    exporting do not need a fit: the full-profile network built under the
    policy, saved as a run's best.keras, is what a GPU run leaves behind.
    """
    import keras
    import onnxruntime as ort

    from skullstrip_lib.train import build_network, computes_in_float32, precision_policy

    config = resolve_config("full")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    keras.utils.set_random_seed(3)
    with precision_policy("mixed_float16"):
        mixed = build_network(config)
    mixed.save(run / "best.keras")
    loaded = keras.saving.load_model(run / "best.keras", compile=False)
    # The checkpoint's layers still compute in float16 (whatever its model-level policy says).
    assert loaded.get_layer("enc0_conv1").compute_dtype == "float16"
    assert not computes_in_float32(loaded)

    out = export_run(run)
    meta = json.loads((out / "model.json").read_text())
    assert meta["network"]["base_filters"] == 16 and meta["network"]["depth"] == 4
    with precision_policy("float32"):
        reference = build_network(config)
    reference.set_weights(mixed.get_weights())
    x = np.random.default_rng(0).standard_normal((1, 96, 128, 160, 1)).astype(np.float32)
    expected = np.asarray(reference(x, training=False))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == expected.shape == (1, 96, 128, 160, 1)
    # Norm layers' float32 averages over 10^5-10^6 voxels differ by ~1e-3 between the runtimes.
    assert np.max(np.abs(got - expected)) < 1e-2
    assert np.mean((got > 0.5) == (expected > 0.5)) > 0.999  # the masks agree


# --------------------------------------------------------------------------- failing early
def _no_gpu() -> bool:
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


NO_GPU = ("no GPU: the full profile needs one (on Colab: Runtime > Change runtime type > GPU); "
          "pass allow_cpu=True / --allow-cpu to train on the CPU anyway, slowly")


@pytest.mark.skipif(not _no_gpu(), reason="checks the refusal on a machine without a GPU")
def test_full_profile_without_a_gpu_stops_before_the_data(tmp_path, data_dir, monkeypatch,
                                                          capsys, tiny):
    from skullstrip_lib.cli import main

    prepared = []
    monkeypatch.setattr(train_fit, "prepare_data", lambda *a, **k: prepared.append(a))
    config = tiny(profile="full")
    with pytest.raises(DeviceError) as refused:
        train(config, tmp_path / "run", progress=False)
    assert str(refused.value) == NO_GPU
    assert not (tmp_path / "run").exists() and prepared == []  # nothing written or prepared
    with pytest.raises(DeviceError, match="no GPU: the full profile needs one"):
        check_device(config)  # what a notebook calls before prepare_data
    assert check_device(config, allow_cpu=True) == ["/device:CPU:0"]
    assert check_device(tiny()) == ["/device:CPU:0"]  # CPU-sized profiles need no GPU
    # The command line: one line, a non-zero status, no run folder.
    assert main(["train", "--profile", "full", "-o", str(tmp_path / "cli")]) == 1
    assert capsys.readouterr().err == f"skullstrip train: error: {NO_GPU}\n"
    assert not (tmp_path / "cli").exists()


def test_cli_passes_allow_cpu_and_fixed_batch(tmp_path, monkeypatch):
    from skullstrip_lib.cli import main

    seen = {}

    def fake_train(config, run_dir, **kwargs):
        seen.update(config=config, **kwargs)
        return tmp_path

    monkeypatch.setattr(train_module, "train", fake_train)
    assert main(["train", "--profile", "full", "--allow-cpu", "-q", "-o", str(tmp_path)]) == 0
    assert seen["allow_cpu"] is True and seen["config"].auto_batch is True
    assert main(["train", "--profile", "full", "--fixed-batch", "--batch-size", "2",
                 "-o", str(tmp_path)]) == 0
    assert seen["allow_cpu"] is False
    assert seen["config"].auto_batch is False and seen["config"].batch_size == 2


def test_fit_batch_size_and_free_memory():
    gb = 10**9
    # margin x (fixed + b x per volume) <= free, at most the cap.
    assert fit_batch_size(15 * gb, 1.8 * gb, cap=4, fixed_bytes=0.4 * gb) == 3
    assert fit_batch_size(15 * gb, 1.8 * gb, cap=4, margin=1.0) == 4
    assert fit_batch_size(15 * gb, 1.8 * gb, cap=2) == 2
    assert fit_batch_size(3 * gb, 1.8 * gb, cap=4) == 0  # not even one volume
    # Two devices: the batch is the per-device share times 2, at most the cap.
    assert fit_batch_size(8 * gb, 1.8 * gb, cap=8, replicas=2) == 4
    assert fit_batch_size(80 * gb, 1.8 * gb, cap=8, replicas=2) == 8
    for bad, message in (({"margin": 0.5}, "margin must be a number >= 1, got 0.5"),
                         ({"cap": 0}, "cap must be an integer >= 1, got 0"),
                         ({"cap": 3, "replicas": 2}, r"cap must be a multiple of replicas \(2\)")):
        with pytest.raises(InvalidArgumentError, match=f"^{message}"):
            fit_batch_size(15 * gb, 1.8 * gb, **{"cap": 4, **bad})
    # nvidia-smi counts TensorFlow's reserved pool as used: what is free is the pool's rest.
    assert gpu_free_bytes(16 * gb, 1 * gb, 0) == 15 * gb
    assert gpu_free_bytes(16 * gb, 15 * gb, 2 * gb, pool_reserved=True) == 13 * gb
    assert gpu_free_bytes(16 * gb, 1 * gb, 2 * gb, pool_reserved=True) == 15 * gb  # small pool
    assert gpu_free_bytes(16 * gb, 15 * gb, 2 * gb, limit_bytes=4 * gb) == 2 * gb
    assert gpu_free_bytes(16 * gb, 17 * gb, 0) == 0


def test_free_memory_of_a_gpu_read_from_nvidia_smi_and_tensorflow(monkeypatch):
    # A stand-in for a 16 GiB GPU (nvidia-smi in MiB), where TensorFlow has handed out 1 GiB.
    import tensorflow as tf

    mib, gpu = 2**20, object()
    smi = [(0, "GPU-aaaa", 16384 * mib, 15872 * mib), (1, "GPU-bbbb", 16384 * mib, 512 * mib)]
    monkeypatch.setattr(train_devices, "_nvidia_smi", lambda: smi)
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [gpu, gpu])
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda device: None)
    monkeypatch.setattr(tf.config.experimental, "get_memory_growth", lambda device: False)
    monkeypatch.setattr(tf.config.experimental, "get_memory_info",
                        lambda device: {"current": 1024 * mib, "peak": 2048 * mib})
    for name in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_GPU_ALLOCATOR"):
        monkeypatch.delenv(name, raising=False)
    # TensorFlow reserved its pool (15.5 GiB used on GPU 0): free is the pool's rest.
    assert train_devices._device_free_bytes(["/device:GPU:0"]) == (14848 * mib, "")
    # GPU 1 has 15.5 GiB free: with two, the one with the least free memory counts.
    assert train_devices._device_free_bytes(["/device:GPU:0", "/device:GPU:1"])[0] == 14848 * mib
    # TensorFlow sees only physical GPU 1, as its GPU:0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert train_devices._device_free_bytes(["/device:GPU:0"])[0] == 15872 * mib
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert train_devices._device_free_bytes(["/device:GPU:0"])[0] == 14848 * mib
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    # Memory growth: no pool, what nvidia-smi calls free.
    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    assert train_devices._device_free_bytes(["/device:GPU:0"])[0] == 512 * mib
    # A configured memory limit is the pool.
    monkeypatch.setattr(tf.config, "get_logical_device_configuration",
                        lambda device: [tf.config.LogicalDeviceConfiguration(memory_limit=4096)])
    assert train_devices._device_free_bytes(["/device:GPU:0"])[0] == 3072 * mib
    # No nvidia-smi and no limit: unknown, and said so (train then keeps the configured batch).
    monkeypatch.setattr(tf.config, "get_logical_device_configuration", lambda device: None)
    monkeypatch.setattr(train_devices, "_nvidia_smi", lambda: None)
    assert train_devices._device_free_bytes(["/device:GPU:0"]) == (
        None, "cannot read the memory of /device:GPU:0 (nvidia-smi missing or failed)")
    assert train_devices._device_free_bytes(["/device:CPU:0"]) == (None, "no GPU to size it for")


def out_of_memory_once(epoch: int):
    """A callback that raises ResourceExhaustedError at the first step of ``epoch``, once."""
    import keras
    import tensorflow as tf

    class OutOfMemoryOnce(keras.callbacks.Callback):
        raised = 0

        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == epoch and not self.raised:
                self.raised += 1
                raise tf.errors.ResourceExhaustedError(None, None, "OOM")

    return OutOfMemoryOnce()


def steps_seen():
    """A callback counting each epoch's finished steps (of the attempt that finished it),
    and the optimizer's step count and learning rate at each epoch's end."""
    import keras

    class StepsSeen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps, self.iterations, self.rates = {}, {}, {}

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.steps[epoch] = epoch, 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps[self.epoch] += 1

        def on_epoch_end(self, epoch, logs=None):
            self.iterations[epoch] = int(self.model.optimizer.iterations)
            self.rates[epoch] = float(self.model.optimizer.learning_rate)

    return StepsSeen()


def test_batch_from_gpu_memory_then_halved_on_out_of_memory(tmp_path, data_dir, monkeypatch,
                                                            capsys, tiny):
    """The full profile's path, rehearsed on the CPU with small settings and allow_cpu."""
    from skullstrip_lib.model import build_unet, training_memory

    config = tiny(profile="full", auto_batch=True, batch_size=4, epochs=3, steps_per_epoch=2)
    memory = training_memory(build_unet((24, 32, 40, 1), base_filters=4, depth=2), 1)
    per_volume = memory["activations"]
    free = MEMORY_MARGIN * (memory["total"] + 1.5 * per_volume)  # room for 2.5 volumes
    monkeypatch.setattr(train_devices, "_device_free_bytes", lambda devices: (int(free), ""))
    oom = out_of_memory_once(epoch=1)
    seen = steps_seen()
    run = train(config, tmp_path / "run", progress=False, callbacks=[oom, seen], allow_cpu=True)
    out = capsys.readouterr().out
    assert "batch 2 (at most 4): " in out and f"(estimate x {MEMORY_MARGIN:g})" in out
    assert ("out of memory at batch 2: retrying at batch 1 from the last finished epoch "
            "(1 of 3 done), 8 steps an epoch instead of 4") in out
    assert oom.raised == 1
    log = pd.read_csv(run / "log.csv")
    assert list(log["epoch"]) == [0, 1, 2]  # epoch 0 was not redone
    # 2 steps of 4 volumes configured: every epoch sees 8 volumes, 4 steps at batch 2, then
    # 8 at batch 1.
    assert seen.steps == {0: 4, 1: 8, 2: 8}
    # The cosine schedule spans 3 x 8 steps after the fall-back, and the restored step count
    # is moved to the same share of the run (1 epoch of 3: step 8, not the 4 taken at batch
    # 2), so the learning rate ends at the schedule's floor, 5 % of the start.
    assert seen.iterations == {0: 4, 1: 16, 2: 24}
    assert seen.rates[2] == pytest.approx(0.05 * config.learning_rate, rel=1e-5)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["batch_size"] == 1 and summary["replicas"] == 1
    assert summary["steps_per_epoch"] == 8 and summary["volumes_per_epoch"] == 8
    assert summary["batch_choice"]["chosen_by"] == "gpu memory"
    assert summary["batch_choice"]["configured"] == 4
    assert summary["batch_choice"]["per_volume_bytes"] == per_volume
    assert summary["out_of_memory_retries"] == [
        {"batch_size": 2, "steps_per_epoch": 4, "epochs_done": 1}]
    assert (run / "export" / "model.onnx").exists() and not (run / "backup").exists()


def test_batch_for_a_t4_counts_group_norms_float32_copies():
    """The full network in mixed precision on a T4: batch 3, not 4 (issue 17).

    Under mixed_float16 each of the 14 instance norms keeps a float32 copy of its
    input (0.66 GB a volume in all); without them the estimate was 1.77 GB a
    volume, not 2.43, and batch 4 seemed to fit a T4's 15,360 MiB (16.1 GB):
    14.2 GB with the margin of 2, where batch 3 now takes 14.6 GB.
    """
    import keras

    from skullstrip_lib.model import training_memory
    from skullstrip_lib.train import build_network, precision_policy

    config = resolve_config("full")
    with precision_policy("mixed_float16"):
        mixed = build_network(config)
    memory = training_memory(mixed, 1)
    per_volume, fixed = memory["activations"], memory["total"] - memory["activations"]
    norms = [layer for layer in mixed.layers if layer.name.split("_")[-1].startswith("norm")]
    assert len(norms) == 14  # two a level: 3 down, the bottom, 3 up
    assert all(isinstance(layer, keras.layers.GroupNormalization) for layer in norms)
    copies = sum(4 * int(np.prod(layer.input.shape[1:])) for layer in norms)
    # By hand, V = 96*128*160 voxels: levels 0-2 have 4 norms each (2 down, 2 up) of 16*2^l
    # channels on V/8^l voxels, the bottom 2 of 128 channels on V/512; 4 bytes a value:
    # 4 * V * (4 * (16 + 4 + 1) + 2 * 0.25) = 338 V.
    assert copies == 338 * 96 * 128 * 160 == 664_535_040
    assert 0.35 < copies / (per_volume - copies) < 0.4  # +38 % over the float16 outputs
    t4_free = gpu_free_bytes(15360 * 2**20, 0, 0)  # nvidia-smi's total, before TensorFlow
    assert fit_batch_size(t4_free, per_volume, cap=4, fixed_bytes=fixed) == 3
    assert fit_batch_size(t4_free, per_volume - copies, cap=4, fixed_bytes=fixed) == 4
    assert train_module.epoch_steps(config, 3) == 22  # 64 volumes an epoch at batch 4: 66


def test_out_of_memory_at_batch_one_stops(tmp_path, data_dir, tiny):
    import keras
    import tensorflow as tf

    class AlwaysOut(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM")

    with pytest.raises(DeviceError, match=r"^out of memory on /device:CPU:0 even at 1 volume a "
                                          r"device: free the device"):
        train(tiny(batch_size=1, epochs=1, steps_per_epoch=1), tmp_path / "r", progress=False,
              callbacks=[AlwaysOut()])
    assert not (tmp_path / "r" / "summary.json").exists()
    assert not (tmp_path / "r" / "export").exists()


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




def test_cli_export_calibrates_on_the_runs_validation_heads(tmp_path, data_dir, capsys, tiny):
    from skullstrip_lib.cli import main
    from skullstrip_lib.evaluate import CALIBRATION_THRESHOLDS, training_split
    from skullstrip_lib.inference import load_model

    run = train(tiny(epochs=1, steps_per_epoch=2), tmp_path / "run", progress=False)
    out = tmp_path / "model"
    assert main(["export", str(run), "-o", str(out), "--calibrate", "-q"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["tta"] == "flip_lr" and meta["threshold"] in CALIBRATION_THRESHOLDS
    split = training_split(out)
    assert meta["calibration"]["split"] == "val"
    assert meta["calibration"]["subjects"] == int((split == "val").sum())
    assert meta["calibration"]["table"]["threshold"] == list(CALIBRATION_THRESHOLDS)
    model = load_model(out)
    assert model.flip_lr and model.threshold == meta["threshold"]
    assert f"threshold {meta['threshold']:g}" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad runs, bad data
BAD_CONFIGS = {
    "python-tag": ("profile: !!python/object/apply:os.system ['touch PWNED']\n",
                   r"config.yaml: not a valid run configuration: YAML error at line 1: could not "
                   r"determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply"),
    "python-object": ("!!python/object:skullstrip_lib.train.TrainConfig {epochs: 1}\n",
                      r"config.yaml: not a valid run configuration: YAML error at line 1"),
    "malformed": ("profile: [sample\nepochs: 2\n",
                  r"config.yaml: not a valid run configuration: YAML error at line 2: expected "),
    "tab-indent": ("preprocess:\n\tn4: none\n", r"config.yaml: not a valid run configuration"),
    "empty": ("", r"config.yaml: not a run configuration \(a YAML mapping of settings\), got "
                  r"NoneType"),
    "unknown": ("colour: blue\n", r"config.yaml: unknown training settings: colour"),
    "n4-iterations": ("preprocess:\n  n4_iterations: []\n",
                      r"config.yaml: preprocessing setting n4_iterations must be a non-empty "
                      r"list of positive integers"),
    "binary": (b"\xff\xfe\x00garbage", r"config.yaml: not a YAML file \(not UTF-8 text\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_read_config_refuses_in_one_line_naming_the_file(tmp_path, case, monkeypatch, tiny):
    from skullstrip_lib.errors import InvalidInputError
    from skullstrip_lib.train import read_config

    monkeypatch.chdir(tmp_path)
    text, expected = BAD_CONFIGS[case]
    path = tmp_path / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InvalidInputError, match=expected) as info:
        read_config(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))
    assert not (tmp_path / "PWNED").exists()  # refused, never executed
    # resume and export read it the same way
    with pytest.raises(InvalidInputError, match=expected):
        train(tiny(), tmp_path, resume=True, progress=False)
    with pytest.raises(InvalidInputError, match=expected):
        export_run(tmp_path)


def test_bad_data_leaves_no_run_folder(tmp_path, data_dir, tiny):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    run_dir = tmp_path / "runs" / "r"
    for _ in range(2):  # the retry gets the same answer, not "already exists"
        with pytest.raises(SkullstripError, match="bad.csv: index lacks column"):
            train(tiny(data=str(bad)), run_dir, progress=False)
        assert not run_dir.exists()


def test_run_that_fails_before_training_leaves_no_folder(tmp_path, data_dir, small_dataset, tiny):
    # The index is fine, a scan in it is not: preprocessing fails after config.yaml was
    # written. The run folder goes again, so the retry (with the scan fixed) can start.
    from skullstrip_lib.datasets import index_dataset, write_index

    index = index_dataset(small_dataset)
    broken = tmp_path / "broken.nii.gz"
    broken.write_text("not an image")
    index.loc[0, "t1w"] = str(broken)
    csv = write_index(index, tmp_path / "index.csv")
    run_dir = tmp_path / "r"
    with pytest.raises(SkullstripError, match="preprocessing failed for 1 subjects"):
        train(tiny(data=str(csv)), run_dir, progress=False)
    assert not run_dir.exists()
    # A folder that was there (empty) stays, emptied of what the failed start wrote.
    run_dir.mkdir()
    with pytest.raises(SkullstripError, match="preprocessing failed"):
        train(tiny(data=str(csv)), run_dir, progress=False)
    assert run_dir.is_dir() and not list(run_dir.iterdir())
