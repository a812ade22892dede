"""A run's checkpoint exported for inference: ``model.onnx`` and ``model.json``, in float32."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..errors import InvalidInputError, SkullstripError
from ..io import atomic_path, atomic_write_text, check_keras_file
from .config import SPLIT_FILE, _read_config
from .network import build_network, precision_policy

__all__ = ["computes_in_float32", "export_run"]


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


def _load_checkpoint(path: Path):
    """A run's checkpoint, read by Keras; a file that is not one is named in one line."""
    import keras

    check_keras_file(path)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        first = " ".join(str(exc).split())[:200]
        raise InvalidInputError(path, f"not a Keras model file Keras can read ({first})") from None


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

    from ..model import describe_model, export_onnx

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
