"""Synthetic T1-weighted heads laid out exactly like the NFBS dataset.

The NFBS repository (125 defaced T1w heads with brain masks) is the book's
training data. This module makes stand-ins for tests, CI and the CPU "sample"
profile: heads that look like real MPRAGE scans (brain, CSF, skull with
marrow, scalp fat, eyes, neck, defaced), written in the same folder layout and
file names, with a brain mask that is exact by construction, or packed into an
``NFBS_Dataset.tar.gz`` laid out like the real archive (:func:`write_nfbs_archive`).

How a head is made
------------------
1. Once per process (:func:`_template`), a padded template space around the
   MNI152 2009a brain (nilearn's bundled, skull-stripped GM/WM/brain maps) is
   built: tissue fractions, the brain mask, an intracranial volume (ICV), its
   signed distance map, a head shape (cranium + face + ears + neck) and its
   signed distance map, and a label volume of extracranial structures (eyes,
   orbital fat, sinuses, airway, mandible, vertebrae, ...).
2. Per subject, tissue intensities are drawn at random and turned into an image
   in template space: partial-volume layers along the two distance maps (CSF
   rim, dura, inner table, diploe, outer table, galea, fat, skin, air).
3. The output grid (any affine) is mapped to template coordinates through the
   inverse of a random affine + smooth elastic transform. The coordinate map is
   computed on every 4th voxel and upsampled linearly (it is smooth), then the
   image and the brain mask are resampled with the same map, so the mask fits
   the image exactly.
4. Bias field, texture, blur, Rician noise and defacing are applied on the
   output grid and the result is stored as int16, like a scanner would.
"""

from __future__ import annotations

import functools
import gzip
import io
import itertools
import json
import math
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .datasets import NFBS_FOLDER, nfbs_filenames
from .errors import OutputExistsError, SkullstripError
from .io import atomic_path, atomic_write_text, to_plain

__all__ = [
    "NFBS_SHAPE",
    "SynthHead",
    "grid_affine",
    "make_head",
    "subject_id",
    "write_nfbs_archive",
    "write_nfbs_dataset",
]

NFBS_SHAPE = (256, 256, 192)
"""Voxel grid of an NFBS T1w scan (1 mm isotropic)."""

#: Bumped whenever the generator's output changes, so stale datasets are detected.
_SYNTH_VERSION = 2

# Template space: MNI152 mm, padded so the whole head and neck fit (1 mm voxels).
_TMPL_LO = np.array([-110.0, -140.0, -135.0])
_TMPL_SHAPE = (221, 266, 256)
_MNI_OFFSET = (12, 6, 63)  # MNI voxel (0,0,0) = (-98,-134,-72) mm sits here in the template
_LEVEL_FACTORS = (1, 2, 4)  # template pyramid: 1, 2 and 4 mm

# Nominal thickness (mm) from the ICV surface to the template head surface at the vertex.
_CRANIUM_MM = 8.0

# Labels of extracranial structures; 0 means "soft tissue by depth" (skin, fat, muscle).
_SOFT, _FAT, _MUSCLE, _VITREOUS, _LENS, _SCLERA, _NERVE, _AIR, _BONE, _MARROW, _DISC, _GLAND = (
    range(12)
)
_LABEL_TISSUE = (
    "muscle", "fat", "muscle", "vitreous", "lens", "sclera", "nerve", "air", "bone", "marrow",
    "disc", "gland",
)  # fmt: skip

# T1 (MPRAGE-like) tissue intensity ranges relative to WM = 1.
_T1_RANGES = {
    "wm": (1.0, 1.0),
    "gm": (0.55, 0.72),
    "csf": (0.06, 0.30),
    "dura": (0.25, 0.45),
    "bone": (0.02, 0.10),
    "diploe": (0.55, 1.0),
    "muscle": (0.38, 0.58),
    "fat": (1.05, 1.45),
    "skin": (0.55, 0.85),
    "vitreous": (0.06, 0.20),
    "lens": (0.45, 0.75),
    "sclera": (0.20, 0.40),
    "nerve": (0.70, 0.90),
    "air": (0.0, 0.03),
    "marrow": (0.35, 1.15),  # dark (red marrow, young) to bright (fatty marrow, older)
    "disc": (0.30, 0.50),
    "gland": (0.75, 1.00),
}
# T2-like ranges (CSF and fluid bright, WM darker than GM).
_T2_RANGES = {
    "wm": (1.0, 1.0),
    "gm": (1.25, 1.55),
    "csf": (2.2, 3.0),
    "dura": (0.30, 0.50),
    "bone": (0.02, 0.10),
    "diploe": (0.9, 1.4),
    "muscle": (0.45, 0.75),
    "fat": (1.2, 1.9),
    "skin": (0.8, 1.1),
    "vitreous": (2.3, 3.1),
    "lens": (0.30, 0.60),
    "sclera": (0.30, 0.50),
    "nerve": (0.9, 1.2),
    "air": (0.0, 0.03),
    "marrow": (1.0, 1.5),
    "disc": (1.5, 2.3),
    "gland": (1.1, 1.5),
}
_TISSUES = tuple(_T1_RANGES)

CONTRASTS = ("t1", "t2", "random", "mixed")
_HEAD_KWARGS = (
    "shape", "voxel_size", "orientation", "oblique_deg", "center_mm", "deface", "neck",
    "contrast", "bias_strength", "noise_level", "blur_mm", "scale", "pitch_deg", "atrophy",
    "slice_mm", "gamma",
)  # fmt: skip

# Anatomy drawn per head when not given (see make_head): linear size relative to
# MNI152 (whose brain mask is 1883 mL: 0.84-1.04 gives about 1.1-2.1 L, the adult
# range of masks that include the sulcal CSF), head tilt about the left-right
# axis, and atrophy (widened sulci and ventricles, more CSF under the dura).
SCALE_RANGE = (0.84, 1.04)
PITCH_RANGE_DEG = (-15.0, 15.0)
ATROPHY_RANGE = (0.0, 0.6)
# The lowest level of the brainstem in the masks (MNI z, mm): the medulla down to the
# foramen magnum, as BEaST's definition has it (the MNI152 mask stops at -72 only
# because the template's field of view does).
BRAINSTEM_CUT_MM = -80.0


# --------------------------------------------------------------------------- public helpers


def subject_id(index: int, seed: int) -> str:
    """Deterministic NFBS-like subject ID.

    Parameters
    ----------
    index : int
        Subject number within the dataset, 0 to 9999.
    seed : int
        Dataset seed; its last three digits are part of the ID.

    Returns
    -------
    str
        Nine characters, ``"A9" + f"{seed % 1000:03d}" + f"{index:04d}"``, e.g.
        ``"A90000003"``. Real NFBS IDs look alike (``"A00028185"``) but start with
        ``A0``, so a synthetic ID is never mistaken for a real subject.
    """
    if not 0 <= index <= 9999:
        raise ValueError(f"index must be in 0..9999, got {index}")
    return f"A9{seed % 1000:03d}{index:04d}"


def grid_affine(
    shape: Sequence[int] = NFBS_SHAPE,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "RAS",
    oblique_deg: Sequence[float] = (0.0, 0.0, 0.0),
    center_mm: Sequence[float] = (0.0, -18.0, -8.0),
) -> np.ndarray:
    """Voxel-to-world affine of a scanner grid centred on a given point.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid size in voxels.
    voxel_size : sequence of 3 float
        Voxel size in mm along the three voxel axes.
    orientation : str
        nibabel axis codes of the voxel axes, one letter of each pair L/R, P/A, I/S,
        e.g. ``"RAS"``, ``"LPS"``, ``"PIR"``: the world direction in which each voxel
        index grows.
    oblique_deg : sequence of 3 float
        Rotation of the grid about the world x, y and z axes, in degrees (applied
        in that order), which makes the affine oblique. Up to about 30° the axis
        codes (``nib.aff2axcodes``) stay equal to `orientation`.
    center_mm : sequence of 3 float
        World (RAS+, mm) position of the grid's centre, ``(shape - 1) / 2``.

    Returns
    -------
    numpy.ndarray
        (4, 4) float64 affine mapping voxel indices to RAS+ world mm.
    """
    codes = orientation.upper() if isinstance(orientation, str) else "".join(orientation)
    axes = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0),
            "I": (2, -1.0)}  # fmt: skip
    if (
        len(codes) != 3
        or any(c not in axes for c in codes)
        or (sorted(axes[c][0] for c in codes) != [0, 1, 2])
    ):
        raise ValueError(f"orientation must be three axis codes like 'RAS', got {orientation!r}")
    shape_a = np.asarray(shape, dtype=float)
    vox = np.asarray(voxel_size, dtype=float)
    if shape_a.shape != (3,) or vox.shape != (3,) or np.any(vox <= 0) or np.any(shape_a < 1):
        raise ValueError("shape and voxel_size need three positive values")
    lin = np.zeros((3, 3))
    for i, c in enumerate(codes):
        ax, sign = axes[c]
        lin[ax, i] = sign * vox[i]
    lin = _rotation(np.deg2rad(np.asarray(oblique_deg, dtype=float))) @ lin
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(center_mm, dtype=float) - lin @ ((shape_a - 1.0) / 2.0)
    return aff


@dataclass(frozen=True)
class SynthHead:
    """One synthetic subject, the three NFBS images in memory.

    Attributes
    ----------
    t1w : nibabel.Nifti1Image
        Defaced T1-weighted head, int16, arbitrary scanner units (WM about 500-1000).
    brainmask : nibabel.Nifti1Image
        Binary brain mask, uint8 in {0, 1}, same grid.
    brain : nibabel.Nifti1Image
        ``t1w * brainmask``, int16, same grid.
    subject : str
        Subject ID (see :func:`subject_id`).
    """

    t1w: nib.Nifti1Image
    brainmask: nib.Nifti1Image
    brain: nib.Nifti1Image
    subject: str


# --------------------------------------------------------------------------- geometry utils


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles (radians) about x, y, z."""
    ax, ay, az = angles
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _box(center, radii, shape=_TMPL_SHAPE, lo=_TMPL_LO):
    """Slices of the 1 mm template around an ellipsoid, and its mm axis vectors."""
    c = np.asarray(center, float)
    r = np.asarray(radii, float)
    i0 = np.clip(np.floor(c - r - 1 - lo).astype(int), 0, np.asarray(shape))
    i1 = np.clip(np.ceil(c + r + 2 - lo).astype(int), 0, np.asarray(shape))
    sl = tuple(slice(a, b) for a, b in zip(i0, i1, strict=True))
    ax = [
        (lo[k] + np.arange(i0[k], i1[k]))[tuple(slice(None) if j == k else None for j in range(3))]
        for k in range(3)
    ]
    return sl, ax


def _ellipsoid_r(center, radii):
    """Normalised radius ``|(p - c) / r|`` on the box around an ellipsoid (< 1 inside)."""
    sl, (x, y, z) = _box(center, radii)
    c, r = center, radii
    rr = np.sqrt(((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2)
    return sl, rr


def _tube_dist(points: np.ndarray, radius: float) -> tuple[tuple[slice, ...], np.ndarray]:
    """Distance (mm) to a densely sampled polyline, on the box around it."""
    lo = points.min(0) - radius - 2
    hi = points.max(0) + radius + 2
    sl, _ = _box((lo + hi) / 2, (hi - lo) / 2)
    origin = np.array([s.start for s in sl]) + _TMPL_LO
    occ = np.ones(tuple(s.stop - s.start for s in sl), bool)
    idx = np.round(points - origin).astype(int)
    ok = np.all((idx >= 0) & (idx < np.array(occ.shape)), axis=1)
    occ[tuple(idx[ok].T)] = False
    return sl, ndi.distance_transform_edt(occ).astype(np.float32)


def _polyline(nodes: Sequence[Sequence[float]], step: float = 0.5) -> np.ndarray:
    """Points every `step` mm along a polyline through `nodes` (mm)."""
    nodes = np.asarray(nodes, float)
    out = []
    for a, b in itertools.pairwise(nodes):
        n = max(2, int(np.ceil(np.linalg.norm(b - a) / step)) + 1)
        out.append(a + (b - a) * np.linspace(0, 1, n)[:, None])
    return np.concatenate(out)


def _sdf(mask: np.ndarray) -> np.ndarray:
    """Signed distance (mm, float32) from a binary mask's surface; negative inside.

    Uses ITK's multi-threaded Maurer transform (several times faster than
    scipy's EDT here). ITK puts the surface on the boundary voxels themselves;
    subtracting 0.5 puts it half-way between voxel centres.
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    dist = sitk.SignedMaurerDistanceMap(
        img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    out = sitk.GetArrayFromImage(dist)
    out -= 0.5
    return out


def _block_mean(a: np.ndarray) -> np.ndarray:
    """2x2x2 block mean (float32) of an array whose shape is even."""
    s = a.shape
    b = a.astype(np.float32).reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2)
    return b.mean(axis=(1, 3, 5), dtype=np.float32)


def _canal_y(z: np.ndarray) -> np.ndarray:
    """y (mm) of the spinal canal's centre at height z: a gentle cervical lordosis."""
    t = np.clip((-72.0 - z) / 63.0, 0.0, 1.0)
    return -45.0 + 7.0 * np.sin(np.pi * t)


# --------------------------------------------------------------------------- template


@dataclass(frozen=True)
class _Level:
    """Template maps at one pyramid level (voxel j sits at ``origin + j * spacing`` mm)."""

    spacing: float
    origin: np.ndarray  # (3,) mm of voxel (0, 0, 0)
    gm: np.ndarray  # GM fraction x 255 (uint8 at 1 mm) or fraction (float32)
    wm: np.ndarray  # WM (+ spinal cord) fraction, same convention
    frac_scale: float  # 1/255 for uint8 maps, 1 otherwise
    mask: np.ndarray  # brain mask (uint8 at 1 mm) or its fraction (float32)
    d_icv: np.ndarray  # signed distance from the ICV surface, mm (float32)
    d_vent: np.ndarray  # distance from the ventricles, mm (float32, 99 far away)
    d_head: np.ndarray  # signed distance from the head surface, mm (float32)
    labels: np.ndarray  # uint8 extracranial structure labels


@dataclass(frozen=True)
class _Template:
    levels: tuple[_Level, ...]
    brain_yz: np.ndarray  # (n, 2) mm (y, z) of the brain mask projected along x
    lo: np.ndarray
    shape: tuple[int, int, int]


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    """Build the padded template space once per process (about 10 s, ~0.6 GB)."""
    from nilearn import datasets

    shape = _TMPL_SHAPE
    lo = _TMPL_LO
    x = (lo[0] + np.arange(shape[0], dtype=np.float32))[:, None, None]
    y = (lo[1] + np.arange(shape[1], dtype=np.float32))[None, :, None]
    z = (lo[2] + np.arange(shape[2], dtype=np.float32))[None, None, :]

    def embed(img) -> np.ndarray:
        # Fractions 0..1 in steps of 1/255: stored as uint8 x 255 to save memory.
        data = np.rint(np.asarray(img.dataobj, dtype=np.float32) * 255).astype(np.uint8)
        out = np.zeros(shape, np.uint8)
        o = _MNI_OFFSET
        out[tuple(slice(a, a + n) for a, n in zip(o, data.shape, strict=True))] = data
        return out

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    gm = embed(gm_img)
    wm = embed(wm_img)
    brain = embed(mask_img) > 0
    # Fill holes so the ventricles are inside the mask, as in NFBS (BEaST) masks.
    bbox = tuple(slice(a.min() - 1, a.max() + 2) for a in np.nonzero(brain))
    brain[bbox] = ndi.binary_fill_holes(brain[bbox])

    # Spinal canal (CSF + cord) continuing the brainstem through the foramen magnum.
    zc = z[0, 0, :]
    yc = _canal_y(zc)[None, None, :]
    rho = np.sqrt(x**2 + (y - yc) ** 2)
    canal = (rho <= 8.0) & (z <= -60)
    cord_r = np.interp(zc, [-135, -86, -72, -60], [4.2, 4.6, 4.0, 4.0]).astype(np.float32)
    cord = np.clip(cord_r[None, None, :] + 0.5 - rho, 0, 1) * (z < -72)
    wm = np.maximum(wm, np.round(255 * cord)).astype(np.uint8)
    # The medulla continues into the mask down to BRAINSTEM_CUT_MM.
    brain |= (cord >= 0.5) & (z >= BRAINSTEM_CUT_MM)
    del rho

    # Distance (mm) from the ventricles: CSF (little GM or WM) deep inside the brain.
    # Per subject the ventricles grow by a few mm of it (atrophy).
    bb_b = tuple(slice(a.min() - 1, a.max() + 2) for a in np.nonzero(brain))
    tissue = (gm[bb_b].astype(np.float32) + wm[bb_b]) / 255.0
    deep = ndi.distance_transform_edt(brain[bb_b]) > 12.0
    vent = deep & (tissue < 0.25)
    # Only the ventricles themselves: the large pieces, not specks of uncertain tissue.
    labels, _ = ndi.label(vent)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    vent = (sizes >= 500)[labels]
    del labels
    d_vent = np.full(shape, 99.0, np.float32)
    d_vent[bb_b] = np.minimum(ndi.distance_transform_edt(~vent), 99.0)
    del tissue, deep, vent

    # Intracranial volume: brain (+ canal) closed with an 8 mm ball, cisterns
    # enclosed in an axial slice filled, grown by 1 mm of CSF rim. Closing via
    # distance maps on the bounding box (much faster than a big structuring element).
    icv = brain | canal
    bb = tuple(slice(max(a.min() - 12, 0), a.max() + 13) for a in np.nonzero(icv))
    dil = _sdf(icv[bb]) <= 8.0
    icv[bb] |= _sdf(dil) <= -8.0
    del dil
    axial = np.zeros((3, 3, 3), bool)
    axial[:, :, 1] = ndi.generate_binary_structure(2, 1)
    icv[bb] = ndi.binary_fill_holes(icv[bb], structure=axial)
    icv = ndi.binary_dilation(icv, iterations=1)
    d_icv = _sdf(icv)

    # Head shape on a 2 mm grid (smooth union of cranium, face, ears and neck),
    # blurred and brought back to 1 mm, so its surface has no creases or stairs.
    x2, y2, z2 = x[::2] + 0.5, y[:, ::2] + 0.5, z[:, :, ::2] + 0.5
    d2 = _block_mean(d_icv[: shape[0] - 1])  # shape must be even: drop the last x plane
    x2, d2 = x2[: d2.shape[0]], d2
    temporal = np.exp(-(((z2 + 5) / 28) ** 2) - ((y2 + 5) / 40) ** 2) * (np.abs(x2) / 75) ** 4
    occipital = np.exp(-(((z2 + 35) / 20) ** 2)) * np.clip(-(y2 + 50) / 40, 0, 1)
    scalp = 4.0 + 4.0 * np.minimum(temporal, 1) + 7.0 * occipital
    head2 = d2 <= _CRANIUM_MM + scalp

    def ell(c, r):
        return (
            ((x2 - c[0]) / r[0]) ** 2 + ((y2 - c[1]) / r[1]) ** 2 + ((z2 - c[2]) / r[2]) ** 2
        ) <= 1

    head2 |= ell((0, 48, -48), (60, 46, 38))  # midface: cheeks, maxilla, orbits
    head2 |= ell((0, 38, -86), (50, 48, 30))  # jaw, mouth, chin
    head2 |= ell((0, 90, -46), (12, 18, 22))  # nose
    head2 |= ell((0, 98, -58), (8, 11, 9))  # nose tip
    for sx in (-1, 1):
        head2 |= ell((sx * 87, -18, -20), (7, 14, 27))  # ears
    head2 |= (((x2 / 56) ** 2 + ((y2 + 28) / 58) ** 2) <= 1) & (z2 <= -55)  # neck
    head2f = ndi.gaussian_filter(head2.astype(np.float32), 1.5)
    head = np.zeros(shape, bool)
    # grid_mode=True: 2 mm voxel k covers 1 mm voxels 2k and 2k + 1.
    up = ndi.zoom(head2f, 2, order=1, grid_mode=True, mode="nearest")
    head[: up.shape[0]] = up > 0.5  # the last x plane (x = +110 mm) stays air
    head |= icv
    head = ndi.binary_fill_holes(head)
    d_head = _sdf(head)
    del head2, head2f, up, d2

    labels = _make_labels(x, y, z, d_icv, d_head)

    brain_u8 = brain.astype(np.uint8)
    level0 = _Level(1.0, lo.copy(), gm, wm, 1.0 / 255.0, brain_u8, d_icv, d_vent, d_head,
                    labels)
    levels = [level0]
    # Coarser levels for coarse output grids: block means keep partial volumes right.
    pad = [(0, (-s) % 4) for s in shape]
    cur = {
        "gm": np.pad(gm.astype(np.float32) / 255, pad),
        "wm": np.pad(wm.astype(np.float32) / 255, pad),
        "mask": np.pad(brain_u8.astype(np.float32), pad),
        "d_icv": np.pad(d_icv, pad, mode="edge"),
        "d_vent": np.pad(d_vent, pad, mode="edge"),
        "d_head": np.pad(d_head, pad, mode="edge"),
    }
    lab = np.pad(labels, pad)
    for f in _LEVEL_FACTORS[1:]:
        cur = {k: _block_mean(v) for k, v in cur.items()}
        lab = lab[::2, ::2, ::2]  # labels: nearest sample, not a mean
        levels.append(
            _Level(
                float(f),
                lo + (f - 1) / 2.0,
                cur["gm"],
                cur["wm"],
                1.0,
                cur["mask"],
                cur["d_icv"],
                cur["d_vent"],
                cur["d_head"],
                np.ascontiguousarray(lab),
            )
        )
    proj = np.argwhere(brain.any(axis=0)).astype(np.float64) + lo[1:]
    return _Template(tuple(levels), proj, lo.copy(), shape)


def _make_labels(x, y, z, d_icv: np.ndarray, d_head: np.ndarray) -> np.ndarray:
    """Label volume of the extracranial structures (1 mm template, uint8)."""
    lab = np.zeros(_TMPL_SHAPE, np.uint8)

    # Intermuscular fat planes in the deep soft tissue of face and neck: a static
    # smooth random field (anatomy, not per-subject noise) thresholded.
    nz = int(-25 - _TMPL_LO[2])  # only below z = -25 mm (face and neck)
    rng = np.random.default_rng(20240601)
    noise = rng.standard_normal((_TMPL_SHAPE[0] // 2 + 1, _TMPL_SHAPE[1] // 2 + 1, nz // 2 + 1))
    noise = ndi.gaussian_filter(noise.astype(np.float32), 3.0)
    noise /= noise.std()
    noise = ndi.zoom(noise, 2, order=1, grid_mode=False)[: _TMPL_SHAPE[0], : _TMPL_SHAPE[1], :nz]
    # Fat along the zero level set of the field: thin sheets between muscles.
    deep = (d_head[:, :, :nz] < -7) & (d_icv[:, :, :nz] > 9)
    lab[:, :, :nz][deep & (np.abs(noise) < 0.09)] = _FAT
    del noise, deep

    def paint(center, radii, value, r_max=1.0):
        sl, rr = _ellipsoid_r(center, radii)
        lab[sl][rr <= r_max] = value

    for sx in (-1, 1):
        paint((sx * 48, -12, -62), (9, 12, 17), _GLAND)  # parotid glands
        paint((sx * 30, 56, -39), (16, 22, 14), _FAT)  # orbital fat
        paint((sx * 24, 56, -68), (10, 13, 11), _AIR)  # maxillary sinuses
        sl, dist = _tube_dist(_polyline([(sx * 31, 57, -39), (sx * 15, 30, -31)]), 3)
        lab[sl][dist <= 2.2] = _NERVE  # optic nerve
        # Eye: sclera shell, dark vitreous, lens at the front.
        sl, rr = _ellipsoid_r((sx * 31, 66, -39), (12, 12, 12))
        lab[sl][rr <= 1.0] = _SCLERA
        lab[sl][rr <= 0.93] = _VITREOUS
        paint((sx * 31, 75, -39), (4.5, 2.0, 4.5), _LENS)
    paint((0, 60, -58), (6, 22, 11), _AIR)  # nasal cavity

    # Pharynx and larynx/trachea: an air tube in front of the cervical spine.
    zz = np.arange(-135.0, -50.0, 1.0)
    yy = np.interp(zz, [-135, -95, -75, -55], [_canal_y(-135.0) + 42, 8, 14, 30])
    ry = np.interp(zz, [-135, -95, -55], [6, 6, 8])
    for zi, yi, ri in zip(zz, yy, ry, strict=True):
        paint((0, yi, zi), (11, ri, 0.5), _AIR)

    # Mandible: cortical bone around marrow, a U from one condyle to the other.
    nodes = [(-50, -4, -48), (-47, 2, -94), (-36, 42, -104), (0, 72, -108)]
    nodes = nodes + [(-a, b, c) for a, b, c in nodes[::-1][1:]]
    sl, dist = _tube_dist(_polyline(nodes), 7)
    lab[sl][dist <= 6.0] = _BONE
    lab[sl][dist <= 4.0] = _MARROW

    # Cervical vertebral bodies (marrow in a cortical shell) with discs, and
    # spinous processes behind the canal.
    for zi in np.arange(-135.0, -86.0, 1.0):
        yc = float(_canal_y(zi))
        in_disc = (zi + 95.0) % 15.0 < 4.0
        paint((0, yc + 20, zi), (12, 9.5, 0.5), _BONE)
        paint((0, yc + 20, zi), (10.5, 8.0, 0.5), _DISC if in_disc else _MARROW)
    for zi in np.arange(-127.0, -80.0, 15.0):
        yc = float(_canal_y(zi))
        paint((0, yc - 22, zi), (4, 11, 5), _BONE)
        paint((0, yc - 22, zi), (2.5, 9, 3.5), _MARROW)

    # Structures live in the head, outside the skull region, under the skin.
    lab[(d_head > -1.5) | (d_icv < 0)] = _SOFT
    return lab


# --------------------------------------------------------------------------- per subject


def _draw_tissues(rng: np.random.Generator, contrast: str) -> dict[str, float]:
    """Tissue intensities (relative, WM-scale) for one subject."""
    t1 = {k: float(rng.uniform(*v)) for k, v in _T1_RANGES.items()}
    t2 = {k: float(rng.uniform(*v)) for k, v in _T2_RANGES.items()}
    # Random monotone remap and independent draws (drawn always, so the draws do not
    # depend on `contrast`).
    knots_y = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(6, 1.5)))])
    flip = rng.random() < 0.5
    # "mixed": every tissue on its own, as in domain-randomised training (SynthStrip):
    # no order between WM, GM and CSF, so only shape tells brain from the rest. Air
    # stays darkest, as it is in every MR contrast.
    mixed = {k: float(rng.uniform(0.08, 1.0)) for k in _T1_RANGES}
    mixed["air"] = float(rng.uniform(0.0, 0.04))
    if contrast == "t1":
        return t1
    if contrast == "t2":
        return t2
    if contrast == "mixed":
        return mixed
    vmax = max(t1.values())
    knots_x = np.linspace(0.0, vmax, len(knots_y))
    out = {}
    for k, v in t1.items():
        f = float(np.interp(v, knots_x, knots_y))
        out[k] = (1.05 - f if flip else 0.05 + f) if k != "air" else v
    return out


def _profiles(tis: dict[str, float], lay: dict[str, float], width: float):
    """Lookup tables along the two distance maps, box-smoothed by the voxel width.

    Returns the distance grid start, its inverse step and tables ``a`` (intracranial
    weight), ``s`` (skull layers, already weighted), ``b`` (soft-tissue weight) on
    the ICV distance, and ``p`` (skin/fat/muscle/air) on the head distance.
    """
    step = 0.05
    d = np.arange(-20.0, 60.0, step)
    t = np.cumsum([lay["dura"], lay["inner"], lay["diploe"], lay["outer"]])
    a = (d < 0).astype(np.float64)
    skull = np.select(
        [d < 0, d < t[0], d < t[1], d < t[2], d < t[3]],
        [0.0, tis["dura"], tis["bone"], tis["diploe"], tis["bone"]],
        0.0,
    )
    b = (d >= t[3]).astype(np.float64)
    q = -d  # depth below the head surface
    p = np.select(
        [q <= 0, q <= lay["skin"], q <= lay["skin"] + lay["fat"]],
        [0.0, tis["skin"], tis["fat"]],
        tis["muscle"],
    )
    n = max(1, round(width / step))
    ker = np.ones(n) / n
    out = [np.convolve(np.pad(v, n, mode="edge"), ker, mode="same")[n:-n] for v in (a, skull, b, p)]
    return d[0], 1.0 / step, [v.astype(np.float32) for v in out]


def _lookup(dist: np.ndarray, d0: float, inv_step: float, n: int) -> np.ndarray:
    idx = ((dist - np.float32(d0)) * np.float32(inv_step) + np.float32(0.5)).astype(np.int32)
    np.clip(idx, 0, n - 1, out=idx)
    return idx


def _smooth_field(rng: np.random.Generator, n: int, pts_mm: np.ndarray, half: float) -> np.ndarray:
    """Smooth random field at points (3, ...) mm: cubic spline through n^3 N(0,1) knots
    spread over the cube [-half, half]^3 mm."""
    knots = rng.standard_normal((n, n, n))
    idx = (pts_mm + half) * ((n - 1) / (2 * half))
    return ndi.map_coordinates(knots, idx, order=3, mode="nearest")


def make_head(
    seed: int,
    index: int = 0,
    *,
    shape: Sequence[int] = NFBS_SHAPE,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    orientation: str = "RAS",
    oblique_deg: Sequence[float] = (0.0, 0.0, 0.0),
    center_mm: Sequence[float] = (0.0, -18.0, -8.0),
    deface: bool = True,
    neck: bool = True,
    contrast: str = "t1",
    bias_strength: float | None = None,
    noise_level: float | None = None,
    blur_mm: float | None = None,
    scale: float | None = None,
    pitch_deg: float | None = None,
    atrophy: float | None = None,
    slice_mm: float | None = None,
    gamma: float | None = None,
) -> SynthHead:
    """Make one synthetic T1-weighted head with its exact brain mask.

    Parameters
    ----------
    seed, index : int
        Dataset seed and subject number; together they fix every random draw
        (``np.random.SeedSequence([seed, index])``), so the same pair always gives
        the same images. The draws do not depend on the other arguments: a
        subject keeps its anatomy when only the grid changes.
    shape : sequence of 3 int
        Output grid in voxels (default NFBS, 256x256x192).
    voxel_size : sequence of 3 float
        Voxel size in mm.
    orientation : str
        nibabel axis codes of the voxel axes, e.g. ``"RAS"``, ``"LPS"``.
    oblique_deg : sequence of 3 float
        Grid rotation about x, y, z in degrees (oblique acquisitions).
    center_mm : sequence of 3 float
        World position (mm) of the grid centre; see :func:`grid_affine`.
    deface : bool
        Zero the face in front of a plane anterior-inferior to the brain (as
        pydeface does for NFBS); the plane never touches the brain mask.
    neck : bool
        Keep the neck below the skull base; False zeroes what lies below it.
    contrast : {"t1", "t2", "random", "mixed"}
        Tissue contrast: MPRAGE-like T1 (WM > GM > CSF, fat bright, bone dark,
        marrow dark to bright), T2-like (fluid bright), a random monotone remap
        of the T1 intensities (increasing or decreasing), or every tissue drawn
        on its own ("mixed", as in SynthStrip's training), for training
        contrast-agnostic models.
    bias_strength : float or None
        Peak relative amplitude of the multiplicative bias field (0.2 = gains
        from 1/1.2 to 1.2). None draws it in [0.1, 0.4].
    noise_level : float or None
        Rician noise sigma as a fraction of the WM intensity. None draws it in
        [0.01, 0.04].
    blur_mm : float or None
        Gaussian blur sigma in mm (scanner point-spread). None draws it in [0, 0.6].
    scale : float or None
        Linear size of head and brain relative to MNI152 (whose brain mask holds
        1883 mL). None draws it from :data:`SCALE_RANGE`; each axis then gets
        its own further 0.96-1.04.
    pitch_deg : float or None
        Head tilt about the left-right axis (nodding), degrees. None draws it from
        :data:`PITCH_RANGE_DEG`.
    atrophy : float or None
        0 (none) to 1 (severe): thinner gyri, wider sulci, ventricles grown by up
        to 4 mm and up to 3 mm more CSF under the dura. The mask keeps the
        sulcal and ventricular CSF (the brain's envelope, as in NFBS).
        None draws it from :data:`ATROPHY_RANGE`.
    slice_mm : float or None
        Slice thickness (mm) along the third voxel axis, thicker than its
        voxels: the through-plane profile (Gaussian of that FWHM) of a 2D
        acquisition. None: as thick as the voxels.
    gamma : float or None
        Contrast curve ``I**gamma`` applied to the image. None: 1 for "t1" and
        "t2", drawn around 1 (log-normal, sd 0.25) for "random" and "mixed".
    Returns
    -------
    SynthHead
        ``t1w`` (int16), ``brainmask`` (uint8 {0, 1}) and ``brain`` (int16,
        t1w * mask) on the grid ``grid_affine(shape, voxel_size, orientation,
        oblique_deg, center_mm)``, with qform and sform (code 1) set and mm units.

    Notes
    -----
    What the mask holds, following the NFBS masks (BEaST's definition, then
    corrected by hand): cerebrum, cerebellum and brainstem down to the foramen
    magnum (:data:`BRAINSTEM_CUT_MM`), with the ventricles and the CSF in the
    sulci (the brain's envelope); not the CSF outside that envelope, the dura,
    venous sinuses, skull, eyes or optic nerves. It is the MNI152 2009a brain
    mask (holes filled) carried by each head's warp.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    shape = tuple(int(s) for s in shape)
    affine = grid_affine(shape, voxel_size, orientation, oblique_deg, center_mm)
    tmpl = _template()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))

    # ---- every random draw, in a fixed order --------------------------------
    tis = _draw_tissues(rng, contrast)
    lay = {
        "rim": rng.uniform(0.0, 1.5),  # extra CSF between brain and dura
        "dura": rng.uniform(0.6, 1.0),
        "inner": rng.uniform(1.0, 1.8),
        "diploe": rng.uniform(1.5, 3.5),
        "outer": rng.uniform(1.0, 1.8),
        "head": rng.uniform(-1.0, 2.5),  # head surface moved outwards (mm)
        "skin": rng.uniform(1.2, 2.2),
        "fat": rng.uniform(2.0, 5.5),
    }
    angles = np.deg2rad(rng.uniform(-10, 10, 3))
    drawn_scale = rng.uniform(*SCALE_RANGE)
    axis_scale = rng.uniform(0.96, 1.04, 3)
    shift = np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), rng.uniform(-8, 4)])
    elastic_sd = rng.uniform(1.0, 2.5)
    elastic_seed = rng.integers(2**32)
    bias_seed = rng.integers(2**32)
    texture_seed = rng.integers(2**32)
    noise_seed = rng.integers(2**32)
    drawn_bias = rng.uniform(0.1, 0.4)
    drawn_noise = rng.uniform(0.01, 0.04)
    drawn_blur = rng.uniform(0.0, 0.6)
    texture_amp = rng.uniform(0.02, 0.06)
    wm_target = rng.uniform(500, 1000)
    deface_deg = rng.uniform(20, 40)
    deface_margin = rng.uniform(3, 8)
    drawn_pitch = rng.uniform(*PITCH_RANGE_DEG)
    drawn_atrophy = rng.uniform(*ATROPHY_RANGE)
    drawn_gamma = float(np.exp(rng.normal(0.0, 0.25)))
    # The hindbrain (cerebellum, brainstem) moves against the cerebrum and the neck
    # is longer or shorter: anatomy a global affine does not vary.
    hind_shift = np.array([0.0, rng.uniform(-6, 6), rng.uniform(-6, 4)])
    neck_stretch = rng.uniform(0.85, 1.25)
    s_global = drawn_scale if scale is None else float(scale)
    scale = s_global * axis_scale
    angles[0] = np.deg2rad(drawn_pitch if pitch_deg is None else float(pitch_deg))
    atrophy = drawn_atrophy if atrophy is None else float(atrophy)
    if not 0.0 <= atrophy <= 1.0:
        raise ValueError(f"atrophy must be in [0, 1], got {atrophy}")
    if gamma is None:
        gamma = drawn_gamma if contrast in ("random", "mixed") else 1.0
    lay["rim"] += 3.0 * atrophy  # a shrunken brain leaves more CSF under the dura
    bias_strength = drawn_bias if bias_strength is None else float(bias_strength)
    noise_level = drawn_noise if noise_level is None else float(noise_level)
    blur_mm = drawn_blur if blur_mm is None else float(blur_mm)

    # ---- coordinate map: output voxel -> template mm, on a coarse grid ------
    step = 4
    coarse = [np.linspace(0, n - 1, max(2, math.ceil((n - 1) / step) + 1)) for n in shape]
    cidx = np.stack(np.meshgrid(*coarse, indexing="ij"))  # (3, cx, cy, cz)
    world = np.tensordot(affine[:3, :3], cidx, axes=1) + affine[:3, 3, None, None, None]
    # Backward map: p = c_t + S^-1 R^T (w - c_w - t) + u(w). Scaling/rotation
    # about the brain's centre; world centre slightly lower so the top of the head
    # fits the 192 mm NFBS field of view.
    c_t = np.array([0.0, -18.0, 10.0])
    c_w = np.array([0.0, -18.0, 2.0]) + shift
    c_w[2] -= 70.0 * (s_global - 0.92)  # a larger head sits lower, so its top stays in view
    lin = np.diag(1.0 / scale) @ _rotation(angles).T
    pts = np.tensordot(lin, world - c_w[:, None, None, None], axes=1) + c_t[:, None, None, None]
    erng = np.random.default_rng(elastic_seed)
    for k in range(3):
        pts[k] += elastic_sd * _smooth_field(erng, 11, world, 200.0)
    # Below the tentorium (template z < -20 mm) the hindbrain is displaced, fading in
    # over ~10 mm; below the skull base (z < -60 mm) the neck is stretched.
    z_t = pts[2].copy()
    fade = 1.0 / (1.0 + np.exp((z_t + 20.0) / 5.0))
    for k in (1, 2):
        pts[k] -= hind_shift[k] * fade
    low = z_t < -60.0
    pts[2][low] = -60.0 + (z_t[low] + 60.0) / neck_stretch
    del z_t, fade, low

    # Output-grid fields (bias x texture): smooth, so the coarse grid suffices.
    bias = _smooth_field(np.random.default_rng(bias_seed), 5, world, 250.0)
    bias *= np.log1p(bias_strength) / max(float(np.abs(bias).max()), 1e-6)
    trng = np.random.default_rng(texture_seed)
    tex = ndi.gaussian_filter(trng.standard_normal((56, 67, 65)), 1.2)
    tex /= tex.std()
    tex_c = ndi.map_coordinates(tex, (pts - tmpl.lo[:, None, None, None]) / 4.0, order=1,
                                mode="nearest")  # fmt: skip
    gain = (np.exp(bias) * (1.0 + texture_amp * tex_c)).astype(np.float32)

    # ---- template level and crop ---------------------------------------------
    eff = float(np.min(voxel_size)) / float(np.max(scale))
    level_no = 0 if eff < 1.5 else (1 if eff < 3.0 else 2)
    lev = tmpl.levels[level_no]
    vidx = (pts - lev.origin[:, None, None, None]) / lev.spacing
    lshape = np.array(lev.d_icv.shape)
    i0 = np.clip(np.floor(vidx.reshape(3, -1).min(1)).astype(int) - 2, 0, lshape)
    i1 = np.clip(np.ceil(vidx.reshape(3, -1).max(1)).astype(int) + 3, 0, lshape)
    if np.any(i1 <= i0):  # grid entirely outside the template: an empty scan
        crop = (slice(0, 1),) * 3
        i0 = np.zeros(3, int)
    else:
        crop = tuple(slice(a, b) for a, b in zip(i0, i1, strict=True))
    vidx -= i0[:, None, None, None]

    img_t = _template_image(lev, crop, tis, lay, neck, atrophy)
    mask_t = lev.mask[crop]

    # ---- upsample the coordinate map and resample ----------------------------
    coords = np.empty((3, *shape), np.float32)
    for k in range(3):
        _zoom_to(vidx[k].astype(np.float32), shape, coords[k])
    img = ndi.map_coordinates(img_t, coords, order=1, mode="constant", cval=0.0,
                              output=np.float32, prefilter=False)  # fmt: skip
    mfrac = ndi.map_coordinates(mask_t, coords, order=1, mode="constant", cval=0.0,
                                output=np.float32, prefilter=False)  # fmt: skip
    mask = mfrac >= 0.5
    del mfrac, img_t
    gain_full = np.empty(shape, np.float32)
    _zoom_to(gain, shape, gain_full)
    img *= gain_full
    del gain_full

    # ---- acquisition: blur, Rician noise, scanner scaling --------------------
    vox = np.asarray(voxel_size, float)
    if blur_mm > 0.05:
        ndi.gaussian_filter(img, blur_mm / vox, output=img, truncate=3.0)
    if slice_mm is not None and slice_mm > vox[2]:
        # A slice profile of FWHM slice_mm, less what the voxel already averages.
        sigma = math.sqrt(slice_mm**2 - vox[2] ** 2) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        ndi.gaussian_filter1d(img, sigma / vox[2], axis=2, output=img, truncate=3.0)
    if gamma != 1.0:
        top = np.float32(max(tis.values()))
        np.clip(img, 0.0, None, out=img)
        img /= top
        np.power(img, np.float32(gamma), out=img)
        img *= top
    nrng = np.random.default_rng(noise_seed)
    sigma = np.float32(noise_level * tis["wm"])
    if sigma > 0:
        # Magnitude of complex Gaussian noise: Rician in the head, Rayleigh in air.
        re = nrng.standard_normal(shape, dtype=np.float32)
        re *= sigma
        re += img
        np.square(re, out=re)
        im = nrng.standard_normal(shape, dtype=np.float32)
        im *= sigma
        np.square(im, out=im)
        re += im
        del im
        img = np.sqrt(re, out=re)

    if deface:
        # Plane with normal n = (0, cos a, -sin a) in template space, placed
        # `deface_margin` mm beyond the brain's furthest point along n.
        a = np.deg2rad(deface_deg)
        ny, nz = np.cos(a), -np.sin(a)
        limit = float(np.max(tmpl.brain_yz @ np.array([ny, nz]))) + deface_margin
        f = lev.spacing
        oy = lev.origin[1] + i0[1] * f
        oz = lev.origin[2] + i0[2] * f
        proj = coords[1] * np.float32(ny * f) + coords[2] * np.float32(nz * f)
        proj += np.float32(ny * oy + nz * oz)
        img[proj > limit] = 0.0
        del proj
    del coords

    scale_u = wm_target / (tis["wm"] if contrast == "t1" else max(tis.values()))
    t1w = np.clip(np.rint(img * np.float32(scale_u)), 0, 32767).astype(np.int16)
    mask_u8 = mask.astype(np.uint8)
    brain = t1w * mask_u8.astype(np.int16)

    sid = subject_id(index, seed)
    return SynthHead(
        t1w=_nifti(t1w, affine),
        brainmask=_nifti(mask_u8, affine),
        brain=_nifti(brain, affine),
        subject=sid,
    )


def _zoom_to(coarse: np.ndarray, shape: tuple[int, ...], out: np.ndarray) -> None:
    """Linear upsampling of a field sampled at ``linspace(0, n - 1, m)`` onto all voxels.

    Separable, smallest axis first; about 5x faster than ``ndimage.zoom(order=1)``.
    """
    a = coarse.astype(np.float32, copy=False)
    for ax in (2, 1, 0):
        m, n = a.shape[ax], shape[ax]
        if m == n:
            continue
        pos = np.linspace(0.0, m - 1.0, n)
        i0 = np.minimum(pos.astype(np.intp), m - 2)
        w = (pos - i0).astype(np.float32)
        bshape = [1, 1, 1]
        bshape[ax] = n
        w = w.reshape(bshape)
        lo, hi = np.take(a, i0, axis=ax), np.take(a, i0 + 1, axis=ax)
        hi -= lo
        hi *= w
        lo += hi
        a = lo
    out[...] = a


def _template_image(lev: _Level, crop, tis, lay, neck: bool, atrophy: float = 0.0) -> np.ndarray:
    """Per-subject intensity image (float32) on a crop of one template level."""
    d0, inv, (ta, ts, tb, tp) = _profiles(tis, lay, lev.spacing)
    n = ta.size
    d_icv = lev.d_icv[crop]
    idx = _lookup(d_icv, d0 + lay["rim"], inv, n)
    w_ic = ta[idx]
    out = ts[idx]
    w_soft = tb[idx]
    del idx

    # Intracranial: tissue fractions; whatever is neither GM nor WM is CSF.
    s = np.float32(lev.frac_scale)
    gm = lev.gm[crop]
    wm = lev.wm[crop]
    if atrophy > 0:
        # Gyri thin (partial-volume GM turns to CSF, so the sulci widen) and the
        # ventricles grow into the tissue around them, with a 1 mm partial-volume edge.
        cut = np.float32(0.35 * atrophy)
        gm = np.clip((gm * s - cut) / (1 - cut), 0, 1)
        keep = np.clip(lev.d_vent[crop] - np.float32(4.0 * atrophy) + 0.5, 0, 1)
        gm *= keep
        wm = wm * (s * keep)
        s = np.float32(1.0)
    brainval = gm * (s * np.float32(tis["gm"] - tis["csf"]))
    brainval += wm * (s * np.float32(tis["wm"] - tis["csf"]))
    brainval += np.float32(tis["csf"])
    brainval *= w_ic
    out += brainval
    del brainval, w_ic

    # Extracranial soft tissue: depth profile (skin, fat, muscle, air) or structures.
    lut = np.array([tis[t] for t in _LABEL_TISSUE], np.float32)
    labels = lev.labels[crop]
    hidx = _lookup(lev.d_head[crop], d0 + lay["head"], inv, n)
    soft = np.where(labels == _SOFT, tp[hidx], lut[labels])
    del hidx
    soft *= w_soft
    out += soft
    if not neck:
        # Nothing below the foramen magnum (the mask's lowest voxel is at BRAINSTEM_CUT_MM).
        z = lev.origin[2] + lev.spacing * np.arange(crop[2].start, crop[2].stop)
        out[:, :, z < BRAINSTEM_CUT_MM - 4.0] = 0.0
    return out


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """NIfTI-1 image with qform and sform = scanner (code 1) and mm units."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    img.header["descrip"] = b"skullstrip_lib.synth"
    return img


# --------------------------------------------------------------------------- dataset writer


def _nifti_gz_bytes(img: nib.Nifti1Image) -> bytes:
    """``img`` as the bytes of a .nii.gz file, byte-reproducibly.

    The gzip header gets mtime 0 and no file name, so the same image always
    gives the same bytes (in a folder or in an archive).
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=1) as gz:
        gz.write(img.to_bytes())
    return buffer.getvalue()


def _save_atomic(img: nib.Nifti1Image, path: Path) -> None:
    """Write ``img`` to ``path`` (.nii.gz) atomically and byte-reproducibly.

    The temporary file ends in .nii.gz and is renamed over the target only when
    complete.
    """
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(_nifti_gz_bytes(img))


def _write_json_atomic(obj: dict, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_nfbs_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int,
    seed: int = 0,
    *,
    progress: bool = True,
    overwrite: bool = False,
    **head_kwargs: Any,
) -> list[Path]:
    """Write synthetic subjects in the NFBS layout.

    Creates ``out_dir/NFBS_Dataset/<ID>/`` holding ``sub-<ID>_ses-NFB3_T1w.nii.gz``,
    ``..._T1w_brainmask.nii.gz`` and ``..._T1w_brain.nii.gz`` for subjects
    ``0 .. n_subjects - 1``, and ``out_dir/synth_params.json`` recording the seed,
    the head arguments and the subjects written with them.

    Parameters
    ----------
    out_dir : str or path-like
        Root folder; created if missing.
    n_subjects : int
        Number of subjects (>= 0).
    seed : int
        Dataset seed (see :func:`make_head`).
    progress : bool
        Show a tqdm progress bar over subjects.
    overwrite : bool
        Regenerate subject folders that were made with other parameters instead
        of raising.
    **head_kwargs
        Passed to :func:`make_head` (shape, voxel_size, contrast, ...).

    Returns
    -------
    list of pathlib.Path
        The subject folders, in index order.

    Raises
    ------
    SkullstripError
        A subject folder exists but was not made with these parameters (or there
        is no record of how it was made) and `overwrite` is False.

    Notes
    -----
    Reruns are cheap and safe: a complete subject recorded in
    ``synth_params.json`` with the same seed and head arguments is skipped
    (regenerating it would give the same bytes); `n_subjects` may differ between
    runs. Every file is written atomically (temporary name + ``os.replace``).
    """
    unknown = sorted(set(head_kwargs) - set(_HEAD_KWARGS))
    if unknown:
        raise TypeError(f"unknown make_head arguments: {', '.join(unknown)}")
    if n_subjects < 0:
        raise ValueError(f"n_subjects must be >= 0, got {n_subjects}")
    out = Path(out_dir)
    root = out / "NFBS_Dataset"
    params_path = out / "synth_params.json"
    params = {
        "generator": "skullstrip_lib.synth",
        "version": _SYNTH_VERSION,
        "seed": int(seed),
        "head_kwargs": to_plain(dict(sorted(head_kwargs.items()))),
    }
    old: dict[str, Any] = {}
    if params_path.exists():
        try:
            old = json.loads(params_path.read_text())
        except (OSError, ValueError):
            old = {}
    same = all(old.get(k) == v for k, v in params.items())
    done: set[str] = set(old.get("subjects", [])) if same else set()

    ids = [subject_id(i, seed) for i in range(n_subjects)]
    folders = [root / sid for sid in ids]
    # Check every folder before writing anything, so a refusal leaves no trace.
    if not overwrite:
        for sid, folder in zip(ids, folders, strict=True):
            if folder.exists() and sid not in done:
                raise SkullstripError(
                    f"{folder}: exists and was made with other parameters; use overwrite=True"
                )

    root.mkdir(parents=True, exist_ok=True)
    record = {**params, "n_subjects": int(n_subjects), "subjects": sorted(done)}
    _write_json_atomic(record, params_path)

    iterator = range(n_subjects)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synthetic NFBS", unit="subject")
    for i in iterator:
        sid, folder = ids[i], folders[i]
        names = nfbs_filenames(sid)
        complete = all((folder / n).is_file() for n in names.values())
        if sid in done and complete:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        head = make_head(seed, i, **head_kwargs)
        for key, name in names.items():
            _save_atomic(getattr(head, key), folder / name)
        done.add(sid)
        record["subjects"] = sorted(done)
        _write_json_atomic(record, params_path)
    return folders


# --------------------------------------------------------------------------- archive writer


def _tar_info(name: str, size: int | None = None) -> tarfile.TarInfo:
    """A reproducible tar header: a folder (``size=None``) or a regular file.

    Owner root (0/0, no user or group name), mode 755 or 644, mtime 0: only the
    name and the contents vary, so the same heads always give the same bytes.
    """
    info = tarfile.TarInfo(name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if size is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.mode = 0o644
        info.size = size
    return info


def write_nfbs_archive(
    path: str | os.PathLike,
    n_subjects: int,
    seed: int = 0,
    *,
    progress: bool = True,
    overwrite: bool = False,
    **head_kwargs: Any,
) -> Path:
    """Write synthetic subjects as an ``NFBS_Dataset.tar.gz`` laid out like the real one.

    The archive stands in for NFBS where the real one (1.75 GB) cannot be
    downloaded: tests and the local server that plays the NFBS address serve
    it to :func:`skullstrip_lib.datasets.fetch_nfbs`. Its members are, in
    this order: ``NFBS_Dataset/``, then for each subject ``NFBS_Dataset/<ID>/``
    followed by the subject's three files (``sub-<ID>_ses-NFB3_T1w.nii.gz``,
    ``..._T1w_brain.nii.gz``, ``..._T1w_brainmask.nii.gz``, sorted by name), so
    all of a subject's files lie together, as in a tar of folders. The heads are
    :func:`make_head`'s (the NFBS grid, 256x256x192 at 1 mm, by default) and each
    file has the bytes :func:`write_nfbs_dataset` would write.

    Parameters
    ----------
    path : str or path-like
        The archive to write, e.g. ``out/NFBS_Dataset.tar.gz``; its folder is
        created if missing.
    n_subjects : int
        Number of subjects, 1 to 10000 (subjects ``0 .. n_subjects - 1``).
    seed : int
        Dataset seed (see :func:`make_head`).
    progress : bool
        Show a tqdm progress bar over subjects.
    overwrite : bool
        Replace an existing file at *path*.
    **head_kwargs
        Passed to :func:`make_head` (shape, voxel_size, contrast, ...).

    Returns
    -------
    pathlib.Path
        *path*, absolute.

    Raises
    ------
    OutputExistsError
        *path* exists and *overwrite* is False (checked before any head is made).
    ValueError
        *n_subjects* is out of range, or *path* is a folder.
    TypeError
        An unknown head argument.

    Notes
    -----
    Byte for byte reproducible: every gzip header (the archive's and each
    file's) has mtime 0 and no file name, every tar header owner 0:0, mode
    755/644 and mtime 0 (GNU format). The same seed and head arguments give
    the same MD5 on the same versions of NumPy, SciPy and nilearn. The file is
    written to a temporary name and renamed into place only when complete
    (:func:`skullstrip_lib.io.atomic_path`).

    Examples
    --------
    >>> import hashlib, tarfile, tempfile
    >>> small = {"shape": (32, 32, 24), "voxel_size": (8.0, 8.0, 8.0)}
    >>> out = Path(tempfile.mkdtemp())
    >>> archive = write_nfbs_archive(out / "NFBS_Dataset.tar.gz", 1, progress=False, **small)
    >>> with tarfile.open(archive) as tar:
    ...     print("\\n".join(tar.getnames()))
    NFBS_Dataset
    NFBS_Dataset/A90000000
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w.nii.gz
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w_brain.nii.gz
    NFBS_Dataset/A90000000/sub-A90000000_ses-NFB3_T1w_brainmask.nii.gz
    >>> again = write_nfbs_archive(out / "again.tar.gz", 1, progress=False, **small)
    >>> hashlib.md5(archive.read_bytes()).digest() == hashlib.md5(again.read_bytes()).digest()
    True
    """
    unknown = sorted(set(head_kwargs) - set(_HEAD_KWARGS))
    if unknown:
        raise TypeError(f"unknown make_head arguments: {', '.join(unknown)}")
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)) or not (
        1 <= n_subjects <= 10000
    ):
        raise ValueError(f"n_subjects must be an integer from 1 to 10000, got {n_subjects!r}")
    target = Path(os.path.abspath(Path(path).expanduser()))
    if target.is_dir():
        raise ValueError(f"{target}: is a folder; give the archive's file name")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: already exists (pass overwrite to replace it)")
    top = NFBS_FOLDER
    ids = [subject_id(i, seed) for i in range(n_subjects)]
    iterator = range(n_subjects)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="synthetic NFBS archive", unit="subject")
    with (
        atomic_path(target, overwrite=overwrite) as tmp,
        open(tmp, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_tar_info(top))
        for i in iterator:
            sid = ids[i]
            head = make_head(seed, i, **head_kwargs)
            tar.addfile(_tar_info(f"{top}/{sid}"))
            files = sorted((name, key) for key, name in nfbs_filenames(sid).items())
            for name, key in files:
                data = _nifti_gz_bytes(getattr(head, key))
                tar.addfile(_tar_info(f"{top}/{sid}/{name}", len(data)), io.BytesIO(data))
    return target
