"""The ablation of the source article's defects (lessons.ablation, benchmarks/ablation.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from skullstrip_lib.io import load_scan
from skullstrip_lib.lessons import ablation, unet_anatomy
from skullstrip_lib.lessons.unet_anatomy import layer_inputs
from skullstrip_lib.model import build_unet
from skullstrip_lib.preprocess import prepare_input
from skullstrip_lib.train import resolve_config

# A profile small enough to train in seconds: 6 heads of 64x64x48 voxels of 4 mm.
TINY = {"synth": [{"n": 6, "shape": [64, 64, 48], "voxel_size": [4.0, 4.0, 4.0]}],
        "preprocess": {"shape": [32, 32, 32], "spacing": 6.0, "n4": "none",
                       "normalization": "zscore"},
        "base_filters": 4, "depth": 2, "epochs": 2, "steps_per_epoch": 1, "batch_size": 2}


def test_source_block_skips_its_first_convolution():
    fixed = build_unet((16, 16, 16, 1), base_filters=4, depth=2)
    broken = build_unet((16, 16, 16, 1), base_filters=4, depth=2, block=ablation.source_block)
    wiring = layer_inputs(broken)
    # The second convolution reads the block's input (the model input, the pooled map).
    assert wiring["enc0_conv2"] == ["t1w"] and wiring["enc1_conv2"] == ["enc0_pool"]
    assert layer_inputs(fixed)["enc0_conv2"] == ["enc0_relu1"]
    names = {layer.name for layer in broken.layers}
    assert not any(n.endswith(("_conv1", "_norm1")) for n in names)
    # Per block (c_in -> c_out channels): conv1 (27 c_in c_out, no bias) and norm1 (2 c_out)
    # are gone, and conv2 reads c_in channels instead of c_out.
    blocks = {"enc0": (1, 4), "enc1": (4, 8), "dec0": (8 + 4, 4)}
    assert fixed.count_params() - broken.count_params() == sum(
        27 * c_out * c_out + 2 * c_out for _, c_out in blocks.values())


def test_output_kernel_swapped_and_body_shared():
    model = build_unet((16, 16, 16, 1), base_filters=4, depth=2)
    other = unet_anatomy.with_output_kernel(model, (1, 1, 2))
    assert tuple(other.get_layer("mask").kernel.shape) == (1, 1, 2, 4, 1)
    assert other.get_layer("dec0_conv2") is model.get_layer("dec0_conv2")
    assert other.count_params() == model.count_params() + 4  # one more weight per channel
    out = other(np.zeros((1, 16, 16, 16, 1), np.float32)).numpy()
    assert out.shape == (1, 16, 16, 16, 1) and np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("name", list(ablation.DEFECTS))
def test_build_model_for_each_defect(name):
    config = resolve_config("sample", **TINY)
    model = ablation.build_model(config, ablation.DEFECTS[name])
    assert model.output_shape == (None, 32, 32, 32, 1)
    kernel = model.get_layer("mask").kernel.shape[:3]
    assert tuple(kernel) == ((1, 1, 2) if name == "kernel" else (1, 1, 1))
    assert ("enc0_conv1" in {layer.name for layer in model.layers}) is (name != "block")


def test_prepare_changes_only_what_the_defect_changes(small_dataset):
    config = resolve_config("sample", **TINY)
    scan = load_scan(next(small_dataset.glob("*/*_T1w.nii.gz")))
    fixed, grid = prepare_input(scan, config.preprocess)
    same, _ = ablation.prepare(scan, config, ablation.DEFECTS["focal"])
    np.testing.assert_array_equal(same, fixed)

    rescaled, grid_r = ablation.prepare(scan, config, ablation.DEFECTS["rescale"])
    assert rescaled.min() == 0 and rescaled.max() == pytest.approx(255)
    np.testing.assert_array_equal(grid_r.affine, grid.affine)
    # The same image up to the scale: the rescale is an affine map of the raw intensities.
    raw, _ = prepare_input(scan, dataclasses.replace(config.preprocess, normalization="none"))
    assert np.corrcoef(raw.ravel(), rescaled.ravel())[0, 1] == pytest.approx(1.0, abs=1e-6)

    nearest, _ = ablation.prepare(scan, config, ablation.DEFECTS["nearest"])
    raw_nn, _ = prepare_input(scan, dataclasses.replace(config.preprocess, normalization="none",
                                                        interpolation="nearest"))
    # Nearest neighbour only copies scan voxels (and the background padding).
    values = set(np.unique(scan.data).tolist()) | {float(scan.background)}
    assert set(np.unique(raw_nn).tolist()) <= values
    assert not np.array_equal(nearest, fixed)


def _scores(rows):
    return pd.DataFrame(rows, columns=["defect", "seed", "subject", "split", "dice", "hd95_mm"])


def test_summarize_by_hand():
    rows = []
    for seed, (a, b) in enumerate([(0.9, 0.8), (0.7, 0.6)]):  # pipeline: seed means 0.85, 0.65
        rows += [("none", seed, "h1", "test", a, 2.0), ("none", seed, "h2", "test", b, 4.0),
                 ("none", seed, "v1", "val", 0.95, 1.0)]
        rows += [("adam", seed, "h1", "test", a - 0.5, np.inf),
                 ("adam", seed, "h2", "test", b - 0.5, 8.0)]
    table = ablation.summarize(_scores(rows))
    fixed, adam = table.loc["the book's pipeline"], table.loc["Adam at 0.1"]
    assert fixed.dice == pytest.approx(0.75) and fixed.dice_sd == pytest.approx(np.std(
        [0.85, 0.65], ddof=1))
    assert (fixed.dice_min, fixed.dice_max) == pytest.approx((0.65, 0.85))
    assert adam.delta_dice == pytest.approx(-0.5) and adam.worst_dice == pytest.approx(0.1)
    assert adam.hd95_mm == np.inf or adam.hd95_mm == pytest.approx(np.median([np.inf, 8.0] * 2))
    assert (adam.failed, adam.masks, adam.seeds, adam.heads) == (4, 4, 2, 2)
    split = table.loc[ablation.NO_TEST_SPLIT]
    assert split.dice == pytest.approx(0.95) and split.delta_dice == pytest.approx(0.2)
    assert list(table.index) == ["the book's pipeline", "Adam at 0.1", ablation.NO_TEST_SPLIT]
    text = ablation.markdown_table(table, {"command": "make ablation", "machine": "2 cores",
                                           "date": "2026-12-05", "minutes": 3.0})
    assert "| Adam at 0.1 | 0.250 ± 0.141 | 0.150 to 0.350 | -0.500 |" in text
    assert "`make ablation` on 2 cores, 2026-12-05" in text


def test_run_ablation_end_to_end_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("SKULLSTRIP_DATA", str(tmp_path / "data"))
    config = resolve_config("sample", **TINY)
    kwargs = {"config": config, "work_dir": tmp_path / "work", "extra_per_group": 1,
              "progress": False}
    scores = ablation.run_ablation(["kernel"], seeds=[0, 1], **kwargs)
    # 6 heads split 4/1/1, plus 1 extra held-out: 2 held-out and 1 validation head a run.
    assert sorted(scores.groupby(["defect", "seed"]).size().unique()) == [3]
    assert set(scores["defect"]) == {"none", "kernel"} and set(scores["seed"]) == {0, 1}
    assert scores["split"].value_counts().to_dict() == {"test": 8, "val": 4}
    assert scores["dice"].between(0, 1).all() and (scores["best_epoch"] >= 1).all()
    assert len(list((tmp_path / "work").glob("data-*"))) == 1  # kernel shares the data
    # Run again: the finished runs are read back, not trained again.
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*-seed*/scores.csv")}
    assert len(finished) == 4
    again = ablation.run_ablation(["kernel"], seeds=[0, 1], **kwargs)
    pd.testing.assert_frame_equal(again, scores)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    with pytest.raises(ValueError, match="unknown defect 'dropout'"):
        ablation.run_ablation(["dropout"], **kwargs)


def test_recorded_ablation_covers_every_defect():
    scores, made = ablation.recorded()
    assert set(scores["defect"]) == set(ablation.DEFECTS)
    assert scores.groupby("defect")["seed"].nunique().min() >= 3
    # Every run scored on the same heads, with the same seeds.
    heads = scores.groupby(["defect", "seed"])["subject"].apply(frozenset)
    assert heads.nunique() == 1
    assert {"command", "machine", "date", "minutes"} <= set(made)
    table = ablation.summarize(scores)
    assert list(table.index[:len(ablation.DEFECTS)]) == [d.label for d in
                                                          ablation.DEFECTS.values()]


def test_plot_ablation_one_row_per_run():
    rows = [(d, seed, h, "test", 0.9 - 0.1 * i, 2.0) for i, d in enumerate(["none", "adam"])
            for seed in (0, 1) for h in ("h1", "h2")]
    rows += [("none", seed, "v1", "val", 0.95, 1.0) for seed in (0, 1)]
    fig = ablation.plot_ablation(_scores(rows))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "the book's pipeline", "Adam at 0.1", ablation.NO_TEST_SPLIT]
    assert ax.lines[-1].get_xdata()[0] == pytest.approx(0.9)  # the pipeline's mean, dashed
