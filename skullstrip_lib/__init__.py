"""skullstrip_lib: brain extraction of T1-weighted MRI with a 3D U-Net.

The library behind the *skullstrip* teaching book. One module per step of the
pipeline, in layers, bottom first (a module imports its own layer and the ones
below, never one above; the README's Layout section states the same order):

``errors``, ``validate`` (argument checks), ``io`` (validated loading, RAS,
writing back), ``metrics``
→ ``datasets`` (NFBS download, index, split), ``synth`` (synthetic heads),
``preprocess`` (N4, model grid, normalisation), ``workflow`` (the batch run in
nipype) → ``data`` (tf.data, augmentation), ``model``, ``losses`` → ``train``
→ ``bids`` (BIDS names in and out), ``inference`` (native-space prediction),
``evaluate`` → ``viz`` → ``cli``.

The book's lesson helpers sit above all of them in ``skullstrip_lib.lessons``.

Importing the package is cheap: submodules are imported when first used, and
TensorFlow is never imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = (
    "bids", "cli", "data", "datasets", "errors", "evaluate", "inference", "io", "losses",
    "metrics", "model", "preprocess", "synth", "train", "validate", "viz", "workflow",
)

__all__ = ["__version__", *_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from . import (  # noqa: F401
        bids,
        cli,
        data,
        datasets,
        errors,
        evaluate,
        inference,
        io,
        losses,
        metrics,
        model,
        preprocess,
        synth,
        train,
        validate,
        viz,
        workflow,
    )


def __getattr__(name: str):
    # Lazy submodules: ``import skullstrip_lib`` must stay fast (no nipype, no TF).
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
