"""Evaluation in native space against the original masks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset, write_index
from skullstrip_lib.evaluate import evaluate, summarize
from skullstrip_lib.io import load_mask, load_scan
from skullstrip_lib.metrics import dice
from skullstrip_lib.viz import worst_cases_figure

pytestmark = pytest.mark.skipif("default" not in inference.bundled_models(),
                                reason="no bundled default model in this checkout")


def test_evaluate_scores_each_subject_in_native_space(small_dataset, tmp_path):
    index = index_dataset(small_dataset)
    model = inference.load_model("default")
    scores = evaluate(model, index, split=None, progress=False)
    assert list(scores["subject"]) == list(index["subject"])
    assert set(scores.columns) >= {"dice", "iou", "hd95_mm", "volume_diff_ml"}
    assert scores["dice"].between(0, 1).all() and (scores["hd95_mm"] >= 0).all()
    # The same number by hand: predict, then compare with the original mask on the scan grid.
    row = index.iloc[0]
    scan = load_scan(row.t1w)
    by_hand = dice(inference.predict_mask(scan, model)[0], load_mask(row.brainmask, scan))
    assert scores.loc[0, "dice"] == pytest.approx(by_hand)
    table = summarize(scores)
    assert list(table.columns) == ["mean", "median", "worst"]
    assert table.loc["dice", "worst"] == scores["dice"].min()
    fig = worst_cases_figure(model, index, scores, tmp_path / "worst.png", n=2)
    assert (tmp_path / "worst.png").stat().st_size > 10_000 and len(fig.axes) == 6


def test_cli_evaluate(small_dataset, tmp_path):
    index = write_index(index_dataset(small_dataset, fractions=(0.5, 0.25, 0.25)),
                        tmp_path / "index.csv")
    out = tmp_path / "metrics.csv"
    cmd = [sys.executable, "-m", "skullstrip_lib", "evaluate", "--data", str(index),
           "--split", "test", "-o", str(out), "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "dice" in res.stdout and "median" in res.stdout
    assert len(pd.read_csv(out)) == 1
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and "already exists" in res.stderr


def test_compare_masks_draws_both_outlines():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from skullstrip_lib.metrics import sphere
    from skullstrip_lib.viz import compare_masks

    ref = sphere((40, 40, 40), (20, 20, 20), 10.0)
    pred = sphere((40, 40, 40), (22, 20, 20), 10.0)
    fig = compare_masks(ref.astype(float), ref, pred, title="toy")
    assert len(fig.axes) == 3
    # Two contour sets per panel: the reference (green) and the prediction (red).
    colours = [c.get_edgecolor()[0][:3] for c in fig.axes[0].collections]
    assert len(colours) == 2
    np.testing.assert_allclose(colours[0], matplotlib.colors.to_rgb("tab:green"))
    np.testing.assert_allclose(colours[1], matplotlib.colors.to_rgb("tab:red"))
    with pytest.raises(ValueError, match="do not match"):
        compare_masks(ref.astype(float), ref, pred[:-1])


