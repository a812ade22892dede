"""Tests of skullstrip_lib.lessons.drift: controlled drift, changed preprocessing."""

from __future__ import annotations

import pytest
from helpers import needs_default

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset
from skullstrip_lib.evaluate import evaluate
from skullstrip_lib.lessons import drift
from skullstrip_lib.lessons.drift import DRIFT_CONDITIONS, drift_sweep


def test_drift_sweep_reference_row_equals_evaluate(small_dataset, tmp_path):

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


@needs_default
def test_with_preprocessing_changes_only_the_copy():
    model = inference.load_model("default")
    other = drift.with_preprocessing(model, normalization="minmax")
    assert other.config.normalization == "minmax" and model.config.normalization == "zscore"
    assert other.config.shape == model.config.shape and other.run is model.run
    assert other.name == "default [normalization=minmax]"
    with pytest.raises(ValueError, match="not preprocessing settings: colour"):
        drift.with_preprocessing(model, colour="red")
