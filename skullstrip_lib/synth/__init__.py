"""Synthetic T1-weighted heads laid out exactly like the NFBS dataset.

The NFBS repository (125 defaced T1w heads with brain masks) is the book's
training data. This package makes stand-ins for tests, CI, the CPU "sample"
profile and the bundled model: heads that look like real MPRAGE scans (brain,
CSF, skull with marrow, scalp fat, eyes, neck, defaced), written in the same
folder layout and file names, with a brain mask that is exact by construction,
or packed into an ``NFBS_Dataset.tar.gz`` laid out like the real archive.

One idea per module:

- :mod:`~skullstrip_lib.synth.settings`: what a head is made with, in three typed
  groups (:class:`GridSettings`, :class:`AnatomySettings`,
  :class:`AppearanceSettings`, together :class:`HeadSettings`), checked when made;
- :mod:`~skullstrip_lib.synth.template`: the template space around the MNI152
  brain, built once per process;
- :mod:`~skullstrip_lib.synth.anatomy`: the realistic non-brain anatomy (the thin
  skull base and what lies under and around it);
- :mod:`~skullstrip_lib.synth.appearance`: tissue intensities, random non-brain
  labels, the image in template space, scanner fields;
- :mod:`~skullstrip_lib.synth.head`: :func:`make_head`, which warps one head onto
  any grid, with its exact mask;
- :mod:`~skullstrip_lib.synth.writers`: the NFBS folder layout and archive.

Examples
--------
>>> from skullstrip_lib.synth import make_head
>>> head = make_head(1, 0, shape=(48, 48, 40), voxel_size=(4, 4, 4), skull_base="realistic")
>>> head.t1w.shape
(48, 48, 40)
"""

from __future__ import annotations

from .head import SynthHead, grid_affine, make_head, subject_id
from .settings import (
    ATROPHY_RANGE,
    BIAS_RANGE,
    CONTRASTS,
    HEAD_ARGUMENTS,
    MAX_VOXELS,
    MIN_SHAPE,
    NFBS_SHAPE,
    PITCH_RANGE_DEG,
    SCALE_RANGE,
    SKULL_BASES,
    AnatomySettings,
    AppearanceSettings,
    GridSettings,
    HeadSettings,
    check_head_kwargs,
)
from .template import BRAINSTEM_CUT_MM
from .writers import write_nfbs_archive, write_nfbs_dataset

__all__ = [
    "ATROPHY_RANGE",
    "BIAS_RANGE",
    "BRAINSTEM_CUT_MM",
    "CONTRASTS",
    "HEAD_ARGUMENTS",
    "MAX_VOXELS",
    "MIN_SHAPE",
    "NFBS_SHAPE",
    "PITCH_RANGE_DEG",
    "SCALE_RANGE",
    "SKULL_BASES",
    "AnatomySettings",
    "AppearanceSettings",
    "GridSettings",
    "HeadSettings",
    "SynthHead",
    "check_head_kwargs",
    "grid_affine",
    "make_head",
    "subject_id",
    "write_nfbs_archive",
    "write_nfbs_dataset",
]
