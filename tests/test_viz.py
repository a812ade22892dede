"""The interactive viewers: built without a kernel, they redraw when a slider moves."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

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


def _drawn_at(ax):
    """Where the brightest pixel of the panel's image lies, in axes fractions (x, y)."""
    im = ax.images[0]
    arr = np.asarray(im.get_array())
    assert arr.max() > 10, "the marker is not in this slice"
    row, col = np.unravel_index(np.argmax(arr), arr.shape)
    left, right, bottom, top = im.get_extent()
    x = left + (col + 0.5) * (right - left) / arr.shape[1]
    y = bottom + (row + 0.5) * (top - bottom) / arr.shape[0]
    return ax.transAxes.inverted().transform(ax.transData.transform((x, y)))


def _letters(ax):
    """Orientation letters of a panel: {edge: (letter, (x, y) in axes fractions)}."""
    return {t.get_gid().split("-", 1)[1]: (t.get_text(), t.get_position()) for t in ax.texts
            if (t.get_gid() or "").startswith("orientation-")}


def _check(ax, horizontal, vertical):
    """The marker is drawn on the side of the `horizontal` and `vertical` letters."""
    letters = _letters(ax)
    assert set(letters) == {"left", "right", "bottom", "top"}
    x, y = _drawn_at(ax)
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


def test_compare_masks_and_montage_carry_the_letters():
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


def test_mask_convention_figure_labels_its_radiological_coronal(tmp_path):
    from skullstrip_lib.lessons import dataset_tour

    shape = (40, 48, 40)
    image = np.zeros(shape, np.float32)
    image[4:-4, 4:-4, 4:-4] = 1.0
    mask = np.zeros(shape, np.uint8)
    mask[8:-8, 8:-8, 10:-8] = 1
    marker = (30, 23, 12)  # the subject's right, in the coronal slice through the lowest mask part
    image[marker] = 50.0
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "t1w.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    fig = dataset_tour.mask_convention_figure(tmp_path / "t1w.nii.gz", tmp_path / "mask.nii.gz")
    sag, _, cor = fig.axes
    assert [_letters(sag)[e][0] for e in ("left", "right")] == ["P", "A"]
    # The coronal panel is mirrored (radiological): R on the left, where the marker is drawn.
    assert [_letters(cor)[e][0] for e in ("left", "right", "bottom", "top")] == ["R", "L", "I", "S"]
    assert _drawn_at(cor)[0] < 0.5
    viz.pyplot().close(fig)
