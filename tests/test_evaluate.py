"""Evaluation in native space against the original masks."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from skullstrip_lib import inference
from skullstrip_lib.datasets import index_dataset, write_index
from skullstrip_lib.evaluate import evaluate, summarize, worst_cases
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
    by_hand = dice(inference.predict_mask(scan, model), load_mask(row.brainmask, scan))
    assert scores.loc[0, "dice"] == pytest.approx(by_hand)
    table = summarize(scores)
    assert list(table.columns) == ["mean", "median", "worst"]
    assert table.loc["dice", "worst"] == scores["dice"].min()
    cases = worst_cases(model, index, scores, n=2)
    assert [p.subject for p in cases] == list(scores.nsmallest(2, "dice")["subject"])
    assert [dice(p.mask, p.reference) for p in cases] == pytest.approx(
        sorted(scores["dice"])[:2])
    fig = worst_cases_figure(cases, scores, tmp_path / "worst.png")
    assert (tmp_path / "worst.png").stat().st_size > 10_000 and len(fig.axes) == 6


def test_cli_evaluate(small_dataset, tmp_path):
    index = write_index(index_dataset(small_dataset, fractions=(0.5, 0.25, 0.25)),
                        tmp_path / "index.csv")
    out, figure = tmp_path / "metrics.csv", tmp_path / "worst.png"
    cmd = [sys.executable, "-m", "skullstrip_lib", "evaluate", "--data", str(index),
           "--split", "test", "-o", str(out), "--figure", str(figure), "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "dice" in res.stdout and "median" in res.stdout
    assert len(pd.read_csv(out)) == 1
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the worst case, drawn
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1 and "already exists" in res.stderr


def test_compare_masks_draws_both_outlines():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from helpers import ball

    from skullstrip_lib.viz import compare_masks

    ref = ball((40, 40, 40), (20, 20, 20), 10.0)
    pred = ball((40, 40, 40), (22, 20, 20), 10.0)
    fig = compare_masks(ref.astype(float), ref, pred, title="toy")
    assert len(fig.axes) == 3
    # Two contour sets per panel: the reference (green) and the prediction (red).
    colours = [c.get_edgecolor()[0][:3] for c in fig.axes[0].collections]
    assert len(colours) == 2
    np.testing.assert_allclose(colours[0], matplotlib.colors.to_rgb("tab:green"))
    np.testing.assert_allclose(colours[1], matplotlib.colors.to_rgb("tab:red"))
    with pytest.raises(ValueError, match="do not match"):
        compare_masks(ref.astype(float), ref, pred[:-1])




@pytest.fixture()
def model_trained_on(tmp_path):
    """A model folder whose config.yaml says it was trained on a given index CSV."""
    import shutil

    import yaml

    from skullstrip_lib.inference import bundled_models
    from skullstrip_lib.train import resolve_config

    def make(index_csv):
        folder = tmp_path / "runs" / "trained" / "export"
        # The network alone: the bundled split.csv names its synthetic heads, not the index.
        shutil.copytree(bundled_models()["default"], folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("split.csv"))
        config = resolve_config("full", data=str(index_csv))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
        return folder

    return make


def test_evaluation_never_scores_a_subject_the_model_trained_on(small_dataset, tmp_path,
                                                                model_trained_on):
    # Chapter 7 trains on the first 4 subjects (split of 4); chapter 8 evaluates on all of
    # them with another n. Splitting the larger index again would put trained subjects in
    # its test split; the model's own stored split never does.
    from skullstrip_lib.datasets import split_subjects
    from skullstrip_lib.evaluate import training_split, unseen_subjects

    everyone = index_dataset(small_dataset, fractions=(0.5, 0.25, 0.25))
    ids = [f"S{i:03d}" for i in range(40)]
    # An index of 40 subjects, the model trained on the first 24 of them (split of 24).
    rows = everyone.iloc[[i % len(everyone) for i in range(40)]].assign(subject=ids)
    train_index = rows.iloc[:24].assign(split=split_subjects(ids[:24], seed=0).to_numpy())
    csv = write_index(train_index, tmp_path / "train_index.csv")
    model = model_trained_on(csv)
    stored = training_split(model)
    assert stored.to_dict() == dict(zip(train_index.subject, train_index.split, strict=True))
    # Evaluating on all 40 with a split recomputed for 40 subjects leaks (here S008, S012,
    # S013 and S016 become held-out subjects although the model trained on them)...
    recomputed = split_subjects(ids, seed=0)
    leaked = [s for s in ids if recomputed[s] != "train" and stored.get(s) == "train"]
    assert leaked, "the recomputed split should disagree with the stored one"
    # ... the stored split does not: no train or val subject of the model is kept.
    held_out = unseen_subjects(rows, model)
    assert not set(held_out.subject) & set(stored.index[stored != "test"])
    assert set(held_out.subject) == set(stored.index[stored == "test"]) | set(ids[24:])
    assert (held_out.split == "test").all()
    # A split.csv beside the model wins over the index.
    (model / "split.csv").write_text("subject,split\nS000,test\n")
    assert training_split(model).to_dict() == {"S000": "test"}


def test_training_split_needs_a_record(tmp_path, model_trained_on):
    from skullstrip_lib.errors import MissingFileError
    from skullstrip_lib.evaluate import training_split

    # A model trained on synthetic heads whose split.csv is not beside it.
    from skullstrip_lib.inference import bundled_models

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.onnx", "model.json", "config.yaml"):
        shutil.copy(bundled_models()["default"] / name, bare / name)
    with pytest.raises(MissingFileError, match="synthetic heads"):
        training_split(bare)
    model = model_trained_on(tmp_path / "gone.csv")
    with pytest.raises(MissingFileError, match="gone.csv: the index"):
        training_split(model)


@pytest.mark.parametrize("text", ["profile: !!python/object/apply:os.system ['true']\n",
                                  "profile: [sample\n"])
def test_training_config_of_a_bad_config_yaml_is_one_line_naming_it(tmp_path, text):
    pytest.importorskip("tensorflow")  # TrainConfig's augmentation settings need it
    from skullstrip_lib.errors import InvalidInputError
    from skullstrip_lib.evaluate import training_config

    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(InvalidInputError, match=r"config.yaml: not a valid run configuration: "
                                                r"YAML error at line [12]") as info:
        training_config(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "config.yaml"))
