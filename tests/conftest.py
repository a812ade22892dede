"""Shared fixtures: synthetic heads written once per test session."""

from __future__ import annotations

import nibabel as nib
import pytest


@pytest.fixture(scope="session")
def full_head(tmp_path_factory):
    """One synthetic head on the full NFBS grid (256x256x192, 1 mm): paths to T1w and mask."""
    from skullstrip_lib.synth import make_head

    head = make_head(seed=7, index=0)
    d = tmp_path_factory.mktemp("full_head")
    t1w, mask = d / "t1w.nii.gz", d / "mask.nii.gz"
    nib.save(head.t1w, t1w)
    nib.save(head.brainmask, mask)
    return t1w, mask


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Four small synthetic subjects (64x64x48 voxels of 4 mm) in the NFBS layout."""
    from skullstrip_lib.synth import write_nfbs_dataset

    root = tmp_path_factory.mktemp("small_nfbs")
    write_nfbs_dataset(root, 4, seed=3, progress=False, shape=(64, 64, 48),
                       voxel_size=(4.0, 4.0, 4.0))
    return root / "NFBS_Dataset"
