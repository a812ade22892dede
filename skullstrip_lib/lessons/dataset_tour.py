"""A tour of a data set: its folder tree, its mask volumes, its leaks (chapter 2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._docs import fill_doc
from ..errors import InvalidInputError, MissingFileError
from ..viz import mask_centre, montage, plane_axis


def _human_size(n_bytes: int) -> str:
    """``1234567`` → ``"1.2 MB"`` (decimal units)."""
    if n_bytes < 1000:
        return f"{n_bytes} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n_bytes < scale * 1000 or unit == "GB":
            return f"{n_bytes / scale:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def folder_tree(root: str | os.PathLike, *, max_entries: int | None = None,
                sizes: bool = True) -> str:
    """A text drawing of a folder and everything in it, like the ``tree`` command.

    Parameters
    ----------
    root : str or path-like
        The folder to draw, e.g. a data folder holding ``NFBS_Dataset/``.
    max_entries : int or None
        Show at most this many entries per folder (sorted by name; hidden files
        included) and a ``... (N more)`` line for the rest; None shows all.
    sizes : bool
        Write each file's size after its name (decimal units: kB, MB, GB).

    Returns
    -------
    str
        One line per entry (folders end with ``/``), no trailing newline.

    Raises
    ------
    MissingFileError
        *root* is not a folder.

    Examples
    --------
    >>> print(folder_tree(fetch_nfbs(), max_entries=2))  # doctest: +SKIP
    NFBS_Dataset/
    ├── .complete.json  (3.1 kB)
    ├── A00028185/
    │   ├── sub-A00028185_ses-NFB3_T1w.nii.gz  (5.5 MB)
    ...
    """
    top = Path(root).expanduser()
    if not top.is_dir():
        raise MissingFileError(f"{top}: no such folder")
    lines = [f"{top.name}/"]

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
        hidden = 0
        if max_entries is not None and len(entries) > max_entries:
            hidden = len(entries) - max_entries
            entries = entries[:max_entries]
        for k, entry in enumerate(entries):
            last = k == len(entries) - 1 and not hidden
            branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
            if entry.is_dir() and not entry.is_symlink():
                lines.append(f"{prefix}{branch}{entry.name}/")
                walk(entry, prefix + cont)
            else:
                size = f"  ({_human_size(entry.stat().st_size)})" if sizes else ""
                lines.append(f"{prefix}{branch}{entry.name}{size}")
        if hidden:
            lines.append(f"{prefix}└── ... ({hidden} more)")

    walk(top, "")
    return "\n".join(lines)


@fill_doc
def mask_volumes(index: pd.DataFrame, *, progress: bool = False) -> pd.DataFrame:
    """Brain-mask volume and voxel grid of every subject of an index.

    Only the brain masks' data are read (and the T1w headers), so it is quick:
    a quality check that every scan has the expected grid and every mask a
    plausible volume.

    Parameters
    ----------
    index : pandas.DataFrame
        A table from :func:`index_dataset` (columns ``subject``, ``t1w``,
        ``brainmask``, ``split``).
    %(progress)s

    Returns
    -------
    pandas.DataFrame
        One row per subject, in the index's order: ``subject``, ``split``,
        ``shape`` (e.g. ``"256x256x192"``), ``voxel_mm`` (e.g. ``"1x1x1"``),
        ``orientation`` (axis codes, e.g. ``"RAS"``), ``brain_voxels`` (int,
        non-zero mask voxels) and ``brain_ml`` (float, voxels times the voxel
        volume, in millilitres).

    Raises
    ------
    InvalidInputError
        A mask's grid (shape or affine) differs from its T1w scan's.

    Examples
    --------
    >>> mask_volumes(index_dataset(fetch_nfbs()))  # doctest: +SKIP
    """
    import nibabel as nib

    rows = []
    iterator = index.itertuples(index=False)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(index), desc="mask volumes", unit="subject")
    for row in iterator:
        t1w = nib.load(row.t1w)
        mask = nib.load(row.brainmask)
        if mask.shape[:3] != t1w.shape[:3] or not np.allclose(mask.affine, t1w.affine,
                                                              atol=1e-3):
            raise InvalidInputError(row.brainmask,
                                    f"mask grid differs from that of {Path(row.t1w).name}")
        zooms = [float(z) for z in mask.header.get_zooms()[:3]]
        voxels = int(np.count_nonzero(np.asanyarray(mask.dataobj)))
        rows.append({
            "subject": row.subject,
            "split": getattr(row, "split", None),
            "shape": "x".join(str(int(s)) for s in t1w.shape[:3]),
            "voxel_mm": "x".join(f"{z:g}" for z in zooms),
            "orientation": "".join(nib.aff2axcodes(t1w.affine)),
            "brain_voxels": voxels,
            "brain_ml": voxels * float(np.prod(zooms)) / 1000.0,
        })
    return pd.DataFrame(rows, columns=["subject", "split", "shape", "voxel_mm", "orientation",
                                       "brain_voxels", "brain_ml"])


def leaking_subjects(split: Sequence[str] | pd.Series, subject: Sequence[str] | pd.Series
                     ) -> list[str]:
    """Subjects whose data fall into more than one split: a leak.

    A split must be made over subjects. Split anything finer (scans of the same
    person, slices, patches) and the same brain lands in training and test, so
    the test score measures memory of that brain rather than generalisation.

    Parameters
    ----------
    split : sequence of str
        The split of each unit (``"train"``, ``"val"``, ``"test"``), one per unit.
    subject : sequence of str
        The subject each unit comes from, aligned with *split* (same length).

    Returns
    -------
    list of str
        Sorted ids of the subjects seen in two or more splits; empty for a
        subject-level split.

    Examples
    --------
    >>> leaking_subjects(["train", "test", "train"], ["A", "A", "B"])
    ['A']
    >>> leaking_subjects(["train", "test"], ["A", "B"])
    []
    """
    split_values = [str(s) for s in split]
    subject_values = [str(s) for s in subject]
    if len(split_values) != len(subject_values):
        raise InvalidInputError(
            None, f"split and subject differ in length ({len(split_values)} vs "
                  f"{len(subject_values)})")
    seen = pd.DataFrame({"split": split_values, "subject": subject_values})
    n_splits = seen.groupby("subject")["split"].nunique()
    return sorted(n_splits.index[n_splits > 1])


def montage_index(index, *, plane: str = "axial", ncols: int = 6, max_subjects: int | None = None,
                  title_columns: Sequence[str] = ("subject", "split"),
                  mask_color: str = "tab:red"):
    """QC montage of a whole dataset: one slice of every subject's T1w, its mask outlined.

    Each scan and mask is read with :func:`skullstrip_lib.io.load_scan` and
    :func:`skullstrip_lib.io.load_mask` (checked, reoriented to RAS) and only
    the slice through the mask's centre is kept, so a dataset of any size fits in
    memory (one volume at a time).

    Parameters
    ----------
    index : pandas.DataFrame
        A table from :func:`skullstrip_lib.datasets.index_dataset` (columns
        ``t1w``, ``brainmask`` and those named in `title_columns`).
    plane : {"sagittal", "coronal", "axial"}
        The slice shown.
    ncols : int
        Panels per row.
    max_subjects : int or None
        Show only the first rows of the index; None shows all.
    title_columns : sequence of str
        Index columns joined (with " · ") into each panel's title.
    mask_color : str
        Contour colour.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    Three subjects that share one toy scan, a cube in a 12^3 volume:

    >>> import tempfile
    >>> import nibabel as nib
    >>> tmp = Path(tempfile.mkdtemp())
    >>> cube = np.pad(np.ones((6, 6, 6), "float32"), 3)
    >>> nib.save(nib.Nifti1Image(cube * 80, np.eye(4)), tmp / "t1w.nii")
    >>> nib.save(nib.Nifti1Image(cube.astype("uint8"), np.eye(4)), tmp / "mask.nii")
    >>> index = pd.DataFrame({"subject": ["a", "b", "c"], "split": ["train", "val", "test"],
    ...                       "t1w": str(tmp / "t1w.nii"), "brainmask": str(tmp / "mask.nii")})
    >>> [ax.get_title() for ax in montage_index(index, ncols=2).axes]
    ['a · train', 'b · val', 'c · test', '']
    """
    from ..io import load_mask, load_scan

    axis = plane_axis(plane)
    rows = index if max_subjects is None else index.head(max_subjects)
    images, masks, titles, zooms = [], [], [], []
    for row in rows.itertuples(index=False):
        scan = load_scan(row.t1w)
        mask = load_mask(row.brainmask, scan)
        cut = mask_centre(mask, mask.shape)[axis]
        # A one-voxel slab: montage cuts it through its own (only) slice.
        images.append(np.take(scan.data, [cut], axis=axis))
        masks.append(np.take(mask, [cut], axis=axis))
        titles.append(" · ".join(str(getattr(row, c)) for c in title_columns))
        zooms.append(scan.zooms)
    return montage(images, masks, titles=titles, plane=plane, ncols=ncols, zooms=zooms,
                   mask_color=mask_color)


def mask_convention_figure(t1w: str | os.PathLike, brainmask: str | os.PathLike, *,
                           mask_color: str = "tab:red"):
    """What a brain mask includes: the mid-sagittal slice, the vertex and the skull base.

    Three views of one subject with the mask outlined: the mid-sagittal slice
    (with the mask's lowest axial level dashed: where the brainstem is cut), a
    close-up of the top of the head (the sulcal CSF inside the outline; the CSF
    outside the brain's envelope, the dura and the skull outside), and the
    coronal slice through the brainstem (cerebellum and brainstem inside).

    Parameters
    ----------
    t1w, brainmask : path-like
        A scan and its mask (read with :func:`skullstrip_lib.io.load_scan` and
        :func:`skullstrip_lib.io.load_mask`, so shown in RAS: left of the
        picture is the subject's posterior (sagittal) or right (coronal,
        radiological convention: this figure mirrors its coronal panel, unlike
        :mod:`skullstrip_lib.viz`, whose views are neurological)). Each panel
        carries its orientation letters (:func:`skullstrip_lib.viz.label_orientation`).
    mask_color : str
        Outline colour.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile
    >>> import nibabel as nib
    >>> head = np.zeros((16, 16, 16), "float32")
    >>> head[4:12, 4:12, 5:13] = 1.0
    >>> folder = Path(tempfile.mkdtemp())
    >>> nib.save(nib.Nifti1Image(head, np.eye(4)), folder / "head.nii")
    >>> fig = mask_convention_figure(folder / "head.nii", folder / "head.nii")
    >>> [ax.get_title().split(" (")[0] for ax in fig.axes][::2]
    ['mid-sagittal', 'coronal through the brainstem']
    """
    from ..io import load_mask, load_scan
    from ..viz import label_orientation, pyplot

    plt = pyplot()
    scan = load_scan(t1w)
    mask = load_mask(brainmask, scan)
    zx, zy, zz = scan.zooms
    cx, _, _ = mask_centre(mask, mask.shape)
    sag, sag_m = scan.data[cx], mask[cx]  # (y, z)
    zs = np.nonzero(mask.any(axis=(0, 1)))[0]
    bottom, top = int(zs.min()), int(zs.max())
    # Coronal slice through the lowest part of the mask: the brainstem.
    low = mask[:, :, bottom: bottom + max(2, round(10 / zz))]
    cy = int(np.nonzero(low.any(axis=(0, 2)))[0].mean())
    cor, cor_m = scan.data[:, cy], mask[:, cy]  # (x, z)
    lo, hi = np.percentile(scan.data[mask], (1, 99.5))

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))

    def show(ax, img, msk, aspect, title, plane, flip_x=False):
        img, msk = img.T, msk.T  # rows: z (superior up with origin="lower")
        if flip_x:  # radiological: the subject's right on the viewer's left
            img, msk = img[:, ::-1], msk[:, ::-1]
        ax.imshow(img, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        ax.contour(msk, [0.5], colors=mask_color, linewidths=0.9)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        label_orientation(ax, plane, flip_lr=flip_x)

    show(axes[0], sag, sag_m, zz / zy, "mid-sagittal (P left, A right)", "sagittal")
    axes[0].axhline(bottom, color="gold", ls="--", lw=1)
    axes[0].text(2, bottom + 2, "lowest mask slice: brainstem cut", color="gold", fontsize=8,
                 va="bottom")
    # The vertex: the top 45 mm of the mask and 10 mm above it, 90 mm wide.
    ys = np.nonzero(sag_m.any(axis=1))[0]
    ymid = int(ys.mean())
    half = round(45 / zy)
    z0, z1 = max(top - round(45 / zz), 0), min(top + round(12 / zz), sag.shape[1])
    y0, y1 = max(ymid - half, 0), min(ymid + half, sag.shape[0])
    show(axes[1], sag[y0:y1, z0:z1], sag_m[y0:y1, z0:z1], zz / zy,
         "the vertex, close up: sulcal CSF inside;\nouter CSF, dura, skull outside",
         "sagittal")
    show(axes[2], cor, cor_m, zz / zx,
         "coronal through the brainstem (R left, L right)", "coronal", flip_x=True)
    fig.tight_layout()
    return fig
