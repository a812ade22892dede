"""The interactive viewers: built without a kernel, they redraw when a slider moves."""

from __future__ import annotations

import numpy as np

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


