"""Tests of skullstrip_lib.lessons.dataset_tour: folder trees, mask volumes, leaks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from helpers import SORTED_IDS, drawn_at, orientation_letters, write_tiny_nfbs

from skullstrip_lib import datasets as ds
from skullstrip_lib.errors import InvalidInputError, MissingFileError
from skullstrip_lib.lessons import dataset_tour as tour
from skullstrip_lib.viz import pyplot


def test_folder_tree_draws_every_entry_with_sizes(tmp_path):
    root = tmp_path / "data"
    (root / "NFBS_Dataset" / "B").mkdir(parents=True)
    (root / "NFBS_Dataset" / "A").mkdir()
    (root / "NFBS_Dataset" / "A" / "a.nii.gz").write_bytes(b"x" * 12)
    (root / "NFBS_Dataset" / "A" / "b.nii.gz").write_bytes(b"x" * 2_500)
    (root / "NFBS_Dataset" / "B" / "c.nii.gz").write_bytes(b"x" * 3_400_000)
    (root / "params.json").write_text("{}")
    assert tour.folder_tree(root) == "\n".join([
        "data/",
        "├── NFBS_Dataset/",
        "│   ├── A/",
        "│   │   ├── a.nii.gz  (12 B)",
        "│   │   └── b.nii.gz  (2.5 kB)",
        "│   └── B/",
        "│       └── c.nii.gz  (3.4 MB)",
        "└── params.json  (2 B)",
    ])
    assert tour.folder_tree(root / "NFBS_Dataset", max_entries=1, sizes=False) == "\n".join([
        "NFBS_Dataset/",
        "├── A/",
        "│   ├── a.nii.gz",
        "│   └── ... (1 more)",
        "└── ... (1 more)",
    ])
    with pytest.raises(MissingFileError):
        tour.folder_tree(tmp_path / "nowhere")


def test_mask_volumes_counts_voxels_in_millilitres(tmp_path):
    root = write_tiny_nfbs(tmp_path, ids=SORTED_IDS[:2])
    index = ds.index_dataset(root)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])  # 12 mm³ voxels
    for n, row in enumerate(index.itertuples()):
        t1w = np.zeros((6, 6, 5), np.int16)
        mask = np.zeros((6, 6, 5), np.uint8)
        mask[: n + 1, :2, :] = 1  # 10 and 20 voxels
        nib.save(nib.Nifti1Image(t1w, affine), row.t1w)
        nib.save(nib.Nifti1Image(mask, affine), row.brainmask)
    table = tour.mask_volumes(index)
    assert table["subject"].tolist() == SORTED_IDS[:2]
    assert table["brain_voxels"].tolist() == [10, 20]
    assert table["brain_ml"].tolist() == pytest.approx([0.12, 0.24])
    assert table["shape"].tolist() == ["6x6x5", "6x6x5"]
    assert table["voxel_mm"].tolist() == ["2x2x3", "2x2x3"]
    assert table["orientation"].tolist() == ["RAS", "RAS"]
    assert table["split"].tolist() == index["split"].tolist()
    # A mask on another grid is refused.
    nib.save(nib.Nifti1Image(np.ones((6, 6, 5), np.uint8), np.eye(4)), index.brainmask[0])
    with pytest.raises(InvalidInputError, match="grid differs"):
        tour.mask_volumes(index)


def test_leaking_subjects():
    subjects = [f"S{i}" for i in range(20)]
    # Subject-level split: every unit of a subject carries that subject's split.
    by_subject = ds.split_subjects(subjects, seed=0)
    units = [(s, z) for s in subjects for z in range(10)]
    assert tour.leaking_subjects([by_subject[s] for s, _ in units], [s for s, _ in units]) == []
    # Unit-level (slice) split: subjects end up on both sides.
    by_unit = ds.split_subjects([f"{s}-z{z}" for s, z in units], seed=0)
    leaked = tour.leaking_subjects([by_unit[f"{s}-z{z}"] for s, z in units],
                                 [s for s, _ in units])
    assert len(leaked) > 10
    assert tour.leaking_subjects(["train", "val", "train"], ["B", "B", "A"]) == ["B"]
    with pytest.raises(InvalidInputError, match="length"):
        tour.leaking_subjects(["train"], ["A", "B"])


def test_montage_index_shows_every_subject(small_dataset):
    import matplotlib

    matplotlib.use("Agg")

    index = ds.index_dataset(small_dataset)
    fig = tour.montage_index(index, ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == len(index) == 4
    assert [ax.get_title() for ax in shown] == [f"{r.subject} · {r.split}"
                                                for r in index.itertuples()]
    assert all(ax.collections for ax in shown)  # a mask contour on each
    fig2 = tour.montage_index(index, plane="sagittal", max_subjects=2, title_columns=("subject",))
    assert [ax.get_title() for ax in fig2.axes if ax.images] == index.subject[:2].tolist()
    with pytest.raises(ValueError, match="plane"):
        tour.montage_index(index, plane="oblique")
    matplotlib.pyplot.close("all")


def test_mask_convention_figure_marks_the_brainstem_cut(tmp_path):
    from skullstrip_lib.synth import make_head

    head = make_head(1, 0, shape=(96, 112, 96), voxel_size=(2.0, 2.0, 2.0))
    nib.save(head.t1w, tmp_path / "t1w.nii.gz")
    nib.save(head.brainmask, tmp_path / "mask.nii.gz")
    fig = tour.mask_convention_figure(tmp_path / "t1w.nii.gz", tmp_path / "mask.nii.gz")
    assert len(fig.axes) == 3
    # The dashed line sits on the mask's lowest axial slice (RAS: axis 2).
    mask = np.asarray(nib.as_closest_canonical(head.brainmask).dataobj) > 0
    lowest = np.nonzero(mask.any(axis=(0, 1)))[0].min()
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert line.get_ydata()[0] == lowest
    # Every panel outlines the mask.
    assert all(ax.collections for ax in fig.axes)


def test_mask_convention_figure_labels_its_radiological_coronal(tmp_path):
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
    fig = tour.mask_convention_figure(tmp_path / "t1w.nii.gz", tmp_path / "mask.nii.gz")
    sag, _, cor = fig.axes
    assert [orientation_letters(sag)[e][0] for e in ("left", "right")] == ["P", "A"]
    # The coronal panel is mirrored (radiological): R on the left, where the marker is drawn.
    edges = ("left", "right", "bottom", "top")
    assert [orientation_letters(cor)[e][0] for e in edges] == ["R", "L", "I", "S"]
    assert drawn_at(cor)[0] < 0.5
    pyplot().close(fig)
