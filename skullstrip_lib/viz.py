"""Figures: three-plane views of a volume with a mask outlined.

matplotlib is imported inside the functions (with the non-interactive Agg
backend when no display is set up), so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["qc_overlay", "show_planes"]


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _centre(mask: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    if mask is not None and mask.any():
        return tuple(round(c) for c in np.argwhere(mask).mean(axis=0))
    return tuple(s // 2 for s in shape)


def show_planes(image: np.ndarray, mask: np.ndarray | None = None, *,
                zooms: Sequence[float] = (1.0, 1.0, 1.0), axes=None, title: str | None = None,
                mask_color: str = "tab:red", cut: Sequence[int] | None = None):
    """Sagittal, coronal and axial slices of an RAS volume, the mask outlined.

    Parameters
    ----------
    image : numpy.ndarray
        3D array in RAS voxel order, shape ``(X, Y, Z)``.
    mask : numpy.ndarray of bool, optional
        Same shape; drawn as a contour.
    zooms : sequence of 3 floats
        Voxel size in mm, so that slices keep their true proportions.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    title : str, optional
        Written above the first panel.
    mask_color : str
        Contour colour.
    cut : sequence of 3 int, optional
        Voxel through which to cut; the mask's centre (or the volume's) by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    else:
        fig = axes[0].figure
    i, j, k = cut if cut is not None else _centre(mask, image.shape)
    lo, hi = np.percentile(image, (1, 99.5))
    views = [  # (slice, mask slice, aspect = row spacing / column spacing)
        (image[i, :, :], None if mask is None else mask[i, :, :], zooms[2] / zooms[1]),
        (image[:, j, :], None if mask is None else mask[:, j, :], zooms[2] / zooms[0]),
        (image[:, :, k], None if mask is None else mask[:, :, k], zooms[1] / zooms[0]),
    ]
    for ax, (sl, ms, aspect), name in zip(axes, views, ("sagittal", "coronal", "axial"),
                                          strict=True):
        ax.imshow(sl.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        if ms is not None and ms.any():
            ax.contour(ms.T.astype(float), levels=[0.5], colors=mask_color, linewidths=1.0)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        axes[0].set_title(f"{title}\nsagittal", fontsize=9)
    return fig


def qc_overlay(image: np.ndarray, mask: np.ndarray, path: str | os.PathLike, *,
               zooms: Sequence[float] = (1.0, 1.0, 1.0), title: str | None = None) -> Path:
    """Write a quality-control PNG: three planes through the brain, the mask outlined.

    Parameters
    ----------
    image, mask : numpy.ndarray
        RAS volume and boolean brain mask of the same shape.
    path : path-like
        PNG file to write (atomically).
    zooms : sequence of 3 floats
        Voxel size in mm.
    title : str, optional
        Usually the scan's file name.

    Returns
    -------
    pathlib.Path
    """
    plt = _pyplot()
    fig = show_planes(image, mask, zooms=zooms, title=title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
