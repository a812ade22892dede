"""skullstrip_lib: brain extraction of T1-weighted MRI with a 3D U-Net.

The library behind the *skullstrip* teaching book. One module per step of the
pipeline, data flowing one way:

``datasets`` (NFBS download, index, split) and ``synth`` (synthetic heads)
→ ``io`` (validated loading, RAS, writing back) → ``preprocess`` (N4, model
grid, normalisation) and ``workflow`` (the batch run in nipype) → ``metrics``.
``cli`` sits on top.

Importing the package is cheap: submodules are imported when first used, and
TensorFlow is never imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = ("datasets", "errors", "io", "metrics", "preprocess", "synth", "workflow")

__all__ = ["__version__", *_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, errors, io, metrics, preprocess, synth, workflow  # noqa: F401


def __getattr__(name: str):
    # Lazy submodules: ``import skullstrip_lib`` must stay fast (no nipype, no TF).
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
