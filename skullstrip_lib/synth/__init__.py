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

# Each module's __all__ lists its public names; the package re-exports them all.
from . import head, settings, template, writers
from .head import *
from .settings import *
from .template import *
from .writers import *

__all__ = [*head.__all__, *settings.__all__, *template.__all__, *writers.__all__]
