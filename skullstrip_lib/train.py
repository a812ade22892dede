"""Training runs: data preparation, the fit itself, checkpoints, export.

A run is a folder::

    runs/NAME/
      config.yaml        the resolved configuration (profile + overrides)
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
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import __version__
from .errors import SkullstripError
from .io import as_tuples, atomic_path, atomic_write_text, from_plain, settings_key, to_plain
from .preprocess import PreprocessConfig

if TYPE_CHECKING:  # TensorFlow and pandas are imported when they are used
    import pandas as pd

    from .data import AugmentConfig

__all__ = [
    "TRAINING_PROFILES",
    "TrainConfig",
    "export_run",
    "prepare_data",
    "resolve_config",
    "train",
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
        ``"dice"`` or ``"dice_bce"``.
    augment : AugmentConfig or None
        The augmentation (:class:`skullstrip_lib.data.AugmentConfig`); None for
        none (``augment: {enabled: false}`` in YAML).
    seed : int
        Fixes initialisation, data order and augmentation.
    mixed_precision : str
        ``"auto"`` (on when a GPU is present), ``"on"`` or ``"off"``.
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
    # The shipped default model: varied synthetic heads on NFBS-like grids, a 4 mm
    # model grid and a small network (both fast on a CPU: trained here on 2 cores in
    # about half an hour, runs in a fraction of a second), no N4 (bias is learnt by
    # augmentation, and N4 would cost 5 s per scan at inference).
    "default": {"synth": VARIED_SYNTH, "base_filters": 8, "depth": 4, "batch_size": 2,
                "epochs": 30, "steps_per_epoch": 12, "learning_rate": 3e-3,
                "preprocess": {"shape": [48, 64, 80], "spacing": 4.0, "n4": "none",
                               "normalization": "zscore"}},
    # NFBS on a GPU, the source article's grid and schedule (60 epochs x 16 steps x 4).
    "full": {"synth": VARIED_SYNTH, "base_filters": 16, "depth": 4, "batch_size": 4,
             "epochs": 60, "steps_per_epoch": 16, "learning_rate": 1e-3,
             "preprocess": {"shape": [96, 128, 160], "spacing": 2.0, "n4": "simpleitk",
                            "normalization": "zscore"}},
}


CHECKPOINTS = ("best.keras", "last.keras")
"""What a run keeps: the best validation Dice, and the last finished epoch."""


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
    from .datasets import get_data_dir, index_dataset, read_index
    from .workflow import run_preprocessing

    cache = get_data_dir() / "cache"
    if config.data is None:
        index = _synthetic_index(config, cache, progress)
    else:
        src = Path(config.data)
        index = index_dataset(src, seed=config.split_seed) if src.is_dir() else read_index(src)
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


def _strategy_and_precision(config: TrainConfig):
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and bool(gpus))
    # Several GPUs: copy the model to each and split every batch between them.
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, mixed, len(gpus)


def _build_and_compile(config: TrainConfig):
    import keras

    from .losses import DiceScore, IoUScore, get_loss
    from .model import build_unet

    model = build_unet((*config.preprocess.shape, 1), base_filters=config.base_filters,
                       depth=config.depth, dropout=config.dropout, norm=config.norm)
    total = config.epochs * config.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=get_loss(config.loss),
                  metrics=[DiceScore(), IoUScore()])
    return model


def _read_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True, callbacks: Sequence = ()) -> Path:
    """Train a model; write checkpoints, logs and an exported model in ``run_dir``.

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
        Progress bars and Keras' per-epoch lines.
    callbacks : sequence of keras.callbacks.Callback
        More callbacks for ``model.fit``, after the run's own (backup,
        CSV log, TensorBoard, checkpoints).

    Returns
    -------
    pathlib.Path
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise SkullstripError(f"{run_dir}: no run to resume (config.yaml missing)")
        config = _read_config(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SkullstripError(f"{run_dir}: already exists (choose another name, or --resume)")
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_dir = prepare_data(config, progress=progress)

    import keras

    from .data import make_dataset

    keras.utils.set_random_seed(config.seed)  # initialisation, dropout, data order
    strategy, mixed, n_gpus = _strategy_and_precision(config)
    train_ds = make_dataset(tf_dir, "train", batch_size=config.batch_size, shuffle=True,
                            augment_config=config.augment, seed=config.seed, repeat=True)
    val_ds = make_dataset(tf_dir, "val", batch_size=1, shuffle=False)
    with precision_policy("mixed_float16" if mixed else "float32"):
        with strategy.scope():
            model = _build_and_compile(config)
        own = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
            keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_dice",
                                            mode="max", save_best_only=True),
            keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
        ]
        start = time.perf_counter()
        model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                  validation_data=val_ds, callbacks=[*own, *callbacks],
                  verbose=2 if progress else 0)
        seconds = time.perf_counter() - start
    summary = {"seconds": round(seconds, 1), "mixed_precision": mixed, "gpus": n_gpus,
               "data": str(tf_dir)}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
    export_run(run_dir)
    return run_dir


def export_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
               checkpoint: str = "best.keras", overwrite: bool = True) -> Path:
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

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    import keras
    import pandas as pd

    from .model import describe_model, export_onnx

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    if (out_dir / "model.onnx").exists() and not overwrite:
        raise SkullstripError(f"{out_dir}: already holds a model (use overwrite)")
    config = _read_config(run_dir)
    model = keras.saving.load_model(run_dir / checkpoint, compile=False)
    if model.dtype_policy.name != "float32":  # export in float32 whatever the training policy
        weights = model.get_weights()
        with precision_policy("float32"):
            model = _build_and_compile(config)
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
        "network": {k: v for k, v in describe_model(model, config.preprocess.spacing).items()
                    if k != "input_shape"},
        "training": {"profile": config.profile, "epochs": len(log) if log is not None else 0,
                     "best_epoch": {k: float(v) for k, v in best.items()},
                     "seed": config.seed, "library_version": __version__},
        "checkpoint": checkpoint,
    }
    atomic_write_text(out_dir / "model.json", json.dumps(meta, indent=1, default=str))
    atomic_write_text(out_dir / "config.yaml", (run_dir / "config.yaml").read_text())
    return out_dir




