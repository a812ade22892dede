"""benchmarks/bench_families.py: its families are held out, its scoring is sound."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from skullstrip_lib.io import as_tuples
from skullstrip_lib.train import SAMPLE_SYNTH, TRAINING_PROFILES, TrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_families.py"
# Every profile's synthetic groups (a profile without "synth" trains on SAMPLE_SYNTH).
GROUPS = {name: p.get("synth", SAMPLE_SYNTH) for name, p in TRAINING_PROFILES.items()}


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
    from skullstrip_lib.metrics import sphere

    mask = sphere((20, 24, 16), (10, 12, 8), 6.0)
    scores = bench.score_mask(mask, mask, (1.0, 1.2, 2.0))
    assert scores == {"dice": 1.0, "hd95_mm": 0.0, "volume_err_ml": 0.0}
    # A known difference: 2x2x2 extra voxels of 1x1.2x2 mm (2.4 uL each) = 0.0192 mL.
    bigger = mask.copy()
    bigger[:2, :2, :2] = True
    assert not mask[:2, :2, :2].any()
    assert bench.score_mask(bigger, mask, (1.0, 1.2, 2.0))["volume_err_ml"] == \
        pytest.approx(8 * 2.4e-3)
    assert np.isinf(bench.score_mask(np.zeros_like(mask), mask, 1.0)["hd95_mm"])
