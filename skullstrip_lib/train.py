"""Training runs: data preparation, the fit itself, checkpoints, export.

A run is a folder::

    runs/NAME/
      config.yaml        the resolved configuration (profile + overrides)
      split.csv          the subject-level split of the data it trains on
      log.csv            one row per epoch (loss, Dice, IoU, validation scores, lr)
      tensorboard/       TensorBoard logs
      best.keras         the checkpoint with the best validation Dice
      last.keras         the checkpoint after the last finished epoch
      backup/            Keras' BackupAndRestore state: --resume continues from here
      export/            model.onnx + model.json, for skullstrip predict / evaluate

:func:`train` prepares the data (synthetic heads or an NFBS index → the
preprocessing workflow → TFRecords), builds the U-Net, and fits it. Prepared
data is cached under the data folder, in folders named by a hash of everything
that made them, so a second run reuses them and a changed parameter never
reuses stale data.

Where it runs is checked first (:func:`check_device`): the ``full`` profile
stops at once without a GPU, before minutes of preprocessing, unless
``allow_cpu``. With ``auto_batch`` the batch is sized to the GPU's free memory
(:func:`gpu_free_bytes`, :func:`fit_batch_size`), and a fit that runs out of
memory all the same is retried at half the batch from its last finished epoch.
With several devices (all GPUs, or ``TrainConfig.devices``) a
``tf.distribute.MirroredStrategy`` splits every batch between them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import __version__
from .errors import DeviceError, InvalidInputError, MissingFileError, SkullstripError
from .io import (
    as_tuples,
    atomic_path,
    atomic_write_text,
    check_keras_file,
    from_plain,
    settings_key,
    to_plain,
)
from .preprocess import PreprocessConfig

if TYPE_CHECKING:  # TensorFlow and pandas are imported when they are used
    import pandas as pd

    from .data import AugmentConfig

__all__ = [
    "GPU_PROFILES",
    "MEMORY_MARGIN",
    "TRAINING_PROFILES",
    "TrainConfig",
    "build_network",
    "check_device",
    "compile_for_training",
    "computes_in_float32",
    "epoch_steps",
    "export_run",
    "fit_batch_size",
    "gpu_free_bytes",
    "prepare_data",
    "read_config",
    "resolve_config",
    "train",
    "training_index",
]


# Synthetic training sets: groups of heads, each group with its own geometry and
# contrast, so that a model learns the brain rather than one scanner's look.
SAMPLE_SYNTH = [
    {"n": 8, "shape": [128, 128, 96], "voxel_size": [2.0, 2.0, 2.0]},
    {"n": 4, "shape": [112, 128, 96], "voxel_size": [2.2, 2.0, 2.0], "orientation": "LPS",
     "contrast": "random"},
]
VARIED_SYNTH = [
    {"n": 24},
    {"n": 8, "orientation": "LPS", "voxel_size": [1.2, 1.0, 1.0], "shape": [208, 256, 192]},
    {"n": 8, "orientation": "PIR", "voxel_size": [1.0, 1.0, 1.3], "shape": [256, 192, 160],
     "oblique_deg": [8.0, 0.0, 5.0]},
    {"n": 8, "contrast": "random", "deface": False},
    {"n": 8, "contrast": "random", "shape": [176, 240, 256]},  # long field of view
    {"n": 8, "voxel_size": [0.9, 0.9, 1.2], "shape": [256, 256, 150], "oblique_deg": [0, 12, 0]},
    {"n": 8, "contrast": "t2", "voxel_size": [1.0, 1.0, 1.0]},
    {"n": 8, "shape": [200, 220, 150], "center_mm": [0.0, -10.0, 15.0]},  # cropped field of view
]
# The bundled model's heads: VARIED_SYNTH's scanner grids, plus what real scans add and
# SynthStrip's domain randomisation teaches (Hoopes et al. 2022): every tissue drawn on
# its own ("mixed"), thick 2D slices, low resolution, clinical fields of view. Anatomy
# (size, tilt, atrophy, hindbrain, neck) is drawn per head in every group.
DOMAIN_SYNTH = [
    {"n": 20},
    *VARIED_SYNTH[1:3],  # LPS anisotropic, PIR oblique
    {"n": 10, "contrast": "mixed", "deface": False},
    *VARIED_SYNTH[4:],  # long field of view, oblique 0.9 mm, T2, cropped field of view
    {"n": 8, "orientation": "LAS", "voxel_size": [1.5, 1.5, 1.5], "shape": [120, 140, 110],
     "center_mm": [0.0, -15.0, 5.0], "contrast": "mixed"},  # clinical: tight, 1.5 mm
    {"n": 8, "voxel_size": [0.9, 0.9, 4.0], "shape": [256, 256, 44], "slice_mm": 5.0,
     "center_mm": [0.0, -15.0, 0.0], "contrast": "random"},  # thick axial 2D slices
    {"n": 8, "voxel_size": [2.0, 2.0, 2.0], "shape": [128, 128, 100], "contrast": "mixed",
     "blur_mm": 1.0},  # low resolution
]
# The next bundled model's heads (issue 20; not yet any profile's): DOMAIN_SYNTH's grids
# and contrasts on heads whose non-brain anatomy is real where real scans fail: a thin
# skull base with brain-like muscle and fat under it, air cells, clivus and petrous bone,
# dural folds and sinuses (skull_base="realistic"), SynthStrip-style random non-brain
# labels (nonbrain_labels), stronger and denser bias fields, T1 groups with the face
# kept; larger warps and other head proportions than the first generator draws (real
# brains differ from MNI152 by more). A few uniform heads keep the first generator's
# look. 104 heads, like DOMAIN_SYNTH's 102; on the NFBS grid a realistic head takes
# about 1.25x as long to make, 1.8x with six random labels (8.2 and 11.7 s against
# 6.6 s, one loaded 2-core machine). To train on it:
# resolve_config("default", synth=REALISTIC_SYNTH).
_REAL = {"skull_base": "realistic"}
REALISTIC_SYNTH = [
    {"n": 6},  # the first generator's uniform shell
    {"n": 10, **_REAL, "warp_mm": 4.0},
    {"n": 6, **_REAL, "deface": False, "proportions": [1.03, 1.0, 0.92]},  # T1, face kept
    {"n": 6, **_REAL, "deface": False, "nonbrain_labels": 5},
    {**DOMAIN_SYNTH[1], **_REAL},  # LPS anisotropic
    {**DOMAIN_SYNTH[2], **_REAL, "bias_range": [0.2, 0.6], "bias_knots": 7},  # PIR oblique
    {"n": 8, "contrast": "mixed", "deface": False, **_REAL, "nonbrain_labels": 8},
    {**DOMAIN_SYNTH[4], **_REAL},  # long field of view
    {**DOMAIN_SYNTH[5], **_REAL, "nonbrain_labels": 4},  # oblique 0.9 mm
    {**DOMAIN_SYNTH[6], "n": 6, **_REAL},  # T2
    {**DOMAIN_SYNTH[7], **_REAL},  # cropped field of view
    {**DOMAIN_SYNTH[8], **_REAL, "deface": False, "bias_range": [0.2, 0.7],
     "bias_knots": 7},  # clinical: tight, 1.5 mm, with the neck and face
    {**DOMAIN_SYNTH[9], **_REAL},  # thick axial 2D slices
    {**DOMAIN_SYNTH[10], "n": 6, **_REAL, "nonbrain_labels": 6},  # low resolution
]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored as ``config.yaml``).

    Attributes
    ----------
    profile : str
        The named profile these values started from.
    data : str or None
        An index CSV or NFBS folder to train on; None trains on synthetic heads.
    synth : list of dict
        Synthetic groups when ``data`` is None: ``n`` heads each, with
        :func:`skullstrip_lib.synth.make_head` geometry and contrast arguments.
    synth_seed, split_seed : int
        Seeds of the synthetic heads and of the train/val/test split.
    preprocess : PreprocessConfig
        The model grid, N4 and normalisation (:class:`~skullstrip_lib.preprocess.PreprocessConfig`).
    base_filters, depth, dropout, norm
        The network (:func:`skullstrip_lib.model.build_unet`).
    batch_size, epochs, steps_per_epoch, learning_rate, loss
        The fit: Adam with cosine decay from ``learning_rate``; ``loss`` is
        ``"dice"`` or ``"dice_bce"``. ``batch_size`` is the global batch
        (volumes per step over all devices).
    auto_batch : bool
        On a GPU, lower ``batch_size`` to what its free memory holds
        (:func:`fit_batch_size`): ``batch_size`` is then the most a step
        uses. No effect on a CPU. On in the ``full`` profile.
    devices : tuple of str or None
        The devices to train on, e.g. ``("/gpu:0", "/gpu:1")``; more than
        one mirrors the model on each and splits every batch between them
        (``tf.distribute.MirroredStrategy``), so ``batch_size`` must be a
        multiple of their number. None: every GPU (mirrored when there are
        several), else the CPU.
    augment : AugmentConfig or None
        The augmentation (:class:`skullstrip_lib.data.AugmentConfig`); None for
        none (``augment: {enabled: false}`` in YAML).
    seed : int
        Fixes initialisation, data order and augmentation.
    mixed_precision : str
        ``"auto"`` (on when training runs on GPUs), ``"on"`` or ``"off"``.
    workers : int
        Processes for preprocessing.
    """

    profile: str = "sample"
    data: str | None = None
    synth: list[dict] = field(default_factory=lambda: [dict(g) for g in SAMPLE_SYNTH])
    synth_seed: int = 100
    split_seed: int = 0
    preprocess: PreprocessConfig = field(default_factory=lambda: PreprocessConfig(
        shape=(48, 64, 80), spacing=4.0, n4="none", normalization="zscore"))
    base_filters: int = 8
    depth: int = 3
    dropout: float = 0.1
    norm: str | None = "instance"
    batch_size: int = 2
    auto_batch: bool = False
    devices: tuple[str, ...] | None = None
    epochs: int = 8
    steps_per_epoch: int = 10
    learning_rate: float = 2e-3
    loss: str = "dice_bce"
    augment: AugmentConfig | None = field(default_factory=lambda: _augment_class()())
    seed: int = 0
    mixed_precision: str = "auto"
    workers: int = 2

    def head_kwargs(self, group: int) -> dict[str, Any]:
        """:func:`~skullstrip_lib.synth.make_head` arguments of synthetic group ``group``."""
        return as_tuples({k: v for k, v in self.synth[group].items() if k != "n"})

    def to_dict(self) -> dict:
        """Plain data for YAML (nested configurations as mappings, tuples as lists)."""
        plain = to_plain(self)
        if self.augment is None:
            plain["augment"] = {"enabled": False}
        return plain

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        d = dict(d)
        if isinstance(d.get("preprocess"), dict):
            d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        if isinstance(d.get("augment"), dict):
            augment = dict(d["augment"])
            d["augment"] = (None if augment.pop("enabled", True) is False
                            else _augment_class().from_dict(augment))
        config = from_plain(cls, d, what="training")
        config.synth = [dict(group) for group in config.synth]
        return config


TRAINING_PROFILES: dict[str, dict[str, Any]] = {
    # Minutes on 2 CPU cores: small synthetic heads, a 4 mm grid, a small network.
    "sample": {},
    # The shipped default model: domain-randomised synthetic heads on real scanners'
    # grids, a 4 mm model grid and a small network (both fast on a CPU: made here on 2
    # cores in under an hour, runs in a fraction of a second), no N4 (bias is learnt
    # by augmentation, and N4 would cost seconds per scan at inference). 100 epochs:
    # at 45 the validation Dice was still rising (0.957; 0.968 at 100).
    "default": {"synth": DOMAIN_SYNTH, "base_filters": 8, "depth": 4, "batch_size": 2,
                "epochs": 100, "steps_per_epoch": 12, "learning_rate": 3e-3,
                "preprocess": {"shape": [48, 64, 80], "spacing": 4.0, "n4": "none",
                               "normalization": "zscore"}},
    # NFBS on a GPU, the source article's grid and schedule (60 epochs x 16 steps x 4, or
    # fewer volumes a step when the GPU's free memory holds fewer).
    "full": {"synth": VARIED_SYNTH, "base_filters": 16, "depth": 4, "batch_size": 4,
             "auto_batch": True,
             "epochs": 60, "steps_per_epoch": 16, "learning_rate": 1e-3,
             "preprocess": {"shape": [96, 128, 160], "spacing": 2.0, "n4": "simpleitk",
                            "normalization": "zscore"}},
}


SPLIT_FILE = "split.csv"
"""The run's subject-level split (``subject,split``), kept in the run and beside its export."""
CHECKPOINTS = ("best.keras", "last.keras")
"""What a run keeps: the best validation Dice, and the last finished epoch."""

GPU_PROFILES = ("full",)
"""Profiles too large for a CPU: :func:`check_device` refuses them without a GPU."""

MEMORY_MARGIN = 2.0
"""How many times :func:`skullstrip_lib.model.training_memory`'s estimate a step may use.

The estimate counts the layer outputs kept for the backward pass; a framework
adds the activations' gradients, convolution workspaces and allocator slack.
On 2 CPU cores (TensorFlow 2.21) one step of the full network (16 filters,
depth 4) at 48x64x80 peaked at 1.1-1.3 times the estimate, and at 1.5-2.1
times with XLA, which Keras uses on a single GPU. A margin of 2 covers that;
the out-of-memory fallback of :func:`train` catches the rest.
"""

NO_GPU = ("no GPU: the {profile} profile needs one (on Colab: Runtime > Change runtime type > "
          "GPU); pass allow_cpu=True / --allow-cpu to train on the CPU anyway, slowly")


def _augment_class() -> type[AugmentConfig]:
    from .data import AugmentConfig  # imports TensorFlow: only when a configuration is made

    return AugmentConfig


def resolve_config(profile: str = "sample", **overrides: Any) -> TrainConfig:
    """A profile's configuration with some settings changed.

    Examples
    --------
    >>> resolve_config("sample", epochs=2).epochs
    2
    """
    if profile not in TRAINING_PROFILES:
        raise SkullstripError(f"unknown profile {profile!r} "
                              f"(choose from {', '.join(TRAINING_PROFILES)})")
    values = {**TRAINING_PROFILES[profile],
              **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict({"profile": profile, **values})


# --------------------------------------------------------------------------- data
def _synthetic_index(config: TrainConfig, cache: Path, progress: bool) -> pd.DataFrame:
    import pandas as pd

    from .datasets import index_dataset, split_subjects
    from .synth import write_nfbs_dataset

    frames = []
    for g, group in enumerate(config.synth):
        folder = cache / f"synth-{settings_key(group, config.synth_seed, g)}"
        write_nfbs_dataset(folder, int(group["n"]), seed=config.synth_seed + g,
                           progress=progress, **config.head_kwargs(g))
        frames.append(index_dataset(folder, seed=config.split_seed))
    index = pd.concat(frames, ignore_index=True)
    # One split over all groups, so that every group is in train, val and test.
    split = split_subjects(index["subject"], seed=config.split_seed)
    return index.assign(split=index["subject"].map(split))


def training_index(config: TrainConfig, *, progress: bool = True) -> pd.DataFrame:
    """The index (subjects, files, split) a configuration trains from.

    ``config.data`` read (an index CSV) or indexed with ``config.split_seed``
    (a data folder); or, without data, its synthetic heads, written under
    ``<data dir>/cache/`` if they are not there yet and split over all groups.
    The same index the TFRecords of :func:`prepare_data` are made from, so
    its ``val`` and ``test`` subjects are the run's.
    """
    from .datasets import get_data_dir, index_dataset, read_index

    if config.data is None:
        return _synthetic_index(config, get_data_dir() / "cache", progress)
    src = Path(config.data)
    return index_dataset(src, seed=config.split_seed) if src.is_dir() else read_index(src)


def prepare_data(config: TrainConfig, *, progress: bool = True) -> Path:
    """Make (or reuse) the TFRecords a configuration trains on.

    Synthetic heads (or the index in ``config.data``) are preprocessed with the
    nipype workflow and packed into TFRecords, all under
    ``<data dir>/cache/``, in folders keyed by a hash of their inputs.

    Returns
    -------
    pathlib.Path
        The folder with ``train.tfrecord``, ``val.tfrecord``, ``test.tfrecord``.
    """

    from .data import write_tfrecords
    from .datasets import get_data_dir
    from .workflow import run_preprocessing

    cache = get_data_dir() / "cache"
    index = training_index(config, progress=progress)
    key = settings_key(sorted(index[["subject", "t1w", "split"]].astype(str).values.tolist()),
                       config.preprocess, __version__)
    tf_dir = cache / f"tfrecords-{key}"
    if (tf_dir / "manifest.json").exists():
        return tf_dir
    prep_dir = cache / f"prep-{key}"
    report = run_preprocessing(index, prep_dir, config.preprocess,
                               plugin="MultiProc" if config.workers > 1 else "Linear",
                               workers=config.workers, progress=progress)
    failed = report[report["status"] == "failed"]
    if len(failed):
        raise SkullstripError(f"preprocessing failed for {len(failed)} subjects, e.g. "
                              f"{failed.iloc[0]['subject']}: {failed.iloc[0]['error']}")
    write_tfrecords(report, tf_dir, overwrite=True, progress=progress)
    return tf_dir


# --------------------------------------------------------------------------- devices
def _device_kind(name: str) -> str:
    import tensorflow as tf

    return tf.DeviceSpec.from_string(name).device_type


def _named_devices(names: Sequence[str]) -> list[str]:
    """``names`` as TensorFlow's logical device names; unknown ones are a :class:`DeviceError`."""
    import tensorflow as tf

    if isinstance(names, str) or not names:
        raise DeviceError(f"devices: give a list of devices such as ['/gpu:0', '/gpu:1'], "
                          f"not {names!r}")
    have = {}
    for device in tf.config.list_logical_devices():
        spec = tf.DeviceSpec.from_string(device.name)
        key = (spec.device_type, spec.device_index)
        have[key] = f"/device:{spec.device_type}:{spec.device_index}"
    found = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(str(name))
        except ValueError:
            spec = None
        key = (spec.device_type, spec.device_index) if spec is not None else None
        if key not in have:
            raise DeviceError(f"devices: {name!r} is not a device here (this machine has "
                              f"{', '.join(sorted(have.values()))})")
        found.append(have[key])
    if len(set(found)) < len(found):
        raise DeviceError(f"devices: {', '.join(map(str, names))} names a device twice")
    if len({_device_kind(d) for d in found}) > 1:
        raise DeviceError(f"devices: {', '.join(found)} mixes kinds of device (all GPUs or "
                          f"all CPUs)")
    return found


def check_device(config: TrainConfig, *, allow_cpu: bool = False) -> list[str]:
    """Check that this machine can train ``config``; return the devices it will train on.

    :func:`train` calls it before it writes anything or prepares data; a
    notebook calls it before :func:`prepare_data`, which takes many minutes
    on NFBS, so that a run without the device it needs fails at once.

    * A profile of :data:`GPU_PROFILES` (``full``) needs a GPU, unless
      ``allow_cpu``.
    * ``config.devices`` must name devices of this machine (one kind).
    * With several devices, ``config.batch_size`` must be a multiple of their
      number (every device gets the same share of a batch).

    With ``config.devices`` None only the physical devices are listed, which
    does not start TensorFlow's GPU runtime; named devices are checked against
    the logical ones, which does (logical devices must be configured before).

    Parameters
    ----------
    config : TrainConfig
        What to train.
    allow_cpu : bool
        Train a GPU profile on the CPU anyway (a rehearsal with small settings,
        or a patient user).

    Returns
    -------
    list of str
        The devices, e.g. ``['/device:GPU:0']``; ``['/device:CPU:0']`` without
        a GPU.

    Raises
    ------
    DeviceError
        No GPU for a GPU profile, an unknown device, or a batch that does not
        split evenly between the devices.

    Examples
    --------
    >>> check_device(resolve_config("sample", devices=["/cpu:0"]))
    ['/device:CPU:0']
    >>> check_device(resolve_config("full", devices=["/cpu:0"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.DeviceError: /device:CPU:0 is not a GPU: the full profile needs one; ...
    >>> check_device(resolve_config("full", devices=["/cpu:0"]), allow_cpu=True)
    ['/device:CPU:0']
    """
    import tensorflow as tf

    if config.devices is None:
        gpus = tf.config.list_physical_devices("GPU")
        devices = [f"/device:GPU:{i}" for i in range(len(gpus))] or ["/device:CPU:0"]
    else:
        devices = _named_devices(config.devices)
    if config.profile in GPU_PROFILES and _device_kind(devices[0]) != "GPU" and not allow_cpu:
        if config.devices is None:
            raise DeviceError(NO_GPU.format(profile=config.profile))
        raise DeviceError(f"{', '.join(devices)} is not a GPU: the {config.profile} profile "
                          f"needs one; pass allow_cpu=True / --allow-cpu to train on the CPU "
                          f"anyway, slowly")
    if len(devices) > 1 and config.batch_size % len(devices):
        raise DeviceError(f"batch_size {config.batch_size} does not split evenly over "
                          f"{len(devices)} devices ({', '.join(devices)}): use a multiple "
                          f"of {len(devices)}")
    return devices


def _strategy_and_precision(config: TrainConfig, devices: list[str]):
    import tensorflow as tf

    on_gpu = _device_kind(devices[0]) == "GPU"
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and on_gpu)
    if len(devices) > 1:
        # Several devices: copy the model to each and split every batch between them.
        strategy = tf.distribute.MirroredStrategy(devices)
    elif config.devices is not None:
        strategy = tf.distribute.OneDeviceStrategy(devices[0])
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, mixed


# --------------------------------------------------------------------------- GPU memory
def gpu_free_bytes(total_bytes: int, used_bytes: int, tf_in_use_bytes: int, *,
                   limit_bytes: int | None = None, pool_reserved: bool = False) -> int:
    """The memory a fit in this process can still use on one GPU, in bytes.

    TensorFlow normally reserves a pool of nearly all of a GPU's free memory at
    its first operation there (unless memory growth is on, or a memory limit
    is configured) and hands it out itself. ``nvidia-smi`` counts the whole
    pool as used. So:

    * with a configured limit, the pool is the limit: ``limit - in use``;
    * with a reserved pool of unknown size, the larger of ``total - used``
      (the pool is small) and ``used - in use`` (the pool is everything
      ``nvidia-smi`` counts as used: this assumes that no other process held
      memory when TensorFlow started, true of a Colab runtime; a guess too
      high by what others hold is caught by :func:`train`'s out-of-memory
      fallback);
    * with no pool reserved (memory growth, the asynchronous allocator, no GPU
      operation yet), what ``nvidia-smi`` calls free: ``total - used``.

    Parameters
    ----------
    total_bytes, used_bytes : int
        The GPU's memory and the memory in use, as ``nvidia-smi`` reports
        them (all processes), bytes.
    tf_in_use_bytes : int
        What TensorFlow in this process has handed out
        (``tf.config.experimental.get_memory_info(...)["current"]``), bytes.
    limit_bytes : int or None
        A memory limit configured for TensorFlow on this GPU, bytes.
    pool_reserved : bool
        Whether TensorFlow has reserved its pool (no memory growth, and it has
        allocated on the GPU).

    Returns
    -------
    int
        Free bytes, at least 0.

    Examples
    --------
    A 16 GB GPU before TensorFlow's first operation there, and after it (a pool
    of 15.5 GB, the model's weights 0.5 GB of it):

    >>> gpu_free_bytes(16 * 10**9, 10**9, 0)
    15000000000
    >>> gpu_free_bytes(16 * 10**9, 15_500_000_000, 500_000_000, pool_reserved=True)
    15000000000
    >>> gpu_free_bytes(16 * 10**9, 5 * 10**9, 500_000_000, limit_bytes=4 * 10**9)
    3500000000
    """
    if limit_bytes is not None:
        free = limit_bytes - tf_in_use_bytes
    elif pool_reserved:
        free = max(total_bytes - used_bytes, used_bytes - tf_in_use_bytes)
    else:
        free = total_bytes - used_bytes
    return max(int(free), 0)


def _nvidia_smi() -> list[tuple[int, str, int, int]] | None:
    """(index, uuid, total bytes, used bytes) of every GPU; None when nvidia-smi fails."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        rows = []
        for line in out.strip().splitlines():
            index, uuid, total, used = (part.strip() for part in line.split(","))
            rows.append((int(index), uuid, int(total) * 2**20, int(used) * 2**20))  # MiB
        return rows
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _visible(rows: list[tuple[int, str, int, int]]) -> list[tuple[int, str, int, int]] | None:
    """The rows of the GPUs TensorFlow sees, in its order (``CUDA_VISIBLE_DEVICES``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return rows
    chosen = []
    for token in filter(None, (t.strip() for t in visible.split(","))):
        match = [r for r in rows if str(r[0]) == token or r[1].startswith(token)]
        if len(match) != 1:
            return None  # a MIG slice, or a name nvidia-smi does not list
        chosen.append(match[0])
    return chosen


def _device_free_bytes(devices: list[str]) -> tuple[int | None, str]:
    """The least free memory over the GPUs in ``devices``, bytes, or None and why not.

    One logical device per GPU is assumed, numbered as TensorFlow numbers
    the visible GPUs.
    """
    import tensorflow as tf

    if _device_kind(devices[0]) != "GPU":
        return None, "no GPU to size it for"
    physical = tf.config.list_physical_devices("GPU")
    rows = _nvidia_smi()
    rows = _visible(rows) if rows is not None else None
    growth_everywhere = (os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() == "true"
                         or os.environ.get("TF_GPU_ALLOCATOR") == "cuda_malloc_async")
    free = []
    for device in devices:
        i = tf.DeviceSpec.from_string(device).device_index
        if i >= len(physical):
            return None, f"{device} is not one GPU (several logical devices per GPU)"
        info = tf.config.experimental.get_memory_info(f"GPU:{i}")
        limits = [c.memory_limit for c in (tf.config.get_logical_device_configuration(physical[i])
                                           or []) if c.memory_limit]
        if limits:  # a configured pool, in MiB
            free.append(gpu_free_bytes(0, 0, info["current"], limit_bytes=limits[0] * 2**20))
            continue
        if rows is None or i >= len(rows):
            return None, f"cannot read the memory of {device} (nvidia-smi missing or failed)"
        _, _, total, used = rows[i]
        growth = growth_everywhere or tf.config.experimental.get_memory_growth(physical[i])
        free.append(gpu_free_bytes(total, used, info["current"],
                                   pool_reserved=not growth and info["peak"] > 0))
    return min(free), ""


def fit_batch_size(free_bytes: float, per_volume_bytes: float, *, cap: int,
                   margin: float = MEMORY_MARGIN, fixed_bytes: float = 0,
                   replicas: int = 1) -> int:
    """The largest batch whose estimated training memory, times a margin, fits in free memory.

    Each device holds the weights, their gradients and the optimizer's state
    (``fixed_bytes``) and the activations of its share ``b`` of the batch;
    ``b`` is the largest with ``margin * (fixed_bytes + b * per_volume_bytes)
    <= free_bytes``. The batch is ``b * replicas``, at most ``cap``.

    Parameters
    ----------
    free_bytes : float
        Free memory of the device with the least, bytes (:func:`gpu_free_bytes`).
    per_volume_bytes : float
        Training activations of one volume, bytes
        (``training_memory(model, 1)["activations"]``).
    cap : int
        The most volumes a step may hold (the configured batch size), a
        multiple of ``replicas``.
    margin : float
        Factor on the estimate, at least 1 (:data:`MEMORY_MARGIN`).
    fixed_bytes : float
        Memory that does not grow with the batch, bytes (weights, gradients,
        optimizer state).
    replicas : int
        Devices the batch is split between.

    Returns
    -------
    int
        The global batch, a multiple of ``replicas``; 0 when not even one
        volume per device fits.

    Examples
    --------
    15 GB free, 1.8 GB of activations a volume and a margin of 2: three
    volumes fit (10.8 GB), four do not (14.4 GB plus the weights' 0.8 GB):

    >>> fit_batch_size(15e9, 1.8e9, cap=4, fixed_bytes=0.4e9)
    3
    >>> fit_batch_size(80e9, 1.8e9, cap=4, fixed_bytes=0.4e9)  # capped
    4
    >>> fit_batch_size(80e9, 1.8e9, cap=8, fixed_bytes=0.4e9, replicas=2)  # 2 GPUs
    8
    >>> fit_batch_size(3e9, 1.8e9, cap=4)
    0
    """
    if per_volume_bytes <= 0 or margin < 1 or cap < 1 or replicas < 1 or cap % replicas:
        raise ValueError(f"fit_batch_size: need per_volume_bytes > 0, margin >= 1, cap >= 1 "
                         f"a multiple of replicas >= 1; got {per_volume_bytes}, {margin}, "
                         f"{cap}, {replicas}")
    per_device = math.floor((free_bytes / margin - fixed_bytes) / per_volume_bytes)
    return max(0, min(per_device, cap // replicas)) * replicas


def _size(n_bytes: float) -> str:
    """Bytes in words: ``'12 MB'``, ``'15.0 GB'``."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def _choose_batch(config: TrainConfig, model, devices: list[str],
                  replicas: int) -> tuple[int, dict]:
    """The first attempt's batch, and how it was chosen (for ``summary.json``)."""
    choice = {"configured": config.batch_size, "auto_batch": config.auto_batch,
              "chosen_by": "config"}
    if not config.auto_batch:
        return config.batch_size, choice
    free, why_not = _device_free_bytes(devices)
    if free is None:
        choice["chosen_by"] = f"config ({why_not})"
        if _device_kind(devices[0]) == "GPU":
            print(f"batch {config.batch_size} as configured: {why_not}")
        return config.batch_size, choice
    from .model import training_memory

    memory = training_memory(model, 1)
    per_volume = memory["activations"]
    fixed = memory["total"] - per_volume
    batch = fit_batch_size(free, per_volume, cap=config.batch_size, margin=MEMORY_MARGIN,
                           fixed_bytes=fixed, replicas=replicas)
    where = ", ".join(devices)
    if batch == 0:
        raise DeviceError(f"{_size(free)} free on {where}, and one "
                          f"{'x'.join(map(str, config.preprocess.shape))} volume needs about "
                          f"{_size(MEMORY_MARGIN * (fixed + per_volume))} to train (estimate x "
                          f"{MEMORY_MARGIN:g}): free the GPU, use a smaller grid or fewer "
                          f"base_filters, or set auto_batch=False (--fixed-batch) to try anyway")
    print(f"batch {batch} (at most {config.batch_size}): {_size(free)} free on {where}, "
          f"about {_size(MEMORY_MARGIN * per_volume)} a volume (estimate x {MEMORY_MARGIN:g})")
    choice.update(chosen_by="gpu memory", free_bytes=int(free), per_volume_bytes=per_volume,
                  fixed_bytes=fixed, margin=MEMORY_MARGIN)
    return batch, choice


# --------------------------------------------------------------------------- the fit
@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``name`` inside the block, restored after it.

    Keras keeps the policy in a global that every layer built later reads; a
    training run that set ``mixed_float16`` and left it would make the next
    model in the same process (a notebook's, a test's) half precision too.

    Examples
    --------
    >>> import keras
    >>> with precision_policy("mixed_float16"):
    ...     inside = keras.mixed_precision.global_policy().name
    >>> inside, keras.mixed_precision.global_policy().name
    ('mixed_float16', 'float32')
    """
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def compile_for_training(model, config: TrainConfig, *, loss: Callable | None = None,
                         steps_per_epoch: int | None = None):
    """Compile ``model`` the way :func:`train` fits: Adam, cosine decay, Dice and IoU.

    The learning rate starts at ``config.learning_rate`` and decays along a
    cosine to 5 % of it over the run (``epochs * steps_per_epoch`` steps).

    Parameters
    ----------
    model : keras.Model
        A network with one sigmoid output.
    config : TrainConfig
        Gives the learning rate, the schedule's length and the loss.
    loss : callable, optional
        Instead of ``config.loss`` (the book's ablation trains with the source
        article's focal loss).
    steps_per_epoch : int, optional
        The steps an epoch really takes, when not ``config.steps_per_epoch``
        (a smaller batch than configured takes more: :func:`epoch_steps`).

    Returns
    -------
    keras.Model
        ``model``, compiled.
    """
    import keras

    from .losses import DiceScore, IoUScore, get_loss

    total = config.epochs * (steps_per_epoch or config.steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=loss if loss is not None else get_loss(config.loss),
                  metrics=[DiceScore(), IoUScore()])
    return model


def build_network(config: TrainConfig, *, block: Callable | None = None):
    """The U-Net a configuration trains: its grid, filters, depth, dropout and norm.

    ``block`` is passed to :func:`skullstrip_lib.model.build_unet` (its
    residual block by default; the book's ablation passes the source article's).
    """
    from .model import build_unet

    return build_unet((*config.preprocess.shape, 1), base_filters=config.base_filters,
                      depth=config.depth, dropout=config.dropout, norm=config.norm, block=block)


def computes_in_float32(model) -> bool:
    """Whether every layer of ``model`` computes in float32 (what ONNX export needs).

    The model's own ``dtype_policy`` is no guide: a ``.keras`` checkpoint saved
    under ``mixed_float16`` loads with a model-level policy that reads
    ``float32`` while its layers still compute in float16.

    Examples
    --------
    >>> import keras
    >>> from skullstrip_lib.model import build_unet
    >>> with precision_policy("mixed_float16"):
    ...     mixed = build_unet((8, 8, 8, 1), base_filters=2, depth=1)
    >>> computes_in_float32(mixed), computes_in_float32(build_unet((8, 8, 8, 1), depth=1))
    (False, True)
    """
    return all(layer.compute_dtype == "float32" for layer in model.layers)


def epoch_steps(config: TrainConfig, batch: int) -> int:
    """Steps of an epoch at ``batch`` volumes a step: as many volumes as the configuration's.

    ``config.steps_per_epoch`` steps of ``config.batch_size`` volumes make an
    epoch. When the batch is smaller (chosen for the GPU's memory, or halved
    after running out of it) an epoch takes more steps, so that it still sees
    as many volumes (rounded up).

    Examples
    --------
    >>> config = resolve_config("full")  # 16 steps of 4 volumes
    >>> epoch_steps(config, 4), epoch_steps(config, 2), epoch_steps(config, 3)
    (16, 32, 22)
    """
    return math.ceil(config.steps_per_epoch * config.batch_size / batch)


def read_config(path: str | os.PathLike) -> TrainConfig:
    """Read a run's ``config.yaml`` safely; every problem is one line naming the file.

    ``yaml.safe_load`` builds plain data only: a ``!!python/object`` tag is
    refused, never executed.

    Raises
    ------
    MissingFileError
        No such file.
    InvalidInputError
        Not YAML (or a tag safe loading refuses), not a mapping, an unknown
        setting or a bad value (the setting is named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise InvalidInputError(path, "not a YAML file (not UTF-8 text)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InvalidInputError(path, f"not a valid run configuration: YAML error{where}: "
                                      f"{' '.join(str(problem).split())}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(path, f"not a run configuration (a YAML mapping of settings), "
                                      f"got {type(data).__name__}")
    try:
        return TrainConfig.from_dict(data)
    except (SkullstripError, ValueError, TypeError) as exc:
        raise InvalidInputError(path, " ".join(str(exc).split())) from None


def _read_config(run_dir: Path) -> TrainConfig:
    return read_config(run_dir / "config.yaml")


def _load_checkpoint(path: Path):
    """A run's checkpoint, read by Keras; a file that is not one is named in one line."""
    import keras

    check_keras_file(path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        first = " ".join(str(exc).split())[:200]
        raise InvalidInputError(path, f"not a Keras model file Keras can read ({first})") from None


def _check_data(config: TrainConfig) -> None:
    """Read the index (or index the folder) a run trains on: before its folder is made."""
    if config.data is not None:
        training_index(config, progress=False)


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

    from .data import make_dataset

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
    from .data import make_dataset, read_manifest

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


def _run_callbacks(run_dir: Path) -> list:
    """The run's own callbacks, new for every attempt of a fit (a resumed or a retried one)."""
    import keras

    # The best validation Dice so far, so that a continued run replaces best.keras only
    # with a better epoch (not with its first one).
    best = [row["val_dice"] for row in _finished_epochs(run_dir)
            if "val_dice" in row and not math.isnan(row["val_dice"])]
    threshold = max(best) if best and (run_dir / "best.keras").exists() else None
    return [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
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
                          validation_data=val_ds, callbacks=[*_run_callbacks(run_dir), *callbacks],
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


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
               checkpoint: str = "best.keras", overwrite: bool = True,
               tta: str = "flip_lr") -> Path:
    """Export a run's checkpoint to ONNX with the description inference needs.

    Parameters
    ----------
    run_dir : path-like
        A training run.
    out_dir : path-like, optional
        Where ``model.onnx`` and ``model.json`` go; ``run_dir/export`` by default.
    checkpoint : str
        ``best.keras`` or ``last.keras``.
    overwrite : bool
        Replace an existing export.
    tta : {"flip_lr", "none"}
        Test-time augmentation inference will use
        (:class:`skullstrip_lib.inference.BrainModel`). Training flips heads
        left-right, so the mirror image is in the network's domain.

    Returns
    -------
    pathlib.Path
        ``out_dir``. Its threshold is 0.5 until calibrated
        (:func:`skullstrip_lib.evaluate.calibrate_threshold`).
    """
    import pandas as pd

    from .model import describe_model, export_onnx

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    if (out_dir / "model.onnx").exists() and not overwrite:
        raise SkullstripError(f"{out_dir}: already holds a model (use overwrite)")
    config = _read_config(run_dir)
    model = _load_checkpoint(run_dir / checkpoint)
    if not computes_in_float32(model):  # trained in mixed precision: export in float32
        weights = model.get_weights()  # float32 master weights (Keras keeps them so)
        with precision_policy("float32"):
            model = build_network(config)
        model.set_weights(weights)
    log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else None
    best = (log.loc[log["val_dice"].idxmax()].to_dict()
            if log is not None and "val_dice" in log else {})
    with atomic_path(out_dir / "model.onnx", overwrite=True) as tmp:
        # Norm layers average in float32 differently in the two runtimes: ~1e-4 on a 4 mm
        # grid, ~4e-3 at 2 mm; masks agree (tests/test_inference.py checks it).
        export_onnx(model, tmp, atol=1e-2)
    meta = {
        "format": 1,
        "preprocess": config.preprocess.to_dict(),
        "threshold": 0.5,
        "tta": tta,
        "network": {k: v for k, v in describe_model(model, config.preprocess.spacing).items()
                    if k != "input_shape"},
        "training": {"profile": config.profile, "epochs": len(log) if log is not None else 0,
                     "best_epoch": {k: float(v) for k, v in best.items()},
                     "seed": config.seed, "library_version": __version__},
        "checkpoint": checkpoint,
    }
    atomic_write_text(out_dir / "model.json", json.dumps(meta, indent=1, default=str))
    atomic_write_text(out_dir / "config.yaml", (run_dir / "config.yaml").read_text())
    if (run_dir / SPLIT_FILE).is_file():  # the subjects it trained, validated and was tested on
        atomic_write_text(out_dir / SPLIT_FILE, (run_dir / SPLIT_FILE).read_text())
    return out_dir


def _write_split(tf_dir: Path, path: Path) -> None:
    """The subject-level split of the data a run trains on, as ``subject,split`` rows.

    Stored with the run (and its export) so that an evaluation can never score
    a subject the model was trained on, whatever split it would compute itself
    (:func:`skullstrip_lib.evaluate.training_split`).
    """
    from .data import read_manifest

    subjects = read_manifest(tf_dir)["subjects"]
    rows = "".join(f"{s},{split}\n" for split, names in subjects.items() for s in names)
    atomic_write_text(path, "subject,split\n" + rows)




