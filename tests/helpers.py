"""Small helpers shared by several test modules (pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from skullstrip_lib import inference
from skullstrip_lib.datasets import nfbs_filenames
from skullstrip_lib.synth import make_head

IDS = ["A00000300", "A00000100", "A00000500", "A00000200", "A00000400"]  # not sorted
SORTED_IDS = sorted(IDS)
KINDS = ("t1w", "brainmask", "brain")

needs_default = pytest.mark.skipif("default" not in inference.bundled_models(),
                                   reason="no bundled default model in this checkout")


def file_name(subject: str, kind: str) -> str:
    """The NFBS file name of one of a subject's three files."""
    return nfbs_filenames(subject)[kind]


def write_tiny_nfbs(parent: Path, ids=IDS, skip: tuple[str, str] | None = None) -> Path:
    """Write parent/NFBS_Dataset/<ID>/ with three tiny NIfTI files per subject."""
    root = parent / "NFBS_Dataset"
    for n, subject in enumerate(ids):
        folder = root / subject
        folder.mkdir(parents=True, exist_ok=True)
        for k, kind in enumerate(KINDS):
            if skip == (subject, kind):
                continue
            data = np.full((6, 6, 5), 10 * n + k, dtype=np.uint8)
            nib.save(nib.Nifti1Image(data, np.eye(4)), folder / file_name(subject, kind))
    return root


def write_head(tmp_path, name, **kwargs):
    """A synthetic head's T1w written as ``<name>.nii.gz``: (path, true mask, the head)."""
    head = make_head(**kwargs)
    path = tmp_path / f"{name}.nii.gz"
    nib.save(head.t1w, path)
    return path, np.asarray(head.brainmask.dataobj) > 0, head


def drawn_at(ax):
    """Where the brightest pixel of the panel's image lies, in axes fractions (x, y)."""
    im = ax.images[0]
    arr = np.asarray(im.get_array())
    assert arr.max() > 10, "the marker is not in this slice"
    row, col = np.unravel_index(np.argmax(arr), arr.shape)
    left, right, bottom, top = im.get_extent()
    x = left + (col + 0.5) * (right - left) / arr.shape[1]
    y = bottom + (row + 0.5) * (top - bottom) / arr.shape[0]
    return ax.transAxes.inverted().transform(ax.transData.transform((x, y)))


def orientation_letters(ax):
    """Orientation letters of a panel: {edge: (letter, (x, y) in axes fractions)}."""
    return {t.get_gid().split("-", 1)[1]: (t.get_text(), t.get_position()) for t in ax.texts
            if (t.get_gid() or "").startswith("orientation-")}


def ball(shape, centre, radius: float) -> np.ndarray:
    """A ball mask on 1 mm voxels: the voxels whose centre lies within ``radius`` of ``centre``.

    The pipeline's tests make their own; the chapters' is
    ``skullstrip_lib.lessons.evaluation_lab.sphere``.
    """
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2
