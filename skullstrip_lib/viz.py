"""Figures: three-plane views of a volume with a mask outlined, montages, viewers.

matplotlib is imported inside the functions (with the non-interactive Agg
backend when no display is set up), so importing this module is cheap.

Display convention. Every slice of an RAS volume (voxel axes towards the
subject's Right, Anterior, Superior) is drawn as ``imshow(slice.T,
origin="lower")``: the slice's first remaining axis runs left to right on the
screen, its second from bottom to top. So the pictures are in the
*neurological* convention: in axial and coronal views the subject's **right is
on the viewer's right** (and the subject's left on the viewer's left); axial
views are seen from above with anterior at the top, coronal views from the front
with superior at the top, sagittal views from the subject's left with anterior
on the right and superior at the top. (Radiological displays, e.g. most
scanner consoles, mirror left and right.) :func:`label_orientation` writes these
letters (R/L, A/P, S/I) on the image edges, and every three-plane view here
does so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._docs import fill_doc
from .io import atomic_path

__all__ = [
    "compare_masks",
    "figure_png",
    "label_orientation",
    "mask_centre",
    "montage",
    "plane_axis",
    "plot_history",
    "pyplot",
    "qc_overlay",
    "show_planes",
    "slice_viewer",
    "worst_cases_figure",
]


def pyplot():
    """matplotlib.pyplot, imported on first use (``import skullstrip_lib.viz`` stays cheap).

    The backend is matplotlib's own choice, never switched here: inline in a Jupyter
    kernel, ``$MPLBACKEND`` when set, and off-screen (Agg) on a machine without a
    display, which matplotlib selects by itself.
    """
    import matplotlib.pyplot as plt

    return plt


def plane_axis(plane: str) -> int:
    """The RAS voxel axis a plane cuts across (sagittal 0, coronal 1, axial 2)."""
    planes = ("sagittal", "coronal", "axial")
    if plane not in planes:
        raise ValueError(f"plane must be one of {planes}, got {plane!r}")
    return planes.index(plane)


# Letters on the (left, right, bottom, top) edges of a slice drawn as imshow(slice.T,
# origin="lower") from an RAS volume: the first remaining voxel axis runs left to right.
ORIENTATION_LABELS = {
    "sagittal": ("P", "A", "I", "S"),  # columns: y (posterior -> anterior); rows: z
    "coronal": ("L", "R", "I", "S"),   # columns: x (left -> right); rows: z
    "axial": ("L", "R", "P", "A"),     # columns: x; rows: y (posterior -> anterior)
}


def label_orientation(ax, plane: str, *, flip_lr: bool = False, fontsize: float = 7,
                      color: str = "white") -> dict[str, str]:
    """Write the anatomical direction of each edge (R/L, A/P, S/I) on a slice.

    For a slice of an RAS volume drawn with ``imshow(slice.T, origin="lower")``,
    as every view of this module draws it (see the module's note on the display
    convention): the subject's right is on the viewer's right in axial and
    coronal views, anterior on the right in sagittal views.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes holding the slice.
    plane : {"sagittal", "coronal", "axial"}
        Which plane the slice is.
    flip_lr : bool
        The slice was mirrored left-right before drawing (e.g. a radiological
        view, ``slice.T[:, ::-1]``): swap the left and right letters.
    fontsize : float
        Size of the letters, points.
    color : str
        Their colour (with a thin black outline, legible on any grey level).

    Returns
    -------
    dict
        ``{"left": letter, "right": letter, "bottom": letter, "top": letter}``.
        The letters are Text artists of ``ax`` with ``gid`` ``"orientation-<edge>"``.

    Examples
    --------
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> label_orientation(ax, "axial")
    {'left': 'L', 'right': 'R', 'bottom': 'P', 'top': 'A'}
    >>> label_orientation(ax, "coronal", flip_lr=True)["left"]  # radiological
    'R'
    >>> plt.close(fig)
    """
    import matplotlib.patheffects as pe

    plane_axis(plane)  # validates the name
    left, right, bottom, top = ORIENTATION_LABELS[plane]
    if flip_lr:
        left, right = right, left
    letters = {"left": left, "right": right, "bottom": bottom, "top": top}
    places = {"left": (0.02, 0.5, "left", "center"), "right": (0.98, 0.5, "right", "center"),
              "bottom": (0.5, 0.02, "center", "bottom"), "top": (0.5, 0.98, "center", "top")}
    for edge, letter in letters.items():
        x, y, ha, va = places[edge]
        ax.text(x, y, letter, transform=ax.transAxes, ha=ha, va=va, fontsize=fontsize,
                color=color, fontweight="bold", gid=f"orientation-{edge}",
                path_effects=[pe.withStroke(linewidth=1.5, foreground="black")])
    return letters


def mask_centre(mask: np.ndarray | None, shape: Sequence[int]) -> tuple[int, int, int]:
    """The voxel at the mask's centre of mass (rounded), or the grid's centre without a mask."""
    if mask is not None and mask.any():
        return tuple(round(c) for c in np.argwhere(mask).mean(axis=0))
    return tuple(s // 2 for s in shape)


@fill_doc
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
    %(zooms)s
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
        Each panel carries its orientation letters (:func:`label_orientation`):
        neurological convention, the subject's right on the viewer's right.

    Examples
    --------
    >>> image = np.random.default_rng(0).random((8, 10, 12))
    >>> fig = show_planes(image, image > 0.5, title="a toy volume")
    >>> len(fig.axes)  # sagittal, coronal, axial
    3
    """
    plt = pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    else:
        fig = axes[0].figure
    i, j, k = cut if cut is not None else mask_centre(mask, image.shape)
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
        label_orientation(ax, name)
    if title:
        axes[0].set_title(f"{title}\nsagittal", fontsize=9)
    return fig


@fill_doc
def qc_overlay(image: np.ndarray, mask: np.ndarray, path: str | os.PathLike, *,
               zooms: Sequence[float] = (1.0, 1.0, 1.0), title: str | None = None) -> Path:
    """Write a quality-control PNG: three planes through the brain, the mask outlined.

    Parameters
    ----------
    image, mask : numpy.ndarray
        RAS volume and boolean brain mask of the same shape.
    path : path-like
        PNG file to write (atomically).
    %(zooms)s
    title : str, optional
        Usually the scan's file name.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> head = np.ones((6, 6, 6))
    >>> import tempfile
    >>> path = qc_overlay(head, head > 0, Path(tempfile.mkdtemp()) / "qc.png")
    >>> path.name, path.read_bytes()[1:4]  # a PNG file
    ('qc.png', b'PNG')
    """
    plt = pyplot()
    fig = show_planes(image, mask, zooms=zooms, title=title)
    fig.tight_layout()
    try:
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=80)
    finally:
        plt.close(fig)
    return Path(path)


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
        Each panel carries its orientation letters (:func:`label_orientation`).

    Examples
    --------
    >>> volumes = [np.full((4, 5, 6), v) for v in (1.0, 2.0, 3.0)]
    >>> fig = montage(volumes, titles=["a", "b", "c"], ncols=2)
    >>> len(fig.axes)  # a 2 x 2 grid for three volumes
    4
    """
    axis = plane_axis(plane)
    plt = pyplot()
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
        cut = mask_centre(mask, image.shape)[axis]
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
        label_orientation(ax, plane)
    fig.tight_layout()
    return fig


@fill_doc
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
    %(zooms)s
    title : str, optional
        Written above the first panel.

    Returns
    -------
    ipywidgets.VBox
        Three sliders (sagittal x, coronal y, axial z; in voxels) and the figure
        (an ``ipywidgets.Image`` redrawn as PNG when a slider moves), drawn by
        :func:`show_planes`, orientation letters included.

    Examples
    --------
    >>> cube = np.zeros((6, 6, 6))
    >>> cube[1:5, 1:5, 1:5] = 1.0
    >>> type(slice_viewer(cube, cube > 0)).__name__  # sliders above the picture
    'VBox'
    """
    import ipywidgets as widgets

    image = np.asarray(image)
    start = mask_centre(None if mask is None else np.asarray(mask).astype(bool), image.shape)
    sliders = [widgets.IntSlider(value=int(c), min=0, max=int(s) - 1, description=name,
                                 continuous_update=False)
               for c, s, name in zip(start, image.shape, ("x (sag)", "y (cor)", "z (ax)"),
                                     strict=True)]
    view = widgets.Image(format="png")

    def draw(_=None) -> None:
        view.value = figure_png(show_planes(image, mask, zooms=zooms, title=title,
                                      cut=[sl.value for sl in sliders]))

    for sl in sliders:
        sl.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(sliders), view])


def figure_png(fig, dpi: int = 80) -> bytes:
    """A figure as PNG bytes, the figure closed (for ipywidgets.Image viewers).

    The viewers draw into an Image widget rather than an Output widget: headless
    notebook runners (papermill, the book build) can block on Output-widget capture.
    """
    import io

    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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

    Examples
    --------
    >>> log = {"loss": [0.5, 0.3, 0.2], "dice": [0.6, 0.8, 0.9],
    ...        "val_loss": [0.6, 0.4, 0.3], "val_dice": [0.5, 0.7, 0.85]}
    >>> fig = plot_history(log)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['loss', 'dice']
    """
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
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


@fill_doc
def compare_masks(image: np.ndarray, reference: np.ndarray, predicted: np.ndarray, *,
                  zooms: Sequence[float] = (1.0, 1.0, 1.0), axes=None, title: str | None = None,
                  cut: Sequence[int] | None = None):
    """Three planes with two masks outlined: the reference in green, a prediction in red.

    Where the two outlines part, the prediction is wrong: red outside green
    keeps non-brain, red inside green cuts brain away. Drawn by
    :func:`show_planes`, orientation letters included.

    Parameters
    ----------
    image : numpy.ndarray
        3D RAS volume, shape ``(X, Y, Z)``.
    reference, predicted : numpy.ndarray of bool
        Masks of the same shape.
    %(zooms)s
    axes : sequence of 3 matplotlib Axes, optional
        Where to draw; a new figure otherwise.
    title : str, optional
        Written above the first panel.
    cut : sequence of 3 int, optional
        Voxel through which to cut; the reference's centre by default.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> reference = np.zeros((8, 8, 8), bool)
    >>> reference[2:6, 2:6, 2:6] = True
    >>> fig = compare_masks(reference * 1.0, reference, np.roll(reference, 1, axis=0))
    >>> len(fig.axes)
    3
    """
    reference = np.asarray(reference).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    if reference.shape != image.shape or predicted.shape != image.shape:
        raise ValueError(f"masks {reference.shape}, {predicted.shape} do not match the image "
                         f"{image.shape}")
    cut = tuple(cut) if cut is not None else mask_centre(reference, image.shape)
    fig = show_planes(image, reference, zooms=zooms, axes=axes, title=title,
                      mask_color="tab:green", cut=cut)
    axes = fig.axes[-3:] if axes is None else axes
    i, j, k = cut
    for ax, sl in zip(axes, (predicted[i], predicted[:, j], predicted[:, :, k]), strict=True):
        if sl.any():
            ax.contour(sl.T.astype(float), levels=[0.5], colors="tab:red", linewidths=1.0)
    return fig




def worst_cases_figure(cases: Sequence, scores, path: str | os.PathLike | None = None):
    """Three planes through each of a few subjects: reference and prediction, one row each.

    The reference mask is outlined in green, the prediction in red (see
    :func:`compare_masks`); each row is titled with the subject and its Dice.
    Nothing is predicted here: :func:`skullstrip_lib.evaluate.worst_cases`
    finds and predicts the lowest-Dice subjects of a scoring.

    Parameters
    ----------
    cases : sequence of SubjectPrediction
        From :func:`skullstrip_lib.evaluate.worst_cases` (or
        :func:`~skullstrip_lib.evaluate.predict_subjects`): their ``subject``,
        ``scan`` (image and voxel size), ``reference`` and ``mask`` are drawn.
    scores : pandas.DataFrame
        ``subject`` and ``dice`` of each case, e.g. from
        :func:`skullstrip_lib.evaluate.evaluate`.
    path : path-like, optional
        Where to save the figure (PNG).

    Returns
    -------
    matplotlib.figure.Figure
        Also saved to ``path`` when given.

    Examples
    --------
    One stand-in case: a ball scan whose prediction is its reference moved one voxel.

    >>> import tempfile
    >>> import nibabel as nib
    >>> import pandas as pd
    >>> from skullstrip_lib.evaluate import SubjectPrediction
    >>> from skullstrip_lib.io import load_scan
    >>> x, y, z = np.ogrid[:12, :12, :12]
    >>> ball = (x - 6) ** 2 + (y - 6) ** 2 + (z - 6) ** 2 <= 16
    >>> path = Path(tempfile.mkdtemp()) / "ball.nii"
    >>> nib.save(nib.Nifti1Image(ball * 100.0, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    >>> case = SubjectPrediction("s0", load_scan(path), ball, np.roll(ball, 1, axis=0),
    ...                          probability=None, grid=None)
    >>> fig = worst_cases_figure([case], pd.DataFrame({"subject": ["s0"], "dice": [0.91]}))
    >>> len(fig.axes)  # one row of three planes
    3
    >>> print(fig.axes[0].get_title())
    s0: Dice 0.910
    sagittal
    """
    if len(cases) == 0:
        raise ValueError("no case to draw")
    dice = scores.set_index(scores["subject"].astype(str))["dice"]
    plt = pyplot()
    fig, axes = plt.subplots(len(cases), 3, figsize=(12, 4 * len(cases)), squeeze=False)
    for ax_row, p in zip(axes, cases, strict=True):
        compare_masks(p.scan.data, p.reference, p.mask, zooms=p.scan.zooms, axes=ax_row,
                      title=f"{p.subject}: Dice {dice[str(p.subject)]:.3f}")
    fig.tight_layout()
    if path is not None:
        with atomic_path(path, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    return fig
