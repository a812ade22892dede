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

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from . import __version__
from .errors import SkullstripError
from .preprocess import PreprocessConfig

__all__ = [
    "PROFILES",
    "TrainConfig",
    "adam_first_step",
    "compare_losses",
    "describe_run",
    "export_run",
    "learning_rate_sweep",
    "prepare_data",
    "score_on_grid",
    "toy_ball",
    "toy_volumes",
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
    preprocess : dict
        :class:`~skullstrip_lib.preprocess.PreprocessConfig` fields (model grid, N4, ...).
    base_filters, depth, dropout, norm
        The network (:func:`skullstrip_lib.model.build_unet`).
    batch_size, epochs, steps_per_epoch, learning_rate, loss
        The fit: Adam with cosine decay from ``learning_rate``; ``loss`` is
        ``"dice"`` or ``"dice_bce"``.
    augment : dict
        :class:`skullstrip_lib.data.AugmentConfig` fields, or ``{"enabled": False}``.
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
    preprocess: dict = field(default_factory=lambda: {
        "shape": [48, 64, 80], "spacing": 4.0, "n4": "none", "normalization": "zscore"})
    base_filters: int = 8
    depth: int = 3
    dropout: float = 0.1
    norm: str | None = "instance"
    batch_size: int = 2
    epochs: int = 8
    steps_per_epoch: int = 10
    learning_rate: float = 2e-3
    loss: str = "dice_bce"
    augment: dict = field(default_factory=dict)
    seed: int = 0
    mixed_precision: str = "auto"
    workers: int = 2

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing as a :class:`PreprocessConfig`."""
        return PreprocessConfig.from_dict(self.preprocess)

    def to_dict(self) -> dict:
        """Plain data for YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SkullstripError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**d)


PROFILES: dict[str, dict[str, Any]] = {
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


def resolve_config(profile: str = "sample", **overrides: Any) -> TrainConfig:
    """A profile's configuration with some settings changed.

    Examples
    --------
    >>> resolve_config("sample", epochs=2).epochs
    2
    """
    if profile not in PROFILES:
        raise SkullstripError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig.from_dict({"profile": profile, **values})


# --------------------------------------------------------------------------- data
def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _synthetic_index(config: TrainConfig, cache: Path, progress: bool) -> pd.DataFrame:
    from .datasets import index_dataset, split_subjects
    from .synth import write_nfbs_dataset

    frames = []
    for g, group in enumerate(config.synth):
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in group.items() if k != "n"}
        folder = cache / f"synth-{_key(group, config.synth_seed, g)}"
        write_nfbs_dataset(folder, int(group["n"]), seed=config.synth_seed + g,
                           progress=progress, **kwargs)
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
    key = _key(sorted(index[["subject", "t1w", "split"]].astype(str).values.tolist()),
               config.preprocess, __version__)
    tf_dir = cache / f"tfrecords-{key}"
    if (tf_dir / "manifest.json").exists():
        return tf_dir
    prep_dir = cache / f"prep-{key}"
    report = run_preprocessing(index, prep_dir, config.preprocess_config(),
                               plugin="MultiProc" if config.workers > 1 else "Linear",
                               workers=config.workers, progress=progress)
    failed = report[report["status"] == "failed"]
    if len(failed):
        raise SkullstripError(f"preprocessing failed for {len(failed)} subjects, e.g. "
                              f"{failed.iloc[0]['subject']}: {failed.iloc[0]['error']}")
    write_tfrecords(report, tf_dir, overwrite=True, progress=progress)
    return tf_dir


# --------------------------------------------------------------------------- the fit
def _stop_after(epoch: int):
    """A callback that stops the run after ``epoch``, as if it were killed (for tests)."""
    import keras

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e + 1 >= epoch:
                raise KeyboardInterrupt(f"stopped after epoch {epoch}")

    return StopAfter()


def _strategy_and_precision(config: TrainConfig):
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    # Several GPUs: copy the model to each and split every batch between them.
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, bool(mixed), len(gpus)


def _build_and_compile(config: TrainConfig):
    import keras

    from .losses import DiceScore, IoUScore, get_loss
    from .model import build_unet

    pre = config.preprocess_config()
    model = build_unet((*pre.shape, 1), base_filters=config.base_filters, depth=config.depth,
                       dropout=config.dropout, norm=config.norm)
    total = config.epochs * config.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=get_loss(config.loss),
                  metrics=[DiceScore(), IoUScore()])
    return model


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True, stop_after_epoch: int | None = None) -> Path:
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
    stop_after_epoch : int, optional
        Stop (as if killed) after this epoch; for tests and demonstrations.

    Returns
    -------
    pathlib.Path
        ``run_dir``.
    """
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise SkullstripError(f"{run_dir}: no run to resume (config.yaml missing)")
        config = TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SkullstripError(f"{run_dir}: already exists (choose another name, or --resume)")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf_dir = prepare_data(config, progress=progress)

    import keras

    from .data import AugmentConfig, make_dataset

    keras.utils.set_random_seed(config.seed)  # initialisation, dropout, data order
    strategy, mixed, n_gpus = _strategy_and_precision(config)
    augment = (None if config.augment.get("enabled", True) is False
               else AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in config.augment.items() if k != "enabled"}))
    train_ds = make_dataset(tf_dir, "train", batch_size=config.batch_size, shuffle=True,
                            augment_config=augment, seed=config.seed, repeat=True)
    val_ds = make_dataset(tf_dir, "val", batch_size=1, shuffle=False)
    with strategy.scope():
        model = _build_and_compile(config)

    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        keras.callbacks.ModelCheckpoint(str(run_dir / "best.keras"), monitor="val_dice",
                                        mode="max", save_best_only=True),
        keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
    ]
    if stop_after_epoch is not None:
        callbacks.append(_stop_after(stop_after_epoch))
    start = time.perf_counter()
    model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
              validation_data=val_ds, callbacks=callbacks, verbose=2 if progress else 0)
    seconds = time.perf_counter() - start
    summary = {"seconds": round(seconds, 1), "mixed_precision": mixed, "gpus": n_gpus,
               "data": str(tf_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
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

    from .model import describe_model, export_onnx

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "export"
    if (out_dir / "model.onnx").exists() and not overwrite:
        raise SkullstripError(f"{out_dir}: already holds a model (use overwrite)")
    config = TrainConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    model = keras.saving.load_model(run_dir / checkpoint, compile=False)
    if model.dtype_policy.name != "float32":  # export in float32 whatever the training policy
        keras.mixed_precision.set_global_policy("float32")
        weights = model.get_weights()
        model = _build_and_compile(config)
        model.set_weights(weights)
    log = pd.read_csv(run_dir / "log.csv") if (run_dir / "log.csv").exists() else None
    best = (log.loc[log["val_dice"].idxmax()].to_dict()
            if log is not None and "val_dice" in log else {})
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.onnx.tmp"
    # Norm layers average in float32 differently in the two runtimes: ~1e-4 on a 4 mm
    # grid, ~4e-3 at 2 mm; masks agree (tests/test_inference.py checks it).
    export_onnx(model, tmp, atol=1e-2)
    os.replace(tmp, out_dir / "model.onnx")
    meta = {
        "format": 1,
        "preprocess": config.preprocess,
        "threshold": 0.5,
        "network": {k: v for k, v in describe_model(model, config.preprocess["spacing"]).items()
                    if k != "input_shape"},
        "training": {"profile": config.profile, "epochs": len(log) if log is not None else 0,
                     "best_epoch": {k: float(v) for k, v in best.items()},
                     "seed": config.seed, "library_version": __version__},
        "checkpoint": checkpoint,
    }
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1, default=str))
    shutil.copy2(run_dir / "config.yaml", out_dir / "config.yaml")
    return out_dir


# --------------------------------------------------------------------------- teaching helpers
RUN_FILES = {
    "config.yaml": "the resolved configuration: what was trained, to redo or resume it",
    "log.csv": "one row per epoch: loss, Dice, IoU on training and validation batches",
    "summary.json": "wall time, mixed precision, GPUs, the TFRecords used",
    "best.keras": "the checkpoint with the best validation Dice (exported by default)",
    "last.keras": "the checkpoint after the last finished epoch",
    "backup": "BackupAndRestore's state (weights, optimizer, epoch): what --resume reads",
    "tensorboard": "TensorBoard event files (tensorboard --logdir RUN)",
    "export": "model.onnx + model.json (+ config.yaml): what predict and evaluate load",
}


def describe_run(run_dir: str | os.PathLike) -> pd.DataFrame:
    """What a training run's folder holds, one row per top-level entry.

    Parameters
    ----------
    run_dir : path-like
        A run folder written by :func:`train`.

    Returns
    -------
    pandas.DataFrame
        Columns ``entry`` (name, with a trailing ``/`` for folders), ``files``
        (int, files inside, 1 for a file), ``kB`` (float, total size in
        kilobytes of 1000 bytes) and ``what`` (str, its role; empty for an
        entry this module does not write), sorted by name.

    Raises
    ------
    SkullstripError
        ``run_dir`` is not a folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SkullstripError(f"{run_dir}: not a run folder")
    rows = []
    for entry in sorted(run_dir.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        rows.append({"entry": entry.name + ("/" if entry.is_dir() else ""),
                     "files": len(files),
                     "kB": round(sum(p.stat().st_size for p in files) / 1000, 1),
                     "what": RUN_FILES.get(entry.name, "")})
    return pd.DataFrame(rows, columns=["entry", "files", "kB", "what"])


def toy_ball(shape: tuple[int, int, int] = (64, 64, 64), fraction: float = 0.1):
    """A centred ball filling about ``fraction`` of a volume: a toy "brain" mask.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid in voxels.
    fraction : float
        Wanted share of the voxels inside the ball, in (0, 0.5]; the ball's
        radius is ``(3 fraction N / 4 pi)^(1/3)`` for ``N`` voxels, so the share
        reached is close to, not exactly, ``fraction``.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``shape``.

    Examples
    --------
    >>> round(float(toy_ball((64, 64, 64), 0.1).mean()), 2)
    0.1
    """
    import numpy as np

    from .metrics import sphere

    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}")
    n = int(np.prod(shape))
    radius = (3 * fraction * n / (4 * np.pi)) ** (1 / 3)
    return sphere(shape, (np.asarray(shape, float) - 1) / 2, radius)


def compare_losses(y_true, predictions: dict, *, focal_alpha: float = 0.25,
                   focal_gamma: float = 2.0) -> pd.DataFrame:
    """Score several predictions of one mask with accuracy, BCE, focal loss and Dice.

    For the book's argument that accuracy and voxel-wise losses reward
    "everything is background" when the brain is a small part of the volume,
    while the Dice loss does not.

    * ``accuracy``: share of voxels right after thresholding at 0.5;
    * ``bce``: binary cross-entropy, mean over voxels (probabilities clipped to
      ``[1e-7, 1 - 1e-7]``, as Keras does);
    * ``focal``: focal loss, mean over voxels, ``-a_t (1 - p_t)^g log p_t``
      with ``p_t`` the probability given to the true class, ``a_t = alpha`` on
      brain and ``1 - alpha`` on background (the loss the source article
      trained with);
    * ``dice_loss``: :func:`skullstrip_lib.losses.soft_dice_loss`, the loss
      this book trains with (plus BCE);
    * ``dice``: :func:`skullstrip_lib.metrics.dice` of the thresholded mask.

    Parameters
    ----------
    y_true : numpy.ndarray
        Reference mask, 0/1 or bool, any shape (one volume).
    predictions : dict
        Name -> probabilities of the same shape, in [0, 1].
    focal_alpha, focal_gamma : float
        The focal loss's weights (0.25 and 2 are the usual defaults).

    Returns
    -------
    pandas.DataFrame
        Index: the names; columns ``accuracy``, ``bce``, ``focal``,
        ``dice_loss``, ``dice`` (floats). Lower is better for the three losses,
        higher for accuracy and Dice.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([1, 0, 0, 0])
    >>> compare_losses(t, {"none": np.zeros(4)}).loc["none", ["accuracy", "dice"]].tolist()
    [0.75, 0.0]
    """
    import numpy as np

    from .losses import soft_dice_loss
    from .metrics import dice

    t = np.asarray(y_true).astype(np.float32)
    rows = {}
    for name, p in predictions.items():
        p = np.asarray(p, np.float32)
        if p.shape != t.shape:
            raise ValueError(f"prediction {name!r} has shape {p.shape}, the mask {t.shape}")
        q = np.clip(p, 1e-7, 1 - 1e-7)
        p_t = np.where(t > 0.5, q, 1 - q)
        a_t = np.where(t > 0.5, focal_alpha, 1 - focal_alpha)
        rows[name] = {
            "accuracy": float(np.mean((p > 0.5) == (t > 0.5))),
            "bce": float(np.mean(-np.log(p_t))),
            "focal": float(np.mean(-a_t * (1 - p_t) ** focal_gamma * np.log(p_t))),
            "dice_loss": float(np.asarray(soft_dice_loss(t[None, ..., None],
                                                         p[None, ..., None]))[0]),
            "dice": float(dice(p > 0.5, t > 0.5)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def toy_volumes(n: int, size: int = 16, seed: int = 0):
    """Toy segmentation data: a bright ellipsoid of random centre and radii in noise.

    Parameters
    ----------
    n : int
        Number of volumes.
    size : int
        Voxels along each axis (>= 12).
    seed : int
        Random seed.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Images and masks, float32, shape ``(n, size, size, size, 1)``; the image
        is the mask plus Gaussian noise of standard deviation 0.3.
    """
    import numpy as np

    if size < 12:
        raise ValueError(f"size must be >= 12, got {size}")
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), axis=-1)
    x = np.empty((n, size, size, size, 1), np.float32)
    y = np.empty_like(x)
    for i in range(n):
        centre = rng.uniform(6, size - 6, 3)
        radii = rng.uniform(3, 5, 3)
        mask = (((grid - centre) / radii) ** 2).sum(-1) <= 1
        y[i, ..., 0] = mask
        x[i, ..., 0] = mask + 0.3 * rng.standard_normal(mask.shape)
    return x, y


def _restart(model, weights, rate: float) -> None:
    """Back to ``weights`` with a fresh Adam state (step 0, zero moments) at ``rate``."""
    import numpy as np

    model.set_weights(weights)
    for variable in model.optimizer.variables:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    model.optimizer.learning_rate = float(rate)


def learning_rate_sweep(rates=(1e-3, 1e-2, 1e-1), *, epochs: int = 40, n: int = 4,
                        size: int = 16, loss: str = "dice_bce", seed: int = 0) -> pd.DataFrame:
    """Train a tiny U-Net on :func:`toy_volumes` with Adam at several learning rates.

    Each rate starts from the same initial weights and sees the same data
    (the whole set as one batch, every epoch), with a constant learning rate,
    so that only the rate differs. Small enough for a CPU (seconds per rate).

    Parameters
    ----------
    rates : sequence of float
        Adam learning rates.
    epochs : int
        Full-batch steps per rate.
    n, size : int
        Toy volumes and their size (see :func:`toy_volumes`).
    loss : {"dice", "dice_bce"}
        The loss.
    seed : int
        Seed of the data and of the initial weights.

    Returns
    -------
    pandas.DataFrame
        Columns ``learning_rate``, ``epoch`` (0-based), ``loss`` and ``dice``
        (training Dice of the thresholded masks), one row per rate and epoch.
    """
    import keras

    from .losses import DiceScore, get_loss
    from .model import build_unet

    x, y = toy_volumes(n, size, seed)
    keras.utils.set_random_seed(seed)
    model = build_unet((size, size, size, 1), base_filters=4, depth=2, dropout=0.0)
    initial = model.get_weights()
    # Compiled once (tracing a U-Net costs seconds); each rate restarts Adam from scratch.
    model.compile(optimizer=keras.optimizers.Adam(), loss=get_loss(loss), metrics=[DiceScore()])
    frames = []
    for rate in rates:
        _restart(model, initial, rate)
        history = model.fit(x, y, batch_size=n, epochs=epochs, shuffle=False, verbose=0).history
        frames.append(pd.DataFrame({"learning_rate": float(rate), "epoch": range(epochs),
                                    "loss": history["loss"], "dice": history["dice"]}))
    return pd.concat(frames, ignore_index=True)


def adam_first_step(rates=(1e-3, 1e-2, 1e-1), *, n: int = 2, size: int = 16,
                    loss: str = "dice_bce", seed: int = 0) -> pd.DataFrame:
    """How far one Adam step moves each convolution kernel, relative to its size.

    A tiny U-Net (as in :func:`learning_rate_sweep`) takes one training step on
    :func:`toy_volumes` from the same initial weights at each rate. Adam
    divides the gradient by its own running magnitude, so its first step moves
    every weight by about the learning rate, whatever the gradient's scale
    (Kingma & Ba, 2015); a 3x3x3 kernel's initial weights are a few hundredths.
    The ratio says how much of the kernel one step replaces.

    Parameters
    ----------
    rates : sequence of float
        Adam learning rates.
    n, size : int
        Toy volumes and their size (see :func:`toy_volumes`).
    loss : {"dice", "dice_bce"}
        The loss.
    seed : int
        Seed of the data and of the initial weights.

    Returns
    -------
    pandas.DataFrame
        One row per rate and convolution layer: ``learning_rate``, ``layer``,
        ``weight_rms`` (root mean square of the initial kernel), ``step_rms``
        (of the change made by the step) and ``ratio`` (``step_rms /
        weight_rms``).
    """
    import keras
    import numpy as np

    from .losses import get_loss
    from .model import build_unet

    x, y = toy_volumes(n, size, seed)
    keras.utils.set_random_seed(seed)
    model = build_unet((size, size, size, 1), base_filters=4, depth=2, dropout=0.0)
    initial = model.get_weights()
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv3D)]
    before = {layer.name: np.array(layer.kernel) for layer in convs}
    model.compile(optimizer=keras.optimizers.Adam(), loss=get_loss(loss))
    rows = []
    for rate in rates:
        _restart(model, initial, rate)
        model.train_on_batch(x, y)
        for layer in convs:
            w0 = before[layer.name]
            w0_rms = float(np.sqrt(np.mean(w0**2)))
            step_rms = float(np.sqrt(np.mean((np.array(layer.kernel) - w0) ** 2)))
            rows.append({"learning_rate": float(rate), "layer": layer.name,
                         "weight_rms": w0_rms, "step_rms": step_rms,
                         "ratio": step_rms / w0_rms})
    return pd.DataFrame(rows)


def score_on_grid(models: dict, tfrecord_dir: str | os.PathLike,
                  split: str = "val") -> pd.DataFrame:
    """Dice of several models on the preprocessed volumes of one split, on the model grid.

    A quick comparison during development: each volume of the TFRecords is
    given to each model as it is (no native-space round trip, no
    post-processing), the probabilities thresholded at the model's threshold
    and compared with the stored mask. For the scores that count, in each
    scan's own space, use :func:`skullstrip_lib.evaluate.evaluate`.

    Parameters
    ----------
    models : dict
        Name -> :class:`skullstrip_lib.inference.BrainModel` (e.g. from
        :func:`skullstrip_lib.inference.load_model`). Each must expect the grid
        the TFRecords hold, and the same preprocessing (not checked beyond the
        grid shape).
    tfrecord_dir : path-like
        Written by :func:`skullstrip_lib.data.write_tfrecords` (e.g. by
        :func:`prepare_data`).
    split : {"train", "val", "test"}
        Which volumes.

    Returns
    -------
    pandas.DataFrame
        Index ``subject``; one column per model: Dice (float, 0 to 1).

    Raises
    ------
    SkullstripError
        A model expects another grid than the TFRecords hold.
    """
    from .data import load_split, read_manifest
    from .metrics import dice

    manifest = read_manifest(tfrecord_dir)
    shape = tuple(manifest["shape"])
    for name, brain_model in models.items():
        if tuple(brain_model.config.shape) != shape:
            raise SkullstripError(f"model {name!r} expects a {brain_model.config.shape} grid, "
                                  f"the TFRecords in {tfrecord_dir} hold {shape}")
    rows = []
    volumes = load_split(tfrecord_dir, split).as_numpy_iterator()
    for subject, (image, mask) in zip(manifest["subjects"][split], volumes, strict=True):
        truth = mask[..., 0] > 0.5
        row = {"subject": subject}
        for name, brain_model in models.items():
            prob = brain_model.probabilities(image[..., 0])
            row[name] = float(dice(prob > brain_model.threshold, truth))
        rows.append(row)
    return pd.DataFrame(rows, columns=["subject", *models]).set_index("subject")
