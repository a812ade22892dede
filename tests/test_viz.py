"""The interactive viewers: built without a kernel, they redraw when a slider moves."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import drawn_at, orientation_letters

from skullstrip_lib import viz


def test_slice_viewer_redraws_on_slider_change():
    image = np.zeros((20, 24, 16), np.float32)
    image[5:15, 6:18, 4:12] = 1.0
    image += np.linspace(0, 0.2, image.size).reshape(image.shape)
    mask = image > 0.9
    box = viz.slice_viewer(image, mask, zooms=(1.0, 1.0, 2.0))
    sliders, view = box.children[0].children, box.children[1]
    # Starts at the mask's centre; the picture is a PNG.
    assert [s.value for s in sliders] == [10, 12, 8]
    assert [s.max for s in sliders] == [19, 23, 15]
    first = view.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    sliders[2].value = 2
    assert view.value != first and view.value[:4] == b"\x89PNG"




# --------------------------------------------------------------------------- orientation letters


MARKER = (17, 20, 13)  # towards the subject's right (high i), anterior (high j), superior (high k)


def _marked_volume(shape=(20, 24, 16)):
    """A dim box with one bright voxel on the subject's right, front and top (RAS order)."""
    image = np.zeros(shape, np.float32)
    image[3:-2, 3:-2, 3:-2] = 1.0
    image[MARKER] = 50.0
    return image


def _check(ax, horizontal, vertical):
    """The marker is drawn on the side of the `horizontal` and `vertical` letters."""
    letters = orientation_letters(ax)
    assert set(letters) == {"left", "right", "bottom", "top"}
    x, y = drawn_at(ax)
    side_x = "right" if x > 0.5 else "left"
    side_y = "top" if y > 0.5 else "bottom"
    assert letters[side_x][0] == horizontal, (letters, x)
    assert letters[side_y][0] == vertical, (letters, y)
    # The letters sit on their edges.
    assert letters["left"][1][0] < 0.1 < 0.9 < letters["right"][1][0]
    assert letters["bottom"][1][1] < 0.1 < 0.9 < letters["top"][1][1]


EXPECTED = {"sagittal": ("A", "S"), "coronal": ("R", "S"), "axial": ("R", "A")}


def test_label_orientation_letters_and_flip():
    plt = viz.pyplot()
    fig, ax = plt.subplots()
    assert viz.label_orientation(ax, "sagittal") == {"left": "P", "right": "A",
                                                     "bottom": "I", "top": "S"}
    assert viz.label_orientation(ax, "coronal", flip_lr=True) == {"left": "R", "right": "L",
                                                                  "bottom": "I", "top": "S"}
    with pytest.raises(ValueError, match="plane"):
        viz.label_orientation(ax, "oblique")
    plt.close(fig)


def test_show_planes_letters_are_on_the_marker_side():
    # An RAS array drawn as imshow(slice.T, origin="lower"): the subject's right is on the
    # viewer's right (neurological convention), anterior on the right of the sagittal view.
    image = _marked_volume()
    fig = viz.show_planes(image, cut=MARKER)
    for ax, plane in zip(fig.axes, ("sagittal", "coronal", "axial"), strict=True):
        _check(ax, *EXPECTED[plane])
    viz.pyplot().close(fig)


def test_compare_masks_and_montage_carry_theorientation_letters():
    image = _marked_volume()
    mask = image > 0.5
    fig = viz.compare_masks(image, mask, mask, cut=MARKER)
    for ax, plane in zip(fig.axes, ("sagittal", "coronal", "axial"), strict=True):
        _check(ax, *EXPECTED[plane])
    viz.pyplot().close(fig)
    for plane in ("sagittal", "coronal", "axial"):
        # The montage cuts through the mask's centre: a mask around the marker puts it there.
        around = np.zeros(image.shape, bool)
        around[tuple(slice(c - 1, c + 2) for c in MARKER)] = True
        fig = viz.montage([image], [around], plane=plane)
        _check(fig.axes[0], *EXPECTED[plane])
        viz.pyplot().close(fig)
