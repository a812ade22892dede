"""Training taken apart on toys: losses, learning rates, Adam's first step (chapter 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .._docs import fill_doc
from ..errors import SkullstripError

RUN_FILES = {
    "config.yaml": "the resolved configuration: what was trained, to redo or resume it",
    "log.csv": "one row per epoch: loss, Dice, IoU on training and validation batches",
    "split.csv": "the subject-level split it trained on: evaluation keeps to its test subjects",
    "summary.json": "wall time, devices, batch, mixed precision, the TFRecords used",
    "best.keras": "the checkpoint with the best validation Dice (exported by default)",
    "last.keras": "the checkpoint after the last finished epoch",
    "backup": "BackupAndRestore's state (weights, optimizer, epoch): what --resume reads",
    "tensorboard": "TensorBoard event files (tensorboard --logdir RUN)",
    "export": "model.onnx + model.json (+ config.yaml, split.csv): what predict and evaluate load",
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

    Examples
    --------
    The bundled model's folder is a run's ``export/``: of its entries only
    ``config.yaml`` and ``split.csv`` also stand at a run's top level, so only they
    are explained.

    >>> from skullstrip_lib.inference import bundled_models
    >>> table = describe_run(bundled_models()["default"])
    >>> list(table["entry"]), list(table["what"] != "")
    (['config.yaml', 'model.json', 'model.onnx', 'split.csv'], [True, False, False, True])
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
        The ball, centred, shape ``shape``.

    Examples
    --------
    >>> round(float(toy_ball((64, 64, 64), 0.1).mean()), 2)
    0.1
    """
    import numpy as np

    from .evaluation_lab import sphere

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

    from ..losses import soft_dice_loss
    from ..metrics import dice

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

    Examples
    --------
    >>> import numpy as np
    >>> x, y = toy_volumes(2, size=12)
    >>> x.shape, x.dtype.name, np.unique(y).tolist()
    ((2, 12, 12, 12, 1), 'float32', [0.0, 1.0])
    >>> round(float((x - y).std()), 1)  # the noise
    0.3
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


@fill_doc
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
    %(toy_fit)s

    Returns
    -------
    pandas.DataFrame
        Columns ``learning_rate``, ``epoch`` (0-based), ``loss`` and ``dice``
        (training Dice of the thresholded masks), one row per rate and epoch.

    Examples
    --------
    Two rates, three steps each, on one 12^3 volume (seconds, mostly Keras
    building the network):

    >>> sweep = learning_rate_sweep((1e-3, 1e-1), epochs=3, n=1, size=12)
    >>> sweep.groupby("learning_rate").size().to_dict()
    {0.001: 3, 0.1: 3}
    >>> list(sweep.columns)
    ['learning_rate', 'epoch', 'loss', 'dice']
    """
    import keras

    from ..losses import DiceScore, get_loss
    from ..model import build_unet

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


@fill_doc
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
    %(toy_fit)s

    Returns
    -------
    pandas.DataFrame
        One row per rate and convolution layer: ``learning_rate``, ``layer``,
        ``weight_rms`` (root mean square of the initial kernel), ``step_rms``
        (of the change made by the step) and ``ratio`` (``step_rms /
        weight_rms``).

    Examples
    --------
    Adam's first step moves each weight by at most about the rate (exactly
    ``rate * g / (|g| + epsilon)``), so no kernel moves by more than 0.01 on
    average at a rate of 0.01:

    >>> steps = adam_first_step((0.01,), n=1, size=12)
    >>> bool(steps["step_rms"].max() <= 0.01 + 1e-6), bool((steps["ratio"] > 0).all())
    (True, True)
    """
    import keras
    import numpy as np

    from ..losses import get_loss
    from ..model import build_unet

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
        A model expects another grid (its ``config.shape``) than the TFRecords
        hold (their manifest's ``shape``).

    Examples
    --------
    One validation volume, a 16^3 box that serves as image and mask, and two
    stand-in networks: one that finds the box, one that calls everything brain.

    >>> import tempfile
    >>> import nibabel as nib
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from skullstrip_lib.data import write_tfrecords
    >>> from skullstrip_lib.inference import BrainModel
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> folder = Path(tempfile.mkdtemp())
    >>> box = np.zeros((16, 16, 16), "float32")
    >>> box[4:12, 4:12, 4:12] = 1  # 512 of 4096 voxels
    >>> nib.save(nib.Nifti1Image(box, np.eye(4)), folder / "s0.nii.gz")
    >>> table = pd.DataFrame({"subject": ["s0"], "split": ["val"],
    ...                       "t1w": [folder / "s0.nii.gz"], "brainmask": [folder / "s0.nii.gz"]})
    >>> _ = write_tfrecords(table, folder / "records", progress=False)
    >>> config = PreprocessConfig(shape=(16, 16, 16))
    >>> models = {"box": BrainModel("box", config, run=lambda x: (x > 0.5).astype("float32")),
    ...           "everything": BrainModel("everything", config, run=np.ones_like)}
    >>> score_on_grid(models, folder / "records").round(3).to_dict("index")  # Dice by subject
    {'s0': {'box': 1.0, 'everything': 0.222}}
    """
    from ..data import load_split, read_manifest
    from ..metrics import dice

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


def interrupt_after(epoch: int):
    """A Keras callback that interrupts a fit after ``epoch`` epochs, as a killed run would be.

    It raises :class:`KeyboardInterrupt` at the end of that epoch, so Keras'
    ``BackupAndRestore`` keeps its state (a fit that ends normally deletes
    it) and ``train(..., resume=True)`` can continue from there. Pass it in
    ``callbacks`` of :func:`skullstrip_lib.train.train`.

    Parameters
    ----------
    epoch : int
        Epochs to finish before the interruption (>= 1).

    Returns
    -------
    keras.callbacks.Callback

    Examples
    --------
    >>> callback = interrupt_after(2)
    >>> callback.on_epoch_end(0)  # the first epoch ends: go on
    >>> try:
    ...     callback.on_epoch_end(1)  # the second: stop, as Ctrl-C would
    ... except KeyboardInterrupt as stop:
    ...     print(stop)
    interrupted after epoch 2
    """
    import keras

    if epoch < 1:
        raise ValueError(f"epoch must be at least 1, got {epoch}")

    class InterruptAfter(keras.callbacks.Callback):
        def on_epoch_end(self, e, logs=None):
            if e + 1 >= epoch:
                raise KeyboardInterrupt(f"interrupted after epoch {epoch}")

    return InterruptAfter()
