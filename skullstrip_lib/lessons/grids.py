"""The model grid seen from the scan: its box, mask round trips, zoom figures (chapter 4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from .._docs import fill_doc
from ..preprocess import ModelGrid, box_corners, from_model_grid, to_model_grid
from ..viz import label_orientation, plane_axis, pyplot, show_planes


def grid_box_in_source(grid: ModelGrid) -> tuple[np.ndarray, np.ndarray]:
    """Where the model grid lies in the scan's voxel coordinates.

    Parameters
    ----------
    grid : ModelGrid
        From :func:`fit_model_grid`.

    Returns
    -------
    lo, hi : numpy.ndarray of float
        Shape ``(3,)``: the smallest and largest scan voxel coordinates of the
        model grid's outer edges (half a model voxel beyond its first and last
        voxel centres). For a scan that is not oblique this is the box exactly;
        for an oblique one, the box around it.
    """
    edges = box_corners(np.full(3, -0.5), np.asarray(grid.shape) - 0.5)
    vox = (np.linalg.inv(grid.source_affine) @ grid.affine @ edges.T).T[:, :3]
    return vox.min(axis=0), vox.max(axis=0)


ROUND_TRIPS = ("fraction", "binary", "nearest")


@fill_doc
def round_trip_mask(mask: np.ndarray, grid: ModelGrid,
                    method: Literal["fraction", "binary", "nearest"] = "fraction") -> np.ndarray:
    """Take a mask to the model grid and back onto the scan's grid.

    What a perfect network's output would look like in the scan's space: the
    difference from the original mask is the error the grid alone causes.

    Parameters
    ----------
    %(mask_on_grid)s
    method : {"fraction", "binary", "nearest"}
        ``"fraction"``: the fraction of each model voxel inside the mask (linear,
        anti-aliased, as the library makes training labels), brought back by
        linear interpolation and thresholded at 0.5, like a probability map;
        ``"binary"``: the fraction thresholded at 0.5 on the model grid (a
        hard mask), then back linearly and thresholded;
        ``"nearest"``: nearest neighbour both ways (the source article's choice).

    Returns
    -------
    numpy.ndarray of bool
        Shape ``grid.source_shape``.

    Examples
    --------
    A ball of radius 15 mm, to a 2 mm grid and back: each way loses some of its edge.

    >>> from skullstrip_lib.lessons.evaluation_lab import sphere
    >>> from skullstrip_lib.preprocess import fit_model_grid
    >>> ball = sphere((40, 40, 40), (20, 20, 20), 15.0, 1.0)  # 1 mm voxels
    >>> grid = fit_model_grid(np.eye(4), ball.shape, ball, shape=(16, 16, 16), spacing=2.0)
    >>> [int(round_trip_mask(ball, grid, m).sum()) for m in ("fraction", "binary", "nearest")]
    [12704, 12869, 12448]
    >>> int(ball.sum())
    14147
    """
    mask = np.asarray(mask, dtype=np.float32)
    if method == "nearest":
        small = to_model_grid(mask, grid, order=0)
        return from_model_grid(small, grid, order=0) >= 0.5
    if method not in ROUND_TRIPS:
        raise ValueError(f"method must be one of {ROUND_TRIPS}, got {method!r}")
    small = to_model_grid(mask, grid, order=1)
    if method == "binary":
        small = (small >= 0.5).astype(np.float32)
    return from_model_grid(small, grid, order=1, support=0.5) >= 0.5


@fill_doc
def round_trip_dice(mask: np.ndarray, grid: ModelGrid,
                    method: Literal["fraction", "binary", "nearest"] = "fraction") -> float:
    """Dice of a mask against itself after :func:`round_trip_mask`.

    Parameters
    ----------
    %(mask_on_grid)s
    method : {"fraction", "binary", "nearest"}
        See :func:`round_trip_mask`.

    Returns
    -------
    float
        1 for a lossless round trip; the ceiling on a model's native-space
        Dice on this grid.

    Examples
    --------
    A 12 mm cube on a 3 mm grid:

    >>> from skullstrip_lib.preprocess import fit_model_grid
    >>> cube = np.pad(np.ones((12, 12, 12), bool), 6)
    >>> grid = fit_model_grid(np.eye(4), cube.shape, cube, shape=(8, 8, 8), spacing=3.0)
    >>> [round(round_trip_dice(cube, grid, m), 3) for m in ("fraction", "binary", "nearest")]
    [0.962, 0.962, 1.0]

    (Its faces fall on the grid's voxel borders, which suits nearest neighbour:
    the 15 mm ball of :func:`round_trip_mask` tells the methods apart.)
    """
    from ..metrics import dice

    return dice(round_trip_mask(mask, grid, method), np.asarray(mask, dtype=bool))


@fill_doc
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
    %(zooms)s
    title : str, optional
        Written above the first panel.
    box_color : str
        Colour of the rectangle.

    Returns
    -------
    matplotlib.figure.Figure
        The axes are widened to hold the whole grid: where it reaches beyond
        the scan's field of view, the model grid gets zeros.

    Examples
    --------
    >>> from skullstrip_lib.preprocess import fit_model_grid
    >>> head = np.ones((20, 20, 20))
    >>> grid = fit_model_grid(np.eye(4), head.shape, head > 0, shape=(8, 8, 8), spacing=3.0)
    >>> len(show_model_grid(head, grid).axes)  # three planes, the grid's box on each
    3
    """
    from matplotlib.patches import Rectangle


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

    Examples
    --------
    >>> from skullstrip_lib.lessons.evaluation_lab import sphere
    >>> ball = sphere((40, 40, 40), (20, 20, 20), 15.0, 1.0).astype("float32")
    >>> coarse = np.diag([2.0, 2.0, 2.0, 1.0])  # every other voxel: 2 mm
    >>> fig = compare_zoomed([ball, ball[::2, ::2, ::2]], [np.eye(4), coarse],
    ...                      point_mm=(20, 20, 20), titles=["1 mm", "2 mm"])
    >>> len(fig.axes)
    2
    """
    axis = plane_axis(plane)
    if len(volumes) != len(affines):
        raise ValueError("one affine per volume")
    r0, r1 = (d for d in range(3) if d != axis)
    point = np.asarray(point_mm, dtype=float)
    plt = pyplot()
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
        label_orientation(ax, plane)
        if titles is not None:
            ax.set_title(titles[p], fontsize=9)
    fig.tight_layout()
    return fig
