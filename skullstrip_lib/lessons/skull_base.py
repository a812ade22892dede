"""The skull base as a drift case: what a real one holds, and scores by height (chapter 10).

Brain masks from a network trained on heads whose brain sits in a thick dark ring
leak through a real skull base, where 1-2 mm of bone separates the brain from
muscle and fat of brain-like intensity. This module holds the chapter's drawing
of a real skull base, the synthetic conditions that stage the case, and the
Dice by thirds of the brain's height that shows where a mask goes wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import io, metrics
from ..inference import BrainModel, as_model, predict_mask

__all__ = ["SKULL_BASE_CONDITIONS", "draw_skull_base", "figure", "height_scores"]

SKULL_BASE_CONDITIONS: dict[str, dict] = {
    "uniform shell": {},
    "realistic skull base": {"skull_base": "realistic"},
    "thin skull base": {"skull_base": "thin", "warp_mm": 6.0},
}
"""Skull bases for :func:`skullstrip_lib.lessons.drift.drift_sweep`.

Condition name -> :func:`~skullstrip_lib.synth.make_head` arguments: the
generator's first head (the brain in a concentric shell of CSF, dura and a
5-9 mm skull, everywhere), a realistic skull base (the skull thinning to about
1 mm under the temporal lobes, over the orbits and under the cerebellum, muscle
and fat planes right under it, air cells, clivus and petrous bone with marrow,
dural folds and sinuses), and the thinnest base (0.5 mm floors with tissue as
grey and as bright as the head's own grey and white matter under them, the
anatomy 6 mm away from MNI152).
"""

# The drawing's outlines, in mm: x from the back of the head (negative) to the front,
# y up, the origin at the sella. A schematic of a midline section, with the structures
# that lie off the midline (the middle fossa, the petrous bone, the mastoid) dashed.
_BRAIN_TOP = (-5.0, 20.0, 86.0, 72.0)  # centre x, y and half-axes of the cerebrum's dome


def _dome(cx: float, cy: float, rx: float, ry: float, start: float, stop: float,
          n: int = 90) -> np.ndarray:
    t = np.radians(np.linspace(start, stop, n))
    return np.column_stack([cx + rx * np.cos(t), cy + ry * np.sin(t)])


def draw_skull_base(ax=None):
    """A labelled schematic of a real skull base, midline sagittal section.

    Anterior is on the right and superior at the top, as in the library's sagittal
    views. The vault is drawn as it is (5-9 mm of bone in three layers, scalp
    outside); below the brain the drawing shows what synthetic heads wrapped in a
    uniform shell lack: bone of 1-2 mm under the frontal and temporal lobes and the
    cerebellum, air in the sinuses and mastoid, bone with marrow in the clivus, the
    pituitary in the sella, the tentorium, and muscle and fat right under the base.

    Parameters
    ----------
    ax : matplotlib.axes.Axes, optional
        Where to draw (a new figure's axes by default).

    Returns
    -------
    matplotlib.axes.Axes
        The axes, in mm, with equal aspect and no ticks.

    Examples
    --------
    >>> ax = draw_skull_base()
    >>> labels = [t.get_text() for t in ax.texts]
    >>> any(t.startswith("clivus") for t in labels), any("orbital roof" in t for t in labels)
    (True, True)
    """
    from matplotlib.patches import Circle, Ellipse, Polygon

    from ..viz import pyplot

    if ax is None:
        _, ax = pyplot().subplots(figsize=(7, 6))
    bone, marrow, air = "#e8e2cf", "#f6efc8", "black"
    muscle, fat, brain, csf = "#b5655b", "#f2d77e", "#c9c0d8", "#5d6f8a"

    def poly(points, **kw):
        ax.add_patch(Polygon(np.asarray(points, float), closed=True, **kw))

    cx, cy, rx, ry = _BRAIN_TOP
    # Scalp, then the vault's three layers (outer table, diploe with marrow, inner table).
    for grow, colour in ((16, "#d9a98f"), (11, bone), (8, marrow), (3, bone)):
        poly(np.vstack([_dome(cx, cy, rx + grow, ry + grow, -8, 188),
                        _dome(cx, cy, rx, ry, 188, -8)]), facecolor=colour, edgecolor="none")
    # Muscle and fat under the skull base (pterygoid and longus capitis in front of the
    # spine, the suboccipital muscles behind it), with fat planes between.
    poly([(-8, -40), (35, -42), (42, -70), (30, -95), (-12, -95)], facecolor=muscle,
         edgecolor="none")
    poly([(8, -55), (30, -58), (25, -64), (6, -61)], facecolor=fat, edgecolor="none")
    poly([(-40, -62), (-95, -30), (-105, -60), (-95, -95), (-40, -95)], facecolor=muscle,
         edgecolor="none")
    poly([(-60, -72), (-95, -55), (-97, -62), (-62, -79)], facecolor=fat, edgecolor="none")
    # The orbit's fat and the eye; air in the frontal, ethmoid and sphenoid sinuses and
    # the nasopharynx.
    ax.add_patch(Ellipse((58, -18), 46, 30, facecolor=fat, edgecolor="none"))
    ax.add_patch(Circle((70, -17), 9, facecolor="#f7f7f7", edgecolor="grey", lw=0.5))
    ax.add_patch(Ellipse((86, 12), 9, 20, facecolor=air))
    for ex, ey in ((32, -14), (40, -12), (36, -22), (44, -21), (30, -28), (40, -30)):
        ax.add_patch(Circle((ex, ey), 3.2, facecolor=air))
    poly([(4, -14), (24, -12), (26, -30), (8, -34)], facecolor=air)
    poly([(18, -42), (38, -40), (40, -55), (22, -57)], facecolor=air)
    # The brain: cerebrum, cerebellum below the tentorium, brainstem through the
    # foramen magnum; the lowest line of the cerebrum follows the skull base.
    underside = [(cx + rx, cy - 10), (75, 2), (24, -3), (12, -6), (-4, -6), (-30, -7),
                 (-70, -8), (cx - rx, cy - 10)]
    poly(np.vstack([_dome(cx, cy, rx, ry, -8, 188)[::-1], underside]), facecolor=brain,
         edgecolor=csf, lw=1.0)
    ax.add_patch(Ellipse((-52, -28), 70, 40, facecolor=brain, edgecolor=csf, lw=1.0))
    poly([(-6, -6), (-20, -4), (-32, -62), (-20, -64)], facecolor=brain, edgecolor=csf,
         lw=1.0)
    # Thin bone under the brain: the orbital roof and the floor of the anterior fossa,
    # the occipital bone under the cerebellum.
    ax.plot([84, 75, 50, 24], [-2, 0, -2, -4], color=bone, lw=1.6, solid_capstyle="round")
    ax.plot([-34, -60, -80, -92], [-58, -52, -38, -12], color=bone, lw=1.8)
    # Sella with the pituitary, the clivus (bone with marrow) down to the foramen magnum.
    ax.add_patch(Ellipse((7, -9), 10, 7, facecolor="#8f7aa8", edgecolor=bone, lw=1.5))
    poly([(2, -14), (10, -16), (-10, -58), (-17, -55)], facecolor=marrow, edgecolor=bone,
         lw=1.5)
    # The tentorium: dura between the occipital lobes and the cerebellum; the superior
    # sagittal sinus under the vault.
    ax.plot([-4, -40, -88], [-6, -7, -9], color="#6e6e6e", lw=1.6)
    ax.add_patch(Polygon([(-12, cy + ry - 1), (2, cy + ry - 1), (-5, cy + ry - 9)],
                         facecolor="#3b1f4f"))
    # Off the midline, dashed: the middle fossa floor under the temporal lobe, the
    # petrous ridge, the mastoid air cells.
    ax.plot([24, 18, 0, -14], [-4, -30, -34, -18], color="#9a8c5c", lw=1.4, ls="--")
    ax.plot([-14, -26, -38], [-18, -30, -44], color="#9a8c5c", lw=4, ls="--", alpha=0.7)
    for mx, my in ((-40, -48), (-46, -44), (-44, -53)):
        ax.add_patch(Circle((mx, my), 2.4, facecolor="none", edgecolor=air, ls="--"))

    def label(text, xy, xytext, ha="left"):
        ax.annotate(text, xy, xytext, fontsize=7.5, ha=ha, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.25", "lw": 0.6})

    label("vault: 5-9 mm of bone,\nmarrow between two tables", (40, 79), (70, 108))
    label("superior sagittal sinus", (-5, 84), (-60, 110), ha="right")
    label("orbital roof: 1-2 mm of bone\nunder the frontal lobe", (55, -1), (98, 30))
    label("orbit: fat and the eye", (60, -24), (98, -24))
    label("frontal, ethmoid and sphenoid\nsinuses: air", (36, -22), (98, -45))
    label("pituitary in the sella", (7, -9), (-38, 12), ha="right")
    label("middle fossa floor, off the midline:\nthe temporal lobe on 1-2 mm of bone",
          (10, -32), (60, -78))
    label("clivus: bone with marrow", (-5, -40), (-58, -104), ha="right")
    label("tentorium (dura)", (-60, -8), (-105, 18), ha="right")
    label("petrous bone and\nmastoid air cells (off the midline)", (-42, -48), (-105, -16),
          ha="right")
    label("muscle and fat under the base:\ngrey- and white-matter-like on T1", (20, -80),
          (60, -100))
    label("suboccipital muscles", (-75, -80), (-105, -88), ha="right")
    ax.set_xlim(-140, 140)
    ax.set_ylim(-112, 118)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("a real skull base (schematic, midline; dashed: off the midline)", fontsize=9)
    return ax


def figure(images: list[np.ndarray], masks: list[np.ndarray], zooms: list, titles: list[str],
           *, lateral_mm: float = 35.0):
    """Synthetic heads side by side through the temporal lobe, and the drawing of a real base.

    Each head is cut by a sagittal slice ``lateral_mm`` to the left of its brain
    mask's centre, where the middle cranial fossa holds the temporal lobe, with the
    brain mask outlined; the last panel is :func:`draw_skull_base`.

    Parameters
    ----------
    images, masks : list of numpy.ndarray
        RAS volumes, shape ``(X, Y, Z)`` each, and their brain masks.
    zooms : list of 3-tuples
        Voxel sizes (mm).
    titles : list of str
        One per head.
    lateral_mm : float
        Distance of the slice from the mask's centre, to the subject's left (mm).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(images) + 1`` panels in a row.

    Examples
    --------
    >>> head = np.zeros((40, 40, 30)); head[10:30, 8:32, 5:25] = 1.0
    >>> fig = figure([head], [head > 0], [(2.0, 2.0, 2.0)], ["a box"], lateral_mm=10)
    >>> len(fig.axes), fig.axes[0].get_title()
    (2, 'a box')
    """
    from ..viz import label_orientation, mask_centre, pyplot

    n = len(images)
    fig, axes = pyplot().subplots(1, n + 1, figsize=(3.6 * n + 7, 4.6),
                                  gridspec_kw={"width_ratios": [1] * n + [2.2]})
    for ax, image, mask, zoom, title in zip(axes[:n], images, masks, zooms, titles, strict=True):
        x = mask_centre(mask, image.shape)[0] - round(lateral_mm / zoom[0])
        lo, hi = np.percentile(image, (1, 99.5))
        ax.imshow(image[x].T, cmap="gray", origin="lower", vmin=lo, vmax=hi,
                  aspect=zoom[2] / zoom[1])
        ax.contour(mask[x].T.astype(float), levels=[0.5], colors="tab:green", linewidths=0.8)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        label_orientation(ax, "sagittal")
    draw_skull_base(axes[-1])
    fig.tight_layout()
    return fig


def height_scores(model: str | BrainModel, table: pd.DataFrame) -> pd.DataFrame:
    """Dice by thirds of the brain's height for each head of a drift sweep.

    Each head is predicted again (as :func:`skullstrip_lib.evaluate.evaluate` did) and
    scored with :func:`skullstrip_lib.metrics.dice_by_height` on the scan's own grid.

    Parameters
    ----------
    model : str or BrainModel
        What :func:`skullstrip_lib.inference.as_model` accepts.
    table : pandas.DataFrame
        Rows of :func:`skullstrip_lib.lessons.drift.drift_sweep` (``condition``,
        ``subject``, ``t1w``, ``brainmask``).

    Returns
    -------
    pandas.DataFrame
        ``condition``, ``subject``, ``dice lowest third``, ``dice middle third``,
        ``dice top third`` and ``false positives in lowest third`` (the share of the
        mask's voxels outside the reference that lie in the lowest third or below).

    Examples
    --------
    >>> import tempfile
    >>> from skullstrip_lib.lessons.drift import drift_sweep
    >>> small = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}
    >>> swept = drift_sweep("default", {"clean": small}, data_dir=tempfile.mkdtemp(),
    ...                     progress=False)
    >>> scores = height_scores("default", swept)
    >>> list(scores.columns[2:5])
    ['dice lowest third', 'dice middle third', 'dice top third']
    >>> bool((scores.iloc[:, 2:5] > 0.8).all(axis=None))
    True
    """
    model = as_model(model)
    rows = []
    for row in table.itertuples(index=False):
        scan = io.load_scan(row.t1w)
        truth = io.load_mask(row.brainmask, scan)
        pred = predict_mask(scan, model)
        thirds = metrics.dice_by_height(pred, truth, scan.affine)
        rows.append({"condition": row.condition, "subject": row.subject,
                     "dice lowest third": thirds[0], "dice middle third": thirds[1],
                     "dice top third": thirds[2],
                     "false positives in lowest third": _low_share(pred, truth,
                                                                   scan.affine)})
    return pd.DataFrame(rows)


def _low_share(pred: np.ndarray, truth: np.ndarray, affine: np.ndarray) -> float:
    """Share of the false-positive voxels in the lowest third of the truth's height or below."""
    wrong = pred & ~truth
    if not wrong.any() or not truth.any():
        return float("nan")
    return float((metrics.height_slabs(truth, affine)[wrong] == 0).mean())
