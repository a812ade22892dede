"""skullstrip_lib: brain extraction of T1-weighted MRI with a 3D U-Net.

The library behind the *skullstrip* teaching book. One module per step of the
pipeline, data flowing one way:

``datasets`` (NFBS download, index, split) and ``synth`` (synthetic heads)
→ ``io`` (validated loading, RAS, writing back) → ``preprocess`` (N4, model
grid, normalisation) and ``workflow`` (the batch run in nipype) → ``data``
(tf.data, augmentation) → ``model``, ``losses`` → ``train`` → ``inference``
(native-space prediction; ``bids`` names its BIDS inputs and outputs) →
``evaluate``. ``metrics`` and ``viz`` serve all; ``cli`` sits on top.

Importing the package is cheap: submodules are imported when first used, and
TensorFlow is never imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = (
    "bids", "data", "datasets", "errors", "evaluate", "inference", "io", "losses", "metrics",
    "model",
    "mri", "notebook", "preprocess", "synth", "train", "viz", "workflow",
)

__all__ = ["__version__", *_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from . import (  # noqa: F401
        bids,
        data,
        datasets,
        errors,
        evaluate,
        inference,
        io,
        losses,
        metrics,
        model,
        mri,
        notebook,
        preprocess,
        synth,
        train,
        viz,
        workflow,
    )


def __getattr__(name: str):
    # Lazy submodules: ``import skullstrip_lib`` must stay fast (no nipype, no TF).
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
