"""The head mask: where the signal is (Otsu threshold, largest component, holes filled)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "head_mask",
]


def head_mask(data: np.ndarray, zooms: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """A rough mask of the head: everything that is not air.

    The threshold is FSL BET's robust one: 10 % of the way from the 2nd to the
    98th intensity percentile. (Otsu's threshold is no good here: with air,
    scalp and brain in the histogram it often splits brain from scalp instead
    of head from air.) The largest connected component is kept and holes (dark
    skull, CSF, sinuses) are filled. The work is done on a grid of about 2 mm
    and brought back by nearest neighbour, so the mask is blocky at 1 mm: it is
    for placing the model grid and restricting N4 and normalisation, not a result.

    Parameters
    ----------
    data : numpy.ndarray
        3D intensities, shape ``(X, Y, Z)``.
    zooms : sequence of 3 floats
        Voxel size in mm.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``data``.

    Raises
    ------
    ValueError
        Nothing stands out from the background.

    Examples
    --------
    A bright ball (a "head" of radius 30 mm on 2 mm voxels) with a dark hole
    inside and a bright speck in the air: the hole is filled, the speck dropped.

    >>> x, y, z = np.ogrid[:40, :40, :40]
    >>> r2 = (x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2  # squared distance, voxels
    >>> data = np.where(r2 <= 15**2, 100.0, 0.0)
    >>> data[r2 <= 5**2] = 0.0  # a dark "ventricle"
    >>> data[2:4, 2:4, 2:4] = 100.0  # the speck
    >>> mask = head_mask(data, (2.0, 2.0, 2.0))
    >>> bool(mask[20, 20, 20]), bool(mask[2, 2, 2]), bool(mask[r2 <= 15**2].all())
    (True, False, True)
    """
    step = tuple(max(1, round(2.0 / z)) for z in zooms)
    small = np.ascontiguousarray(data[:: step[0], :: step[1], :: step[2]], dtype=np.float32)
    small = ndimage.gaussian_filter(small, 0.7)
    p2, p98 = np.percentile(small, (2, 98))
    fg = small > p2 + 0.1 * (p98 - p2)
    labels, n = ndimage.label(fg)
    if n == 0 or p98 <= p2:
        raise ValueError("nothing stands out from the background")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fg = labels == sizes.argmax()
    fg = ndimage.binary_closing(fg, iterations=2, border_value=0)
    fg = ndimage.binary_fill_holes(fg)
    # Fill slice by slice too: a head open at the edge of the field of view (a
    # cut neck) has "holes" connected to the border that 3D filling misses.
    for axis in range(3):
        fg |= np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(fg, axis, 0)],
                       axis=axis)
    # Back to the full grid by nearest neighbour, one axis at a time: each np.take
    # writes exactly its output (no oversized repeat to crop and copy again).
    for axis, (n, k) in enumerate(zip(data.shape, step, strict=True)):
        fg = np.take(fg, np.arange(n) // k, axis=axis)
    return fg
