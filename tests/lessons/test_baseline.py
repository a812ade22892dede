"""Tests of skullstrip_lib.lessons.baseline: the classical brain mask of chapter 11."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from skullstrip_lib.lessons.baseline import ball, classical_brain_mask, largest_component
from skullstrip_lib.metrics import dice
from skullstrip_lib.synth import make_head


def test_ball_is_round_in_mm_on_anisotropic_voxels():
    b = ball(4.0, (1.0, 1.0, 2.0))
    assert b.shape == (9, 9, 5) and b[4, 4, 2]
    assert b[0, 4, 2] and b[4, 4, 0] and not b[0, 0, 2]  # 4 mm along each axis, not corners
    with pytest.raises(ValueError, match="radius_mm"):
        ball(0.0, (1.0, 1.0, 1.0))


def test_largest_component_of_nothing_is_nothing():
    assert not largest_component(np.zeros((3, 3, 3), bool)).any()


@pytest.mark.parametrize(("kwargs", "name"), [({"fraction": 1.0}, "fraction"),
                                              ({"close_mm": -1.0}, "close_mm")])
def test_bad_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        classical_brain_mask(np.ones((8, 8, 8)), **kwargs)


def test_a_synthetic_head_at_2_mm():
    # A generator head on a 2 mm grid: one piece, no holes, inside the head, close to the truth.
    head = make_head(seed=5, index=0, shape=(112, 128, 96), voxel_size=(2.0, 2.0, 2.0))
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    truth = np.asarray(head.brainmask.dataobj) > 0.5
    mask = classical_brain_mask(data, (2.0, 2.0, 2.0))
    assert ndimage.label(mask)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)
    assert dice(mask, truth) > 0.85
    # The threshold is relative: other units, the same mask.
    assert np.array_equal(classical_brain_mask(2.5 * data + 100.0, (2.0, 2.0, 2.0)), mask)
