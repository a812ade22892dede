"""The template space: the MNI152 brain in a padded head, built once per process.

:func:`template` builds, from nilearn's bundled MNI152 2009a maps (skull-stripped
GM/WM/brain), tissue fractions, the brain mask, an intracranial volume (ICV) and
its signed distance map, a head shape (cranium + face + ears + neck) and its
signed distance map, and a label volume of extracranial structures (eyes,
orbital fat, sinuses, airway, mandible, vertebrae, ...), at 1, 2 and 4 mm.
The geometry helpers here (ellipsoids, tubes, distance maps) also draw the
realistic skull base of :mod:`skullstrip_lib.synth.anatomy`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["BRAINSTEM_CUT_MM"]

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

# The lowest level of the brainstem in the masks (MNI z, mm): the medulla down to the
# foramen magnum, as BEaST's definition has it (the MNI152 mask stops at -72 only
# because the template's field of view does).
BRAINSTEM_CUT_MM = -80.0


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
