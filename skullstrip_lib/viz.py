"""Figures: three-plane views of a volume with a mask outlined, montages, viewers.

matplotlib is imported inside the functions (with the non-interactive Agg
backend when no display is set up), so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["montage", "qc_overlay", "show_planes", "slice_viewer"]


def _pyplot():
    import matplotlib

    modules = __import__("sys").modules
    # Headless scripts and the CLI draw off-screen; a Jupyter kernel keeps its inline backend.
    if ("matplotlib.pyplot" not in modules and "ipykernel" not in modules
            and not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY")):
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


def montage(images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None, *,
            titles: Sequence[str] | None = None, plane: str = "axial", ncols: int = 4,
            zooms: Sequence[Sequence[float]] | None = None, mask_color: str = "tab:red"):
    """One slice of each of several volumes side by side, for visual QC.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        RAS volumes, shape ``(X, Y, Z)`` each (the shapes may differ).
    masks : sequence of numpy.ndarray or None, optional
        Brain masks of the same shapes, drawn as contours.
    titles : sequence of str, optional
        One per panel, e.g. the subject ids.
    plane : {"sagittal", "coronal", "axial"}
        The slice shown, through the mask's centre (or the volume's).
    ncols : int
        Panels per row.
    zooms : sequence of 3-tuples, optional
        Voxel sizes in mm, so that slices keep their proportions.
    mask_color : str
        Contour colour.

    Returns
    -------
    matplotlib.figure.Figure
    """
    planes = ("sagittal", "coronal", "axial")
    if plane not in planes:
        raise ValueError(f"plane must be one of {planes}, got {plane!r}")
    axis = planes.index(plane)
    plt = _pyplot()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3 * nrows), squeeze=False)
    for a, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if a >= n:
            continue
        image = np.asarray(images[a])
        mask = None if masks is None or masks[a] is None else np.asarray(masks[a]).astype(bool)
        cut = _centre(mask, image.shape)[axis]
        sl = np.take(image, cut, axis=axis)
        z = (1.0, 1.0, 1.0) if zooms is None else zooms[a]
        rest = [d for d in range(3) if d != axis]
        lo, hi = np.percentile(image, (1, 99.5))
        ax.imshow(sl.T, cmap="gray", origin="lower", vmin=lo, vmax=hi,
                  aspect=z[rest[1]] / z[rest[0]])
        if mask is not None:
            ms = np.take(mask, cut, axis=axis)
            if ms.any():
                ax.contour(ms.T.astype(float), levels=[0.5], colors=mask_color, linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[a], fontsize=9)
    fig.tight_layout()
    return fig


def slice_viewer(image: np.ndarray, mask: np.ndarray | None = None, *,
                 zooms: Sequence[float] = (1.0, 1.0, 1.0), title: str | None = None):
    """An interactive three-plane viewer (ipywidgets): one slider per axis.

    It needs a live kernel (Jupyter, Colab); in the book's static HTML the
    sliders do not respond, so chapters show a :func:`show_planes` figure too.

    Parameters
    ----------
    image : numpy.ndarray
        3D RAS volume, shape ``(X, Y, Z)``.
    mask : numpy.ndarray, optional
        Same shape; outlined.
    zooms : sequence of 3 floats
        Voxel size in mm.
    title : str, optional
        Written above the first panel.

    Returns
    -------
    ipywidgets.VBox
        Three sliders (sagittal x, coronal y, axial z; in voxels) and the figure.
    """
    import ipywidgets as widgets

    plt = _pyplot()
    image = np.asarray(image)
    start = _centre(None if mask is None else np.asarray(mask).astype(bool), image.shape)
    sliders = [widgets.IntSlider(value=int(c), min=0, max=int(s) - 1, description=name,
                                 continuous_update=False)
               for c, s, name in zip(start, image.shape, ("x (sag)", "y (cor)", "z (ax)"),
                                     strict=True)]
    out = widgets.Output()

    def draw(_=None) -> None:
        with out:
            out.clear_output(wait=True)
            fig = show_planes(image, mask, zooms=zooms, title=title,
                              cut=[sl.value for sl in sliders])
            from IPython.display import display

            display(fig)
            plt.close(fig)

    for sl in sliders:
        sl.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(sliders), out])
