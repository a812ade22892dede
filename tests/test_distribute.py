"""Training over several devices (tf.distribute.MirroredStrategy), on two logical CPUs.

The machine has no second GPU, but TensorFlow can split the CPU into logical
devices, which ``MirroredStrategy`` mirrors like GPUs. That must happen before
TensorFlow initialises its devices, so the runs happen in a fresh Python
process (``SCRIPT``), which reports back in a JSON file; the checks are here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import pandas as pd
import pytest

from skullstrip_lib.errors import DeviceError
from skullstrip_lib.train import TrainConfig, check_device

SCRIPT = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from skullstrip_lib.errors import DeviceError
from skullstrip_lib.train import TrainConfig, check_device, train

settings, out = json.loads(sys.argv[1]), sys.argv[2]
report = {"devices": [d.name for d in tf.config.list_logical_devices()]}


class Look(keras.callbacks.Callback):
    # What the fit really ran on, and the loss of its first step (before any update).
    def __init__(self, name):
        super().__init__()
        self.name = name

    def on_train_begin(self, logs=None):
        strategy = self.model.distribute_strategy
        report[self.name] = {"strategy": type(strategy).__name__,
                             "replicas": strategy.num_replicas_in_sync}
        if strategy.num_replicas_in_sync > 1:
            report[self.name]["worker_devices"] = list(strategy.extended.worker_devices)

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0 and "first_loss" not in report[self.name]:
            report[self.name]["first_loss"] = float(logs["loss"])


def ctrl_c(epoch, logs):
    raise KeyboardInterrupt  # at the end of the first epoch, as a killed run would stop


kill = keras.callbacks.LambdaCallback(on_epoch_end=ctrl_c)


two = TrainConfig.from_dict({**settings, "devices": ["/cpu:0", "/cpu:1"]})
one = TrainConfig.from_dict(settings)
report["check"] = check_device(two)
try:
    check_device(TrainConfig.from_dict({**settings, "devices": ["/cpu:0", "/cpu:1"],
                                        "batch_size": 3}))
except DeviceError as exc:
    report["odd_batch"] = str(exc)
train(two, f"{out}/two", progress=False, callbacks=[Look("two")])
train(one, f"{out}/one", progress=False, callbacks=[Look("one")])
try:
    train(two, f"{out}/killed", progress=False, callbacks=[kill])
except KeyboardInterrupt:
    report["killed_log"] = open(f"{out}/killed/log.csv").read()
train(TrainConfig(), f"{out}/killed", resume=True, progress=False, callbacks=[Look("resumed")])
with open(f"{out}/report.json", "w") as fh:
    json.dump(report, fh)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_settings):
    out = tmp_path_factory.mktemp("distribute")
    # 2 epochs x 2 steps; no dropout, so that one device and two see the same network.
    settings = {**tiny_settings, "epochs": 2, "steps_per_epoch": 2, "dropout": 0.0}
    env = {**os.environ, "SKULLSTRIP_DATA": str(out / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(settings), str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return out, json.loads((out / "report.json").read_text()), done.stdout


def summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_mirrored_fit_splits_each_batch_between_the_devices(runs):
    out, report, stdout = runs
    assert report["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert report["check"] == ["/device:CPU:0", "/device:CPU:1"]
    assert report["two"]["strategy"] == "MirroredStrategy"
    assert [d[-5:] for d in report["two"]["worker_devices"]] == ["CPU:0", "CPU:1"]
    s = summary(out / "two")
    assert s["replicas"] == 2 and s["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert s["batch_size"] == 2 and s["batch_per_replica"] == 1  # global = per replica x 2
    assert s["batch_size"] == s["batch_per_replica"] * s["replicas"]
    # The one validation volume is repeated so that each device gets one, and it is said.
    assert s["validation"] == {"volumes": 1, "padded_to": 2}
    assert "validation: 1 volumes, the first 1 repeated to make 2" in stdout
    assert list(pd.read_csv(out / "two" / "log.csv")["epoch"]) == [0, 1]
    assert (out / "two" / "export" / "model.onnx").exists()
    model = keras.saving.load_model(out / "two" / "last.keras", compile=False)
    assert model.output_shape == (None, 24, 32, 40, 1)  # a mirrored checkpoint loads anywhere


def test_two_devices_compute_the_same_step_as_one(runs):
    out, report, _ = runs
    assert report["one"]["replicas"] == 1 and summary(out / "one")["replicas"] == 1
    assert summary(out / "one")["batch_per_replica"] == 2
    # Same seed, same first batch, same initial weights: the loss of the first step
    # (1 volume on each of 2 devices vs 2 on one) agrees to float precision.
    assert report["two"]["first_loss"] == pytest.approx(report["one"]["first_loss"], rel=1e-5)


def test_mirrored_run_resumes_after_an_interruption(runs):
    out, report, _ = runs
    assert report["killed_log"].splitlines()[1].startswith("0,")
    assert len(report["killed_log"].splitlines()) == 2  # header + epoch 0
    assert report["resumed"]["strategy"] == "MirroredStrategy"  # devices from config.yaml
    assert list(pd.read_csv(out / "killed" / "log.csv")["epoch"]) == [0, 1]
    assert summary(out / "killed")["replicas"] == 2
    assert (out / "killed" / "export" / "model.onnx").exists()


def test_batch_must_split_evenly(runs):
    _, report, _ = runs
    assert report["odd_batch"] == ("batch_size 3 does not split evenly over 2 devices "
                                   "(/device:CPU:0, /device:CPU:1): use a multiple of 2")


def test_unknown_devices_are_named():
    # In this process the CPU is one device: /cpu:1 does not exist.
    with pytest.raises(DeviceError, match=r"'/cpu:1' is not a device here \(this machine has "
                                          r"/device:CPU:0"):
        check_device(TrainConfig(devices=("/cpu:0", "/cpu:1")))
    with pytest.raises(DeviceError, match="'banana' is not a device here"):
        check_device(TrainConfig(devices=("banana",)))
    with pytest.raises(DeviceError, match="names a device twice"):
        check_device(TrainConfig(devices=("/cpu:0", "CPU:0")))
    with pytest.raises(DeviceError, match="give a list of devices"):
        check_device(TrainConfig(devices="/cpu:0"))
