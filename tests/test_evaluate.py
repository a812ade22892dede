"""Evaluation in native space against the original masks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset, write_index
from skullstrip_lib.evaluate import evaluate, summarize, worst_cases_figure
from skullstrip_lib.io import load_mask, load_scan
from skullstrip_lib.metrics import dice

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


def test_evaluate_spaces_native_equals_evaluate_and_grid_rows_by_hand(small_dataset):
    import numpy as np

    from skullstrip_lib.evaluate import evaluate_spaces
    from skullstrip_lib.preprocess import from_model_grid, prepare_input, to_model_grid

    index = index_dataset(small_dataset).head(2)
    model = inference.load_model("default")
    spaces = evaluate_spaces(model, index, split=None, progress=False)
    assert len(spaces) == 6
    assert list(spaces["space"][:3]) == ["native", "model grid", "reference round trip"]
    native = spaces[spaces["space"] == "native"].reset_index(drop=True)
    plain = evaluate(model, index, split=None, progress=False)
    pd.testing.assert_frame_equal(native.drop(columns="space"), plain)
    # The grid rows by hand for the first subject.
    row = index.iloc[0]
    scan = load_scan(row.t1w)
    ref = load_mask(row.brainmask, scan)
    _, grid = prepare_input(scan, model.config)
    fraction = to_model_grid(ref.astype(np.float32), grid)
    voxel_ml = float(np.prod(grid.spacing)) / 1000
    on_grid = spaces.iloc[1]
    assert on_grid["volume_ref_ml"] == pytest.approx((fraction >= 0.5).sum() * voxel_ml)
    back = from_model_grid(fraction, grid) >= 0.5
    assert spaces.iloc[2]["dice"] == pytest.approx(dice(back, ref))
    assert 0.8 < spaces.iloc[2]["dice"] <= 1.0  # 1 here: the 4 mm scan grid is the model grid


def test_training_heads_are_the_training_runs_heads(tmp_path, monkeypatch):
    import nibabel as nib
    import numpy as np

    from skullstrip_lib import train
    from skullstrip_lib.evaluate import training_heads
    from skullstrip_lib.synth import make_head

    small = {"shape": [40, 48, 40], "voxel_size": [5.0, 5.0, 5.0]}
    config = train.resolve_config("sample", synth=[{"n": 6, **small},
                                                   {"n": 4, **small, "contrast": "t2"}])
    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    # What training itself uses: every head of every group, and one split over all of them.
    used = train._synthetic_index(config, tmp_path / "cache", progress=False)
    for split in ("train", "test"):
        n = int(((used["split"] == split) & used["subject"].str.startswith("A9101")).sum())
        if n == 0:
            continue
        seen = training_heads(config, n, split=split, group=1, data_dir=tmp_path / "d")
        expected = used[(used["split"] == split) & used["subject"].str.startswith("A9101")]
        assert list(seen["subject"]) == list(expected["subject"])
        assert (seen["split"] == split).all()
        for row, ref in zip(seen.itertuples(), expected.itertuples(), strict=True):
            np.testing.assert_array_equal(np.asarray(nib.load(row.t1w).dataobj),
                                          np.asarray(nib.load(ref.t1w).dataobj))
    first = training_heads(config, 1, split="train", group=0, data_dir=tmp_path / "d")
    index = int(first["subject"][0][-4:])
    head = make_head(100, index, shape=(40, 48, 40), voxel_size=(5.0, 5.0, 5.0))
    np.testing.assert_array_equal(np.asarray(nib.load(first["brainmask"][0]).dataobj),
                                  np.asarray(head.brainmask.dataobj))
    with pytest.raises(Exception, match="only"):
        training_heads(config, 50, group=0, data_dir=tmp_path / "d")


def test_drift_sweep_reference_row_equals_evaluate(small_dataset, tmp_path):
    from skullstrip_lib.evaluate import DRIFT_CONDITIONS, drift_sweep

    assert next(iter(DRIFT_CONDITIONS.items())) == ("T1 (as trained)", {})
    small = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}  # as small_dataset's heads
    model = inference.load_model("default")
    table = drift_sweep(model, {"as made": small, "T2": {**small, "contrast": "t2"}},
                        n_heads=1, seed=3, data_dir=tmp_path, progress=False)
    assert list(table["condition"]) == ["as made", "T2"]
    assert table["subject"].nunique() == 1  # the same subject under both conditions
    index = index_dataset(small_dataset).head(1)
    plain = evaluate(model, index, split=None, progress=False)
    assert table.loc[0, "dice"] == pytest.approx(plain.loc[0, "dice"])
    assert table.loc[1, "dice"] != table.loc[0, "dice"]
    assert {"t1w", "brainmask", "hd95_mm"} <= set(table.columns)


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


@pytest.mark.slow  # one 256x256x192 head
def test_seen_subjects_of_the_bundled_model_are_its_training_heads(tmp_path):
    from skullstrip_lib import train
    from skullstrip_lib.evaluate import seen_subjects, training_config

    config = training_config("default")
    assert config.profile == "default" and config.data is None
    assert config.synth == train.resolve_config("default").synth
    assert training_config(inference.load_model("default")).synth_seed == 100
    seen = seen_subjects("default", 1, data_dir=tmp_path)
    # Group 0 of the default profile is seed 100; its head 0 is in the training split.
    assert list(seen["subject"]) == ["A91000000"] and list(seen["split"]) == ["train"]
    with pytest.raises(Exception, match="no config.yaml"):
        training_config(tmp_path)


def test_seen_subjects_from_an_index(small_dataset, tmp_path):
    import shutil

    import yaml

    from skullstrip_lib.evaluate import seen_subjects

    export = tmp_path / "run" / "export"
    shutil.copytree(inference.bundled_models()["default"], export)
    config = yaml.safe_load((export / "config.yaml").read_text())
    config["data"] = str(small_dataset)
    (export / "config.yaml").write_text(yaml.safe_dump(config))
    seen = seen_subjects(tmp_path / "run", 5)
    index = index_dataset(small_dataset, seed=config["split_seed"])
    assert list(seen["subject"]) == list(index.loc[index["split"] == "train", "subject"])
