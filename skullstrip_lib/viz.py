"""Figures: three-plane views of a volume with a mask outlined, montages, viewers.

matplotlib is imported inside the functions (with the non-interactive Agg
backend when no display is set up), so importing this module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "compare_masks",
    "compare_zoomed",
    "montage",
    "montage_index",
    "plot_history",
    "plot_unet",
    "qc_overlay",
    "sequence_explorer",
    "show_model_grid",
    "show_planes",
    "slice_viewer",
]


def _pyplot():
    import matplotlib

    modules = __import__("sys").modules
    # Headless scripts and the CLI draw off-screen; a Jupyter kernel keeps its inline backend.
    if ("matplotlib.pyplot" not in modules and "ipykernel" not in modules
            and not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plane_axis(plane: str) -> int:
    """The RAS voxel axis a plane cuts across (sagittal 0, coronal 1, axial 2)."""
    planes = ("sagittal", "coronal", "axial")
    if plane not in planes:
        raise ValueError(f"plane must be one of {planes}, got {plane!r}")
    return planes.index(plane)


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
    axis = _plane_axis(plane)
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
        Three sliders (sagittal x, coronal y, axial z; in voxels) and the figure
        (an ``ipywidgets.Image`` redrawn as PNG when a slider moves).
    """
    import ipywidgets as widgets

    image = np.asarray(image)
    start = _centre(None if mask is None else np.asarray(mask).astype(bool), image.shape)
    sliders = [widgets.IntSlider(value=int(c), min=0, max=int(s) - 1, description=name,
                                 continuous_update=False)
               for c, s, name in zip(start, image.shape, ("x (sag)", "y (cor)", "z (ax)"),
                                     strict=True)]
    view = widgets.Image(format="png")

    def draw(_=None) -> None:
        view.value = _png(show_planes(image, mask, zooms=zooms, title=title,
                                      cut=[sl.value for sl in sliders]))

    for sl in sliders:
        sl.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(sliders), view])


def _png(fig, dpi: int = 80) -> bytes:
    """A figure as PNG bytes, the figure closed (for ipywidgets.Image viewers).

    The viewers draw into an Image widget rather than an Output widget: headless
    notebook runners (papermill, the book build) can block on Output-widget capture.
    """
    import io

    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def montage_index(index, *, plane: str = "axial", ncols: int = 6, max_subjects: int | None = None,
                  title_columns: Sequence[str] = ("subject", "split"),
                  mask_color: str = "tab:red"):
    """QC montage of a whole dataset: one slice of every subject's T1w, its mask outlined.

    Each scan and mask is read with :func:`skullstrip_lib.io.load_scan` and
    :func:`skullstrip_lib.io.load_mask` (checked, reoriented to RAS) and only
    the slice through the mask's centre is kept, so a dataset of any size fits in
    memory (one volume at a time).

    Parameters
    ----------
    index : pandas.DataFrame
        A table from :func:`skullstrip_lib.datasets.index_dataset` (columns
        ``t1w``, ``brainmask`` and those named in `title_columns`).
    plane : {"sagittal", "coronal", "axial"}
        The slice shown.
    ncols : int
        Panels per row.
    max_subjects : int or None
        Show only the first rows of the index; None shows all.
    title_columns : sequence of str
        Index columns joined (with " · ") into each panel's title.
    mask_color : str
        Contour colour.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .io import load_mask, load_scan

    axis = _plane_axis(plane)
    rows = index if max_subjects is None else index.head(max_subjects)
    images, masks, titles, zooms = [], [], [], []
    for row in rows.itertuples(index=False):
        scan = load_scan(row.t1w)
        mask = load_mask(row.brainmask, scan)
        cut = _centre(mask, mask.shape)[axis]
        # A one-voxel slab: montage cuts it through its own (only) slice.
        images.append(np.take(scan.data, [cut], axis=axis))
        masks.append(np.take(mask, [cut], axis=axis))
        titles.append(" · ".join(str(getattr(row, c)) for c in title_columns))
        zooms.append(scan.zooms)
    return montage(images, masks, titles=titles, plane=plane, ncols=ncols, zooms=zooms,
                   mask_color=mask_color)


def show_model_grid(image: np.ndarray, grid, mask: np.ndarray | None = None, *,
                    zooms: Sequence[float] = (1.0, 1.0, 1.0), title: str | None = None,
                    box_color: str = "tab:cyan"):
    """Three planes of a scan with the model grid's extent drawn as a rectangle.

    Parameters
    ----------
    image : numpy.ndarray
        The scan in RAS voxel order, shape ``grid.source_shape``.
    grid : skullstrip_lib.preprocess.ModelGrid
        The model grid placed on it (:func:`skullstrip_lib.preprocess.fit_model_grid`).
    mask : numpy.ndarray of bool, optional
        Outlined, as in :func:`show_planes`.
    zooms : sequence of 3 floats
        Voxel size in mm.
    title : str, optional
        Written above the first panel.
    box_color : str
        Colour of the rectangle.

    Returns
    -------
    matplotlib.figure.Figure
        The axes are widened to hold the whole grid: where it reaches beyond
        the scan's field of view, the model grid gets zeros.
    """
    from matplotlib.patches import Rectangle

    from .preprocess import grid_box_in_source

    fig = show_planes(image, mask, zooms=zooms, title=title)
    lo, hi = grid_box_in_source(grid)
    for ax, (a, b) in zip(fig.axes[:3], ((1, 2), (0, 2), (0, 1)), strict=True):
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
        ax.add_patch(Rectangle((lo[a], lo[b]), hi[a] - lo[a], hi[b] - lo[b], fill=False,
                               edgecolor=box_color, linewidth=1.5, linestyle="--"))
        ax.set_xlim(min(xlim[0], lo[a]) - 2, max(xlim[1], hi[a]) + 2)
        ax.set_ylim(min(ylim[0], lo[b]) - 2, max(ylim[1], hi[b]) + 2)
    return fig


def compare_zoomed(volumes: Sequence[np.ndarray], affines: Sequence[np.ndarray], *,
                   point_mm: Sequence[float], plane: str = "coronal", window_mm: float = 60.0,
                   titles: Sequence[str] | None = None,
                   contours: Sequence[Sequence[np.ndarray]] | None = None,
                   contour_colors: Sequence[str] = ("tab:red", "tab:cyan", "yellow"),
                   vmin: float | None = None, vmax: float | None = None, cmap: str = "gray",
                   panel_size: float = 3.0):
    """The same small region of several volumes, each on its own voxel grid, in mm.

    Each panel cuts its volume through the voxel nearest to ``point_mm`` and
    shows a ``window_mm`` square around it, placed by the volume's affine: a
    1 mm scan and the same head on a 2 mm or 4 mm grid line up, and the size of
    their voxels is seen directly.

    Parameters
    ----------
    volumes : sequence of numpy.ndarray
        3D arrays in RAS voxel order (as :func:`skullstrip_lib.io.load_scan` and
        the model grid give them).
    affines : sequence of numpy.ndarray
        Their voxel-to-world affines, shape ``(4, 4)``, axis-aligned with positive
        diagonal (RAS, not oblique).
    point_mm : sequence of 3 floats
        World point (RAS, mm) at the centre of every panel.
    plane : {"sagittal", "coronal", "axial"}
        Which plane to cut.
    window_mm : float
        Side of the square shown, in mm.
    titles : sequence of str, optional
        One per panel.
    contours : sequence of sequences of numpy.ndarray, optional
        Per panel, masks on that panel's grid to outline (the first in
        ``contour_colors[0]``, and so on).
    contour_colors : sequence of str
        Colours of the outlines, in order.
    vmin, vmax : float, optional
        Grey-level window shared by all panels; by default each panel uses the
        1st and 99.5th percentiles of its own slice.
    cmap : str
        Colour map.
    panel_size : float
        Width of a panel in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    axis = _plane_axis(plane)
    if len(volumes) != len(affines):
        raise ValueError("one affine per volume")
    r0, r1 = (d for d in range(3) if d != axis)
    point = np.asarray(point_mm, dtype=float)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(volumes), figsize=(panel_size * len(volumes), panel_size),
                             squeeze=False)
    for p, (ax, vol, aff) in enumerate(zip(axes[0], volumes, affines, strict=True)):
        aff = np.asarray(aff, dtype=float)
        lin = aff[:3, :3]
        if np.any(np.abs(lin - np.diag(np.diag(lin))) > 1e-6) or np.any(np.diag(lin) <= 0):
            raise ValueError("compare_zoomed needs axis-aligned RAS affines (not oblique)")
        vox = np.linalg.solve(lin, point - aff[:3, 3])
        cut = int(np.clip(round(vox[axis]), 0, vol.shape[axis] - 1))
        sl = np.take(np.asarray(vol, dtype=np.float32), cut, axis=axis)
        xs = aff[r0, r0] * np.arange(sl.shape[0]) + aff[r0, 3]
        ys = aff[r1, r1] * np.arange(sl.shape[1]) + aff[r1, 3]
        hx, hy = aff[r0, r0] / 2, aff[r1, r1] / 2
        lo, hi = (vmin, vmax) if vmin is not None and vmax is not None else np.percentile(
            sl, (1, 99.5))
        ax.imshow(sl.T, cmap=cmap, origin="lower", vmin=lo, vmax=hi, interpolation="nearest",
                  extent=(xs[0] - hx, xs[-1] + hx, ys[0] - hy, ys[-1] + hy))
        if contours is not None:
            for mask, color in zip(contours[p], contour_colors, strict=False):
                ms = np.take(np.asarray(mask), cut, axis=axis).astype(float)
                if ms.any():
                    ax.contour(xs, ys, ms.T, levels=[0.5], colors=color, linewidths=1.2)
        half = window_mm / 2
        ax.set_xlim(point[r0] - half, point[r0] + half)
        ax.set_ylim(point[r1] - half, point[r1] + half)
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[p], fontsize=9)
    fig.tight_layout()
    return fig


def plot_history(history, metrics: Sequence[str] = ("loss", "dice"), *, axes=None,
                 title: str | None = None):
    """Learning curves of a training run: each metric on training and validation data.

    Parameters
    ----------
    history : pandas.DataFrame or dict
        One row (or list entry) per epoch, as in a run's ``log.csv``
        (:func:`skullstrip_lib.train.train`) or ``model.fit(...).history``:
        columns ``loss``, ``val_loss``, ``dice``, ``val_dice``, ...; an
        ``epoch`` column (0-based) if present, else the row number.
    metrics : sequence of str
        One panel each; ``val_<metric>`` is drawn too when present.
    axes : sequence of matplotlib Axes, optional
        One per metric; a new figure otherwise.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Epochs are numbered from 1. The epoch with the best validation Dice
        (when ``val_dice`` is present) is marked in every panel.
    """
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    log = pd.DataFrame(history)
    if axes is None:
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4),
                                 squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    epochs = (log["epoch"] if "epoch" in log else pd.Series(range(len(log)))).to_numpy() + 1
    best = int(log["val_dice"].to_numpy().argmax()) if "val_dice" in log else None
    for ax, metric in zip(axes, metrics, strict=True):
        for column, label, style in ((metric, "training", "-o"), (f"val_{metric}", "validation",
                                                                   "-s")):
            if column in log:
                ax.plot(epochs, log[column], style, ms=4, label=label)
                if best is not None:
                    ax.plot(epochs[best], log[column].iloc[best], "o", ms=10, mfc="none",
                            mec="k")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_unet(table, *, ax=None, title: str | None = None):
    """A U-shaped diagram of a network's blocks, from :func:`skullstrip_lib.model.block_table`.

    Encoder blocks go down the left side, decoder blocks up the right side, the
    deepest block (the bottleneck) sits at the bottom; each box gives its grid
    and channel count, and is wider the more channels it has. Solid arrows are
    the main path (max pooling down, upsampling up), dashed ones the skip
    connections.

    Parameters
    ----------
    table : pandas.DataFrame
        With columns ``block`` (``encL``, ``decL``, ``mask``), ``grid`` and
        ``channels``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import itertools

    plt = _pyplot()
    rows = {r.block: r for r in table.itertuples(index=False)}
    enc = sorted(int(b[3:]) for b in rows if b.startswith("enc"))
    dec = sorted((int(b[3:]) for b in rows if b.startswith("dec")), reverse=True)
    depth = len(enc)
    step, height = 1.7, 0.75  # horizontal distance between levels; box height (level = 1)
    boxes = {f"enc{level}": (step * level, -level) for level in enc}
    boxes.update({f"dec{level}": (step * (2 * (depth - 1) - level), -level) for level in dec})
    if "mask" in rows:
        boxes["mask"] = (boxes["dec0"][0] + 1.6 if "dec0" in boxes else step, 0)
    xs = [x for x, _ in boxes.values()]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 * (max(xs) - min(xs) + 2), 1.0 * depth + 0.6))
    else:
        fig = ax.figure
    for name, (x, y) in boxes.items():
        r = rows[name]
        w = 1.05 + 0.04 * np.log2(max(int(r.channels), 1))
        colour = {"enc": "#cfe2f3", "dec": "#d9ead3", "mas": "#f4cccc"}[name[:3]]
        ax.add_patch(plt.Rectangle((x - w / 2, y - height / 2), w, height, fc=colour, ec="k",
                                   lw=0.8))
        ax.text(x, y, f"{name}\n{r.grid}\n{int(r.channels)} ch", ha="center", va="center",
                fontsize=7.5)
    arrow = {"arrowstyle": "->", "lw": 1.0}
    path = [f"enc{level}" for level in enc] + [f"dec{level}" for level in dec]
    path += ["mask"] if "mask" in boxes else []
    for a, b in itertools.pairwise(path):
        (xa, ya), (xb, yb) = boxes[a], boxes[b]
        dy = height / 2 * np.sign(ya - yb)  # leave a box at its bottom (down) or top (up)
        if ya == yb:
            ax.annotate("", xy=(xb - 0.55, yb), xytext=(xa + 0.55, ya), arrowprops=arrow)
        else:
            ax.annotate("", xy=(xb, yb + dy), xytext=(xa, ya - dy), arrowprops=arrow)
    for level in dec:
        (xa, ya), (xb, yb) = boxes[f"enc{level}"], boxes[f"dec{level}"]
        ax.annotate("", xy=(xb - 0.6, yb), xytext=(xa + 0.6, ya),
                    arrowprops={**arrow, "ls": "--", "color": "0.45"})
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(-depth + 0.5, 0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def compare_masks(image: np.ndarray, reference: np.ndarray, predicted: np.ndarray, *,
                  zooms: Sequence[float] = (1.0, 1.0, 1.0), axes=None, title: str | None = None,
                  cut: Sequence[int] | None = None):
    """Three planes with two masks outlined: the reference in green, a prediction in red.

    Where the two outlines part, the prediction is wrong: red outside green
    keeps non-brain, red inside green cuts brain away.

    Parameters
    ----------
    image : numpy.ndarray
        3D RAS volume, shape ``(X, Y, Z)``.
    reference, predicted : numpy.ndarray of bool
        Masks of the same shape.
    zooms : sequence of 3 floats
        Voxel size in mm.
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    title : str, optional
        Written above the first panel.
    cut : sequence of 3 int, optional
        Voxel through which to cut; the reference's centre by default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    reference = np.asarray(reference).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    if reference.shape != image.shape or predicted.shape != image.shape:
        raise ValueError(f"masks {reference.shape}, {predicted.shape} do not match the image "
                         f"{image.shape}")
    cut = tuple(cut) if cut is not None else _centre(reference, image.shape)
    fig = show_planes(image, reference, zooms=zooms, axes=axes, title=title,
                      mask_color="tab:green", cut=cut)
    axes = fig.axes[-3:] if axes is None else axes
    i, j, k = cut
    for ax, sl in zip(axes, (predicted[i], predicted[:, j], predicted[:, :, k]), strict=True):
        if sl.any():
            ax.contour(sl.T.astype(float), levels=[0.5], colors="tab:red", linewidths=1.0)
    return fig


def sequence_explorer(fractions, *, axial_slice: int, field: str = "3T",
                      colors: dict[str, str] | None = None):
    """Sliders for TR, TE, TI and field strength, redrawing a painted brain slice.

    Each change repaints the tissue fractions with
    :func:`skullstrip_lib.mri.paint_contrast` and shows the tissues' signals as
    bars. It needs a live kernel; the book shows static figures beside it.

    Parameters
    ----------
    fractions : mapping of str to numpy.ndarray
        Tissue fraction maps (:attr:`skullstrip_lib.mri.TissueMaps.fractions`).
    axial_slice : int
        The axial slice shown (voxel index along the third axis).
    field : {"1.5T", "3T"}
        The initial field strength.
    colors : dict, optional
        Bar colour per tissue name.

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets as widgets

    from . import mri

    plt = _pyplot()
    colors = colors or {}

    view = widgets.Image(format="png")

    def draw(_=None) -> None:
        tr_ms, te_ms, ti_ms, field_strength = (c.value for c in controls.values())
        ti = ti_ms if ti_ms > 0 else None  # TI = 0 means a plain spin echo
        img = mri.paint_contrast(fractions, tr_ms, te_ms, ti_ms=ti, field=field_strength)
        sig = mri.tissue_signals(tr_ms, te_ms, ti_ms=ti, field=field_strength)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
        ax1.imshow(img[:, :, axial_slice].T, cmap="gray", origin="lower",
                   **mri.display_range(tr_ms, te_ms, ti, field=field_strength))
        ax1.axis("off")
        ax2.bar(list(sig), [float(v) for v in sig.values()],
                color=[colors.get(n, "tab:gray") for n in sig])
        ax2.set(ylim=(0, 1), ylabel="signal", title="tissue signals")
        fig.tight_layout()
        view.value = _png(fig)

    controls = {
        "tr_ms": widgets.IntSlider(500, min=50, max=10000, step=50, description="TR (ms)"),
        "te_ms": widgets.IntSlider(15, min=5, max=250, step=5, description="TE (ms)"),
        "ti_ms": widgets.IntSlider(0, min=0, max=4000, step=50, description="TI (ms)"),
        "field_strength": widgets.Dropdown(options=mri.FIELD_STRENGTHS, value=field,
                                           description="field"),
    }
    for c in controls.values():
        c.observe(draw, names="value")
    draw()
    boxes = list(controls.values())
    return widgets.VBox([widgets.HBox(boxes[:2]), widgets.HBox(boxes[2:]), view])
