"""The fit: :func:`train` fits a configuration's network in a run folder, or resumes one.

The devices are checked first (:mod:`~skullstrip_lib.train.devices`), the data
prepared (:mod:`~skullstrip_lib.train.prepare`), then the network is fitted with
the run's callbacks (backup, CSV log, TensorBoard, checkpoints); a fit that runs
out of memory is retried at half the batch from its last finished epoch, and the
best checkpoint is exported (:mod:`~skullstrip_lib.train.export`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..errors import DeviceError, SkullstripError
from ..io import atomic_write_text
from .config import SPLIT_FILE, TrainConfig, _read_config
from .devices import _choose_batch, _device_kind, _strategy_and_precision, check_device, epoch_steps
from .export import export_run
from .network import build_network, compile_for_training, precision_policy
from .prepare import _check_data, prepare_data

__all__ = ["train"]


def _finished_epochs(run_dir: Path) -> list[dict]:
    """The rows of ``log.csv`` (one per finished epoch)."""
    import pandas as pd

    log = run_dir / "log.csv"
    if not log.exists() or not log.read_text().strip():
        return []
    return pd.read_csv(log).to_dict("records")


def _training_data(tf_dir: Path, config: TrainConfig, batch: int):
    """The shuffled, augmented, repeated training stream, the same for every iterator.

    Under a ``tf.distribute`` strategy Keras opens the dataset twice (once
    for a batch to build the optimizer and metrics with, then for the fit).
    :func:`~skullstrip_lib.data.make_dataset` reshuffles and draws new
    augmentation seeds for every new iterator, so the fit would train on its
    second stream, and with several devices on one that changes from run to
    run. Made inside ``flat_map``, the dataset is made anew for each
    iterator, and every one starts the same seeded stream.
    """
    import tensorflow as tf

    from ..data import make_dataset

    def fresh(_):
        return make_dataset(tf_dir, "train", batch_size=batch, shuffle=True,
                            augment_config=config.augment, seed=config.seed, repeat=True)

    # Prefetched again outside flat_map, so that the next batches are ready while a step
    # runs: on a GPU the augmentation on the CPU, not the network, paces training.
    return tf.data.Dataset.range(1).flat_map(fresh).prefetch(tf.data.AUTOTUNE)


def _validation_data(tf_dir: Path, replicas: int):
    """The validation split in batches of one volume per device, and its volume counts.

    Keras cannot evaluate a batch that leaves a device without a volume, so
    with several devices a split whose size is not a multiple of their number
    is padded by repeating its first volumes (each then counts twice in the
    validation scores).
    """
    from ..data import make_dataset, read_manifest

    volumes = read_manifest(tf_dir)["counts"]["val"]
    ds = make_dataset(tf_dir, "val", batch_size=1, shuffle=False)
    if replicas == 1:
        return ds, {"volumes": volumes, "padded_to": volumes}
    padded = -(-volumes // replicas) * replicas
    if padded != volumes:
        print(f"validation: {volumes} volumes, the first {padded - volumes} repeated to make "
              f"{padded} (one volume for each of {replicas} devices per batch)")
    ds = ds.unbatch().repeat().take(padded).batch(replicas)
    return ds, {"volumes": volumes, "padded_to": padded}


def _schedule_from_epoch(steps: int):
    """A callback that puts a continued fit's step count where ``steps`` an epoch put it.

    ``BackupAndRestore`` restores the optimizer's step count, which drives the
    cosine learning-rate schedule. After a fall-back to a smaller batch (more
    steps an epoch) that count is in the earlier attempt's steps: the schedule,
    which spans ``epochs * steps`` steps, would restart at a higher learning
    rate and never decay to its floor. At the first epoch of a continued fit
    the count is set to ``epoch * steps``, the same share of the run.
    """
    import keras

    class ScheduleFromEpoch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first = True

        def on_epoch_begin(self, epoch, logs=None):
            if self.first and epoch > 0:  # restored from the backup
                self.model.optimizer.iterations.assign(epoch * steps)
            self.first = False

    return ScheduleFromEpoch()


def _run_callbacks(run_dir: Path, steps: int) -> list:
    """The run's own callbacks, new for every attempt of a fit (a resumed or a retried one).

    ``steps``: the steps an epoch of this attempt takes.
    """
    import keras

    # The best validation Dice so far, so that a continued run replaces best.keras only
    # with a better epoch (not with its first one).
    best = [row["val_dice"] for row in _finished_epochs(run_dir)
            if "val_dice" in row and not math.isnan(row["val_dice"])]
    threshold = max(best) if best and (run_dir / "best.keras").exists() else None
    return [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        _schedule_from_epoch(steps),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_dice",
                                        mode="max", save_best_only=True,
                                        initial_value_threshold=threshold),
        keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
    ]


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True, callbacks: Sequence = (), allow_cpu: bool = False) -> Path:
    """Train a model; write checkpoints, logs and an exported model in ``run_dir``.

    The devices are checked first (:func:`check_device`): nothing is written
    and no data prepared when they cannot train ``config``. With
    ``config.auto_batch`` on a GPU the batch is what its free memory holds, at
    most ``config.batch_size`` (:func:`fit_batch_size`). A fit that runs out of
    memory (``tf.errors.ResourceExhaustedError``) is retried at half the batch,
    with a new dataset and model from the same seed, continuing from the last
    finished epoch; below one volume per device it stops with a
    :class:`~skullstrip_lib.errors.DeviceError`. A batch smaller than
    ``config.batch_size`` takes more steps an epoch (:func:`epoch_steps`), so
    that an epoch sees as many volumes, and the learning-rate schedule spans
    the run's real steps. The batch and steps used, how the batch was chosen,
    the retries and the devices are in ``summary.json``.

    Parameters
    ----------
    config : TrainConfig
        What to train (see :func:`resolve_config`). Ignored with ``resume``:
        the run's own ``config.yaml`` is used.
    run_dir : path-like
        The run folder; must not exist unless ``resume``.
    resume : bool
        Continue a run that was stopped, from its last finished epoch.
    progress : bool
        Progress bars and Keras' per-epoch lines. (The batch chosen for the
        GPU and out-of-memory retries are printed in one line each either way.)
    callbacks : sequence of keras.callbacks.Callback
        More callbacks for ``model.fit``, after the run's own (backup,
        CSV log, TensorBoard, checkpoints).
    allow_cpu : bool
        Train a GPU profile (``full``) on the CPU anyway; needed again to
        resume one there.

    Returns
    -------
    pathlib.Path
        ``run_dir``.

    Raises
    ------
    DeviceError
        No GPU for a GPU profile (without ``allow_cpu``), unknown devices, or
        out of memory even at one volume per device.
    SkullstripError
        The run folder exists (without ``resume``), or there is no run to resume.

    Examples
    --------
    Not run as a doctest: it prepares its data under the user's data folder
    (``$SKULLSTRIP_DATA``, else ``~/skullstrip_data``), which an example may not
    touch, and trains for minutes; ``tests/test_train.py`` runs tiny
    configurations on a temporary data folder.

    >>> from skullstrip_lib.train import resolve_config
    >>> run = train(resolve_config("sample"), "runs/sample", progress=False)  # doctest: +SKIP
    >>> sorted(p.name for p in (run / "export").iterdir())  # doctest: +SKIP
    ['config.yaml', 'model.json', 'model.onnx', 'split.csv']
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise SkullstripError(f"{run_dir}: no run to resume (config.yaml missing)")
        config = _read_config(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SkullstripError(f"{run_dir}: already exists (choose another name, or --resume)")
    devices = check_device(config, allow_cpu=allow_cpu)  # before the run folder and the data
    _check_data(config)  # a bad --data leaves no run folder behind: the retry works
    created = not run_dir.exists()
    written = [run_dir / "config.yaml", run_dir / SPLIT_FILE]
    try:
        atomic_write_text(run_dir / "config.yaml",
                          yaml.safe_dump(config.to_dict(), sort_keys=False))
        tf_dir = prepare_data(config, progress=progress)
        _write_split(tf_dir, run_dir / SPLIT_FILE)
    except BaseException:
        if not resume:  # nothing trained yet: leave no half-made run (the retry would refuse)
            for path in written:
                path.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    run_dir.rmdir()
        raise

    import keras
    import tensorflow as tf

    strategy, mixed = _strategy_and_precision(config, devices)
    replicas = strategy.num_replicas_in_sync
    val_ds, validation = _validation_data(tf_dir, replicas)
    batch, choice, retries = None, None, []
    start = time.perf_counter()
    with precision_policy("mixed_float16" if mixed else "float32"):
        while True:
            keras.utils.set_random_seed(config.seed)  # initialisation, dropout, data order
            with strategy.scope():
                model = build_network(config)
                if batch is None:
                    batch, choice = _choose_batch(config, model, devices, replicas)
                # A smaller batch than configured takes more steps: the same volumes an epoch.
                steps = epoch_steps(config, batch)
                compile_for_training(model, config, steps_per_epoch=steps)
            train_ds = _training_data(tf_dir, config, batch)
            try:
                model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps,
                          validation_data=val_ds,
                          callbacks=[*_run_callbacks(run_dir, steps), *callbacks],
                          verbose=2 if progress else 0)
                break
            except tf.errors.ResourceExhaustedError:
                done = len(_finished_epochs(run_dir))
                smaller = batch // replicas // 2 * replicas
                if smaller < 1:
                    raise DeviceError(f"out of memory on {', '.join(devices)} even at 1 volume "
                                      f"a device: free the device, use a smaller grid or fewer "
                                      f"base_filters") from None
                print(f"out of memory at batch {batch}: retrying at batch {smaller} from the "
                      f"last finished epoch ({done} of {config.epochs} done), "
                      f"{epoch_steps(config, smaller)} steps an epoch instead of {steps}")
                retries.append({"batch_size": batch, "steps_per_epoch": steps,
                                "epochs_done": done})
                batch = smaller
            del model, train_ds  # free the failed attempt's memory before the next one
            gc.collect()
        seconds = time.perf_counter() - start
    summary = {"seconds": round(seconds, 1), "mixed_precision": mixed,
               "gpus": len(devices) if _device_kind(devices[0]) == "GPU" else 0,
               "devices": devices if replicas == len(devices) else
               list(strategy.extended.worker_devices),
               "replicas": replicas, "batch_size": batch, "batch_per_replica": batch // replicas,
               "steps_per_epoch": steps, "volumes_per_epoch": steps * batch,
               "batch_choice": choice, "out_of_memory_retries": retries,
               "validation": validation, "data": str(tf_dir)}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    export_run(run_dir)
    return run_dir


def _write_split(tf_dir: Path, path: Path) -> None:
    """The subject-level split of the data a run trains on, as ``subject,split`` rows.

    Stored with the run (and its export) so that an evaluation can never score
    a subject the model was trained on, whatever split it would compute itself
    (:func:`skullstrip_lib.evaluate.training_split`).
    """
    from ..data import read_manifest

    subjects = read_manifest(tf_dir)["subjects"]
    rows = "".join(f"{s},{split}\n" for split, names in subjects.items() for s in names)
    atomic_write_text(path, "subject,split\n" + rows)
