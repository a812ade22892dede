"""benchmarks/bench_families.py: its families are held out, its scoring is sound."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ball

from skullstrip_lib.io import as_tuples
from skullstrip_lib.train import REALISTIC_SYNTH, SAMPLE_SYNTH, TRAINING_PROFILES, TrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_families.py"
# Every profile's synthetic groups (a profile without "synth" trains on SAMPLE_SYNTH).
# And the next bundled model's groups, not yet a profile's.
GROUPS = {name: p.get("synth", SAMPLE_SYNTH) for name, p in TRAINING_PROFILES.items()}
GROUPS["realistic (next default)"] = REALISTIC_SYNTH


@pytest.fixture(scope="module")
def bench():
    # A script, not a package module: load it from its path.
    spec = importlib.util.spec_from_file_location("bench_families", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclass/annotation look-ups need it
    spec.loader.exec_module(module)
    return module


def test_family_seeds_are_distinct_and_held_out(bench):
    seeds = [f["seed"] for f in bench.FAMILIES.values()]
    assert len(set(seeds)) == len(seeds)
    assert min(seeds) >= 7000
    # Training uses synth_seed + group number; the drift sweep's seed is its own too.
    # (The field's default, not TrainConfig(): that would import TensorFlow.)
    synth_seed = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == "synth_seed")
    training = {synth_seed + g for groups in GROUPS.values() for g in range(len(groups))}
    assert not training & {*seeds, bench.DRIFT_SEED}
    assert bench.DRIFT_SEED not in seeds


def test_no_family_is_a_training_group(bench):
    groups = [as_tuples({k: v for k, v in g.items() if k != "n"})
              for profile in GROUPS.values() for g in profile]
    assert {} in groups  # the comparison is like for like: NFBS-grid T1 heads are a group
    for name, family in bench.FAMILIES.items():
        assert set(family) <= {"seed", "kwargs", "about", "offset"}, name
        assert family["about"] and "\n" not in family["about"], name
        assert as_tuples(dict(family["kwargs"])) not in groups, name


def test_missing_setting(bench):
    assert bench.missing_setting({"shape": (8, 8, 8)}) is None
    assert bench.missing_setting({"no_such_argument": 1}) == "make_head has no 'no_such_argument'"
    assert bench.missing_setting({"contrast": "sepia"}) == "make_head has no contrast 'sepia'"


def test_score_mask_of_a_mask_against_itself(bench):
    mask = ball((20, 24, 16), (10, 12, 8), 6.0)
    scores = bench.score_mask(mask, mask, (1.0, 1.2, 2.0))
    fp_share = scores.pop("fp_low_share")
    assert scores == {"dice": 1.0, "hd95_mm": 0.0, "volume_err_ml": 0.0, "dice_low": 1.0,
                      "dice_mid": 1.0, "dice_top": 1.0}
    assert np.isnan(fp_share)  # no false positives
    # A known difference: 2x2x2 extra voxels of 1x1.2x2 mm (2.4 uL each) = 0.0192 mL.
    bigger = mask.copy()
    bigger[:2, :2, :2] = True
    assert not mask[:2, :2, :2].any()
    assert bench.score_mask(bigger, mask, (1.0, 1.2, 2.0))["volume_err_ml"] == \
        pytest.approx(8 * 2.4e-3)
    assert np.isinf(bench.score_mask(np.zeros_like(mask), mask, 1.0)["hd95_mm"])


def test_score_mask_finds_a_leak_below_the_brain(bench):
    # A leak under the brain (what real heads show through the skull base): the lowest
    # third's Dice drops, the others stay 1, and every false positive is counted low.
    truth = ball((30, 30, 40), (15, 15, 22), 9.0)
    pred = truth | ball((30, 30, 40), (15, 15, 10), 5.0)
    # The grid's third axis points down (an "I" axis): "low" must follow the world.
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    scores = bench.score_mask(pred[:, :, ::-1], truth[:, :, ::-1], 1.0, flip)
    assert scores["dice_low"] < 0.9 and scores["dice_mid"] == scores["dice_top"] == 1.0
    assert scores["fp_low_share"] == 1.0


def test_skull_base_families_use_the_realistic_anatomy(bench):
    names = ["skull_base_thin", "nonbrain_brainlike", "bias_strong_base", "tight_fov_neck_1.5mm"]
    for name in names:
        assert bench.FAMILIES[name]["kwargs"]["skull_base"] in ("realistic", "thin")
        assert bench.missing_setting(bench.FAMILIES[name]["kwargs"]) is None
    assert bench.missing_setting({"skull_base": "cartoon"}) == \
        "make_head has no skull_base 'cartoon'"
