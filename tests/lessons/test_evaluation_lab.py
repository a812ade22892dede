"""Tests of skullstrip_lib.lessons.evaluation_lab: three spaces, seen subjects, maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import needs_default, write_head

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset
from skullstrip_lib.evaluate import evaluate
from skullstrip_lib.io import load_mask, load_scan
from skullstrip_lib.lessons import evaluation_lab
from skullstrip_lib.lessons.evaluation_lab import (
    evaluate_spaces,
    seen_subjects,
    training_heads,
)
from skullstrip_lib.metrics import dice


def test_evaluate_spaces_native_equals_evaluate_and_grid_rows_by_hand(small_dataset):
    import numpy as np

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
    from skullstrip_lib.synth import make_head

    small = {"shape": [40, 48, 40], "voxel_size": [5.0, 5.0, 5.0]}
    config = train.resolve_config("sample", synth=[{"n": 6, **small},
                                                   {"n": 4, **small, "contrast": "t2"}])
    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    # What training itself uses: every head of every group, and one split over all of them.
    used = train.prepare._synthetic_index(config, tmp_path / "cache", progress=False)
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


@pytest.mark.slow  # one 256x256x192 head
def test_seen_subjects_of_the_bundled_model_are_its_training_heads(tmp_path):
    from skullstrip_lib import train
    from skullstrip_lib.evaluate import training_config

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


    export = tmp_path / "run" / "export"
    shutil.copytree(inference.bundled_models()["default"], export,
                    ignore=shutil.ignore_patterns("split.csv"))  # its synthetic heads
    config = yaml.safe_load((export / "config.yaml").read_text())
    config["data"] = str(small_dataset)
    (export / "config.yaml").write_text(yaml.safe_dump(config))
    seen = seen_subjects(tmp_path / "run", 5)
    index = index_dataset(small_dataset, seed=config["split_seed"])
    assert list(seen["subject"]) == list(index.loc[index["split"] == "train", "subject"])


@needs_default
def test_probability_map_thresholds_to_the_raw_mask(tmp_path):
    path, ref, _ = write_head(tmp_path, "p", seed=41, shape=(96, 112, 80),
                              voxel_size=(2.0, 2.0, 2.4))
    from skullstrip_lib.io import load_scan

    scan = load_scan(path)
    model = inference.load_model("default")
    prob, grid = evaluation_lab.probability_map(scan, model)
    assert prob.shape == scan.image.shape and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    result = inference.predict_mask(scan, model, return_prob=True)
    mask, grid2 = result.mask, result.grid
    # predict_mask = this map, thresholded, then cleaned (same grid, same mask).
    np.testing.assert_allclose(grid.affine, grid2.affine)
    np.testing.assert_array_equal(inference.postprocess_mask(prob >= model.threshold), mask)
    assert dice(prob >= 0.5, ref) > 0.9


def test_sphere_known_sizes():
    # A disc of radius 1 voxel: the centre and its four face neighbours.
    assert evaluation_lab.sphere((5, 5), (2, 2), 1.0).sum() == 5
    # Anisotropic voxels: 2 mm along the first axis, so only one neighbour each way fits in 2 mm.
    line = evaluation_lab.sphere((9, 9, 9), (4, 4, 4), 2.0, spacing=(2.0, 1.0, 1.0))
    assert line[3:6, 4, 4].all() and not line[2, 4, 4] and line[4, 2:7, 4].all()
    ball = evaluation_lab.sphere((80, 80, 80), (40, 40, 40), 25.0)
    assert ball.sum() == pytest.approx(4 / 3 * np.pi * 25**3, rel=0.01)
    with pytest.raises(ValueError, match="spacing"):
        evaluation_lab.sphere((5, 5), (2, 2), 1.0, spacing=(1.0, 0.0))
