"""Evaluation on held-out subjects, in each scan's native space.

Scores are computed where they matter: on the scan's own voxel grid, against
the original expert mask — not on the 2 mm model grid, where resampling would
flatter (or blur) the result. Each subject goes through exactly what
``skullstrip predict`` does (:func:`skullstrip_lib.inference.predict_mask`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SkullstripError
from .inference import BrainModel, load_model, predict_mask
from .io import load_mask, load_scan
from .metrics import evaluate_masks

__all__ = ["evaluate", "summarize", "worst_cases_figure"]


def evaluate(
    model: str | os.PathLike | BrainModel,
    index: pd.DataFrame | str | os.PathLike,
    *,
    split: str | None = "test",
    progress: bool = True,
) -> pd.DataFrame:
    """Score a model on the subjects of an index, in native space.

    Parameters
    ----------
    model : str, path-like or BrainModel
        See :func:`skullstrip_lib.inference.load_model`.
    index : pandas.DataFrame or path-like
        An index (:func:`skullstrip_lib.datasets.index_dataset`) or its CSV.
    split : str or None
        Only the subjects of this split; None for all.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject``, ``dice``, ``iou``, ``hd95_mm``,
        ``volume_diff_ml``, ``volume_ref_ml``, ``volume_diff_pct``.
    """
    from tqdm.auto import tqdm

    from .datasets import read_index

    if not isinstance(index, pd.DataFrame):
        index = read_index(index)
    if split is not None:
        index = index[index["split"] == split]
        if index.empty:
            raise SkullstripError(f"the index has no subject in split {split!r}")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    rows = []
    for row in tqdm(list(index.itertuples(index=False)), desc="evaluate", unit="subject",
                    disable=not progress):
        scan = load_scan(row.t1w)
        reference = load_mask(row.brainmask, scan)
        predicted, _, _ = predict_mask(scan, model)
        rows.append({"subject": row.subject,
                     **evaluate_masks(predicted, reference, spacing=scan.zooms)})
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and worst of each score (worst = min Dice/IoU, max HD95 and |error|)."""
    cols = ["dice", "iou", "hd95_mm", "volume_diff_ml"]
    worst = {"dice": scores["dice"].min(), "iou": scores["iou"].min(),
             "hd95_mm": scores["hd95_mm"].max(),
             "volume_diff_ml": scores["volume_diff_ml"].abs().max()}
    return pd.DataFrame({"mean": scores[cols].mean(), "median": scores[cols].median(),
                         "worst": pd.Series(worst)})


def worst_cases_figure(model: str | os.PathLike | BrainModel, index: pd.DataFrame,
                       scores: pd.DataFrame, path: str | os.PathLike | None = None, *,
                       n: int = 3):
    """Three planes through the ``n`` lowest-Dice subjects: reference and prediction.

    The reference mask is outlined in green, the prediction in red.

    Returns
    -------
    matplotlib.figure.Figure
        Also saved to ``path`` when given.
    """
    from .viz import _pyplot, show_planes

    plt = _pyplot()
    if not isinstance(model, BrainModel):
        model = load_model(model)
    worst = scores.nsmallest(n, "dice")
    fig, axes = plt.subplots(len(worst), 3, figsize=(12, 4 * len(worst)), squeeze=False)
    paths = index.set_index("subject")
    for ax_row, row in zip(axes, worst.itertuples(index=False), strict=True):
        scan = load_scan(paths.loc[row.subject, "t1w"])
        reference = load_mask(paths.loc[row.subject, "brainmask"], scan)
        predicted, _, _ = predict_mask(scan, model)
        show_planes(scan.data, reference, zooms=scan.zooms, axes=ax_row, mask_color="tab:green",
                    title=f"{row.subject}: Dice {row.dice:.3f}")
        cut = tuple(round(c) for c in np.argwhere(reference).mean(axis=0))
        for ax, sl in zip(ax_row, (predicted[cut[0]], predicted[:, cut[1]],
                                   predicted[:, :, cut[2]]), strict=True):
            if sl.any():
                ax.contour(sl.T.astype(float), levels=[0.5], colors="tab:red", linewidths=1.0)
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=80)
    return fig
