"""Tests of skullstrip_lib.lessons.grids: grid boxes, mask round trips, zoom figures."""

from __future__ import annotations

import numpy as np
import pytest

from skullstrip_lib import preprocess as pp
from skullstrip_lib.lessons import grids
from skullstrip_lib.synth import make_head

SMALL = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}


def test_grid_box_in_source_known_answer():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 6.0]
    grid = pp.ModelGrid((4, 5, 6), affine, (30, 30, 30), np.eye(4))
    lo, hi = grids.grid_box_in_source(grid)
    np.testing.assert_allclose(lo, [9.0, -5.0, 5.0])
    np.testing.assert_allclose(hi, [17.0, 5.0, 17.0])


def test_round_trip_dice_ranks_the_methods():
    head = make_head(seed=5, shape=(128, 128, 96), voxel_size=(2.0, 2.0, 2.0))
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    mask = np.asarray(head.brainmask.dataobj) > 0
    grid = pp.fit_model_grid(head.t1w.affine, data.shape, pp.head_mask(data, (2.0,) * 3),
                             shape=(48, 64, 80), spacing=4.0)
    scores = {m: grids.round_trip_dice(mask, grid, m) for m in grids.ROUND_TRIPS}
    assert scores["fraction"] > scores["binary"] > scores["nearest"] > 0.9
    # "fraction" is exactly what the library does with a probability map.
    expected = pp.from_model_grid(pp.to_model_grid(mask.astype(np.float32), grid), grid) >= 0.5
    np.testing.assert_array_equal(grids.round_trip_mask(mask, grid, "fraction"), expected)
    with pytest.raises(ValueError, match="method"):
        grids.round_trip_mask(mask, grid, "cubic")


def test_show_model_grid_draws_the_box():

    head = make_head(seed=2, **SMALL)
    data = np.asarray(head.t1w.dataobj, dtype=np.float32)
    grid = pp.fit_model_grid(head.t1w.affine, data.shape, pp.head_mask(data, (4.0,) * 3),
                             shape=(40, 48, 56), spacing=4.0)
    fig = grids.show_model_grid(data, grid, zooms=(4.0, 4.0, 4.0))
    lo, hi = grids.grid_box_in_source(grid)
    axial = fig.axes[2]
    (box,) = axial.patches
    assert box.get_xy() == pytest.approx((lo[0], lo[1]))
    assert box.get_width() == pytest.approx(hi[0] - lo[0])
    # The axes hold the whole box.
    assert axial.get_xlim()[0] <= lo[0] and axial.get_xlim()[1] >= hi[0]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_compare_zoomed_places_grids_in_mm():
    import matplotlib.pyplot as plt


    fine = np.zeros((40, 40, 40), np.float32)
    fine[20:, :, :] = 1.0  # an edge at x = 19.5 mm on the 1 mm grid
    coarse = fine[::2, ::2, ::2] + 0.0
    a1 = np.eye(4)
    a2 = np.diag([2.0, 2.0, 2.0, 1.0])
    a2[:3, 3] = 0.5  # 2 mm voxels covering 1 mm voxels 2i and 2i + 1
    fig = grids.compare_zoomed([fine, coarse], [a1, a2], point_mm=(20.0, 20.0, 20.0),
                             plane="axial", window_mm=10.0, contours=[[fine > 0], [coarse > 0]])
    for ax, step in zip(fig.axes, (1.0, 2.0), strict=True):
        assert ax.get_xlim() == pytest.approx((15.0, 25.0))
        (im,) = ax.images
        assert im.get_extent()[0] == pytest.approx(-0.5)  # both grids start at -0.5 mm
        assert im.get_extent()[1] == pytest.approx(-0.5 + step * im.get_array().shape[1])
        assert ax.collections  # the outline is drawn
    plt.close(fig)
    oblique = a1.copy()
    oblique[0, 1] = 0.2
    with pytest.raises(ValueError, match="axis-aligned"):
        grids.compare_zoomed([fine], [oblique], point_mm=(0, 0, 0))
