"""Metrics against cases computed by hand."""

import numpy as np
import pytest
from helpers import ball

from skullstrip_lib import metrics


def cube(shape=(40, 40, 40), lo=(10, 10, 10), size=(10, 10, 10)):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, a + s) for a, s in zip(lo, size, strict=True))] = True
    return m


def test_identical_masks():
    a = cube()
    assert metrics.dice(a, a) == 1.0
    assert metrics.iou(a, a) == 1.0
    assert metrics.hausdorff95(a, a) == 0.0
    assert metrics.volume_difference(a, a) == 0.0


def test_disjoint_masks():
    a, b = cube(lo=(0, 0, 0)), cube(lo=(25, 25, 25))
    assert metrics.dice(a, b) == 0.0
    assert metrics.iou(a, b) == 0.0
    # Nearest surfaces: corner (9,9,9) to corner (25,25,25): 16 voxels on each axis.
    assert metrics.hausdorff95(a, b) > 16.0 * np.sqrt(3) - 1e-9


@pytest.mark.parametrize("k", [1, 2, 5])
def test_shift_by_k_voxels(k):
    a, b = cube(), cube(lo=(10 + k, 10, 10))
    # 10 x 10 x 10 cubes overlapping on (10 - k) x 10 x 10 voxels.
    overlap = (10 - k) * 100
    assert metrics.dice(a, b) == pytest.approx(2 * overlap / 2000)
    assert metrics.iou(a, b) == pytest.approx(overlap / (2000 - overlap))
    d_ab, d_ba = metrics.surface_distances(a, b)
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(k)  # the Hausdorff distance
    assert 0 < metrics.hausdorff95(a, b) <= k
    # With 3 mm voxels along the shift the distances triple.
    assert metrics.hausdorff95(a, b, spacing=(3, 1, 1)) == pytest.approx(
        3 * metrics.hausdorff95(a, b))


def test_hd95_nested_cubes_known_answer():
    # A 30^3 cube inside a 32^3 one: every face voxel is 1 voxel from the other
    # surface; only the outer cube's 368 edge and corner voxels are farther, which
    # is 3.4 % of the 10,816 pooled surface voxels, so the 95th percentile is 1.
    inner = cube((40, 40, 40), (5, 5, 5), (30, 30, 30))
    outer = cube((40, 40, 40), (4, 4, 4), (32, 32, 32))
    assert metrics.hausdorff95(inner, outer) == pytest.approx(1.0)
    assert metrics.hausdorff95(inner, outer, spacing=2.5) == pytest.approx(2.5)
    assert metrics.dice(inner, outer) == pytest.approx(2 * 27000 / (27000 + 32768))


def test_hd95_single_voxels_anisotropic():
    a = np.zeros((5, 5, 5), bool)
    b = a.copy()
    a[1, 2, 2] = b[4, 2, 2] = True
    assert metrics.hausdorff95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)


def test_empty_masks():
    e, a = np.zeros((8, 8, 8), bool), cube((8, 8, 8), (2, 2, 2), (3, 3, 3))
    assert metrics.dice(e, e) == 1.0 and metrics.iou(e, e) == 1.0
    assert metrics.hausdorff95(e, e) == 0.0
    assert metrics.dice(e, a) == 0.0 and metrics.iou(a, e) == 0.0
    assert metrics.hausdorff95(e, a) == float("inf")
    res = metrics.evaluate_masks(a, e)
    assert np.isnan(res["volume_diff_pct"])
    assert res["volume_diff_ml"] == pytest.approx(27 / 1000)


def test_volume_difference_in_ml():
    a, b = cube(size=(10, 10, 10)), cube(size=(10, 10, 5))
    # 500 extra voxels of 2 x 2 x 2 mm = 4000 mm3 = 4 mL.
    assert metrics.volume_difference(a, b, spacing=2.0) == pytest.approx(4.0)
    res = metrics.evaluate_masks(a, b, spacing=2.0)
    assert res["volume_ref_ml"] == pytest.approx(4.0)
    assert res["volume_diff_pct"] == pytest.approx(100.0)


def test_shape_mismatch_and_bad_spacing():
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        metrics.hausdorff95(cube(), cube(), spacing=(1, 0, 1))


def test_dice_of_two_balls_a_radius_apart():
    # Two balls of radius r whose centres are r apart overlap by 5/16 of a ball:
    # Dice = 5/16 exactly in the continuum.
    a = ball((120, 80, 80), (45, 40, 40), 25.0)
    b = ball((120, 80, 80), (70, 40, 40), 25.0)
    assert metrics.dice(a, b) == pytest.approx(5 / 16, abs=0.01)


def test_dice_by_height_known_answers_and_world_axis():
    ref = np.zeros((6, 6, 12), bool)
    ref[1:5, 1:5, 3:12] = True  # 9 slices: 3 per third
    pred = ref.copy()
    pred[1:5, 1:5, 0:3] = True  # 3 slices of leak below the reference
    assert metrics.dice_by_height(pred, ref) == pytest.approx([2 * 3 / (6 + 3), 1.0, 1.0])
    assert metrics.dice_lowest_third(pred, ref) == pytest.approx(2 / 3)
    # The slabs follow the world's up, not the voxel order: flip the third axis (an "I"
    # axis in the affine) and the same leak still lands in the lowest slab.
    flip = np.diag([1.0, 1.0, -1.0, 1.0])
    assert metrics.dice_by_height(pred[:, :, ::-1], ref[:, :, ::-1], flip) == pytest.approx(
        [2 / 3, 1.0, 1.0])
    # Any number of slabs; an empty reference gives plain Dice everywhere.
    assert metrics.dice_by_height(ref, ref, parts=4) == [1.0] * 4
    empty = np.zeros_like(ref)
    assert metrics.dice_by_height(empty, empty) == [1.0, 1.0, 1.0]
    assert metrics.dice_by_height(pred, empty) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        metrics.dice_by_height(pred[0], ref[0])
