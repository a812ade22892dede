"""How a head looks: tissue intensities, the image in template space, scanner effects.

Per head, tissue intensities are drawn (:func:`_draw_tissues`) and turned into an
image in template space (:func:`_template_image`): partial-volume layers along the
two distance maps (CSF rim, dura, inner table, diploe, outer table, galea, fat,
skin, air), the brain's tissue fractions, and the extracranial structures. The
scanner's effects (bias field, texture, blur, noise) are applied on the output
grid by :func:`~skullstrip_lib.synth.make_head`, with the smooth fields made here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .anatomy import (
    STRUCTURES,
    _smooth_noise,
    base_tissue,
    cavity_distance,
    skull_thickness,
    structures,
)
from .template import _LABEL_TISSUE, _SOFT, BRAINSTEM_CUT_MM, _Level

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

# Tissues of the realistic non-brain anatomy (AnatomySettings(skull_base="realistic"))
# and their T1 (MPRAGE-like) ranges, WM = 1: broad and overlapping the brain's, as
# real non-brain tissue is. Under the skull base, muscle (temporalis, pterygoids,
# suboccipital) and fat whose intensity can match grey or white matter; dura, falx
# and tentorium from CSF-dark to brighter than grey matter; venous sinuses from a
# flow void to bright (slow flow, contrast agent); marrow of the clivus and petrous
# bone from red (dark) to fatty (bright); the pituitary grey-matter-like.
_EXTRA_T1_RANGES = {
    "base_muscle": (0.45, 0.85),
    "base_fat": (0.65, 1.30),
    "dura_r": (0.20, 0.90),
    "fold": (0.20, 1.10),
    "sinus": (0.05, 1.40),
    "base_marrow": (0.30, 1.20),
    "pituitary": (0.50, 0.85),
}
_EXTRA_T2_RANGES = {
    "base_muscle": (0.45, 0.80),
    "base_fat": (1.10, 1.90),
    "dura_r": (0.30, 1.30),
    "fold": (0.30, 1.40),
    "sinus": (0.05, 3.00),
    "base_marrow": (0.90, 1.50),
    "pituitary": (1.10, 1.50),
}


def _draw_tissues(rng: np.random.Generator, contrast: str,
                  extra_rng: np.random.Generator | None = None) -> dict[str, float]:
    """Tissue intensities (relative, WM-scale) for one subject.

    With `extra_rng`, the tissues of the realistic non-brain anatomy
    (:data:`_EXTRA_T1_RANGES`) are drawn from it too, after the first ones, and
    rendered in the same contrast (the same random remap for "random"); the
    draws from `rng` are the same either way.
    """
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
    vmax = max(t1.values())
    if extra_rng is not None:
        t1.update({k: float(extra_rng.uniform(*v)) for k, v in _EXTRA_T1_RANGES.items()})
        t2.update({k: float(extra_rng.uniform(*v)) for k, v in _EXTRA_T2_RANGES.items()})
        mixed.update({k: float(extra_rng.uniform(0.08, 1.0)) for k in _EXTRA_T1_RANGES})
    if contrast == "t1":
        return t1
    if contrast == "t2":
        return t2
    if contrast == "mixed":
        return mixed
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


def _template_image(lev: _Level, crop, tis, lay, neck: bool, atrophy: float = 0.0,
                    anat: dict | None = None, rl: dict | None = None) -> np.ndarray:
    """Per-subject intensity image (float32) on a crop of one template level.

    `anat` (:func:`~skullstrip_lib.synth.anatomy.draw_anatomy`) adds the
    realistic skull base, `rl` (:func:`draw_random_labels`) the random
    non-brain labels; without them the image is the uniform head's.
    """
    d_icv = lev.d_icv[crop]
    if anat is not None:
        # The cavity hugs the brain where the skull is thin, and the skull's layers are
        # compressed by region: look the profile up at d / k outside the cavity.
        d_icv = cavity_distance(lev, crop, anat)
        k = skull_thickness(lev, crop, anat)
        d_skull = np.where(d_icv > 0, d_icv / k, d_icv)
        tis = {**tis, "dura": tis["dura_r"]}
    else:
        d_skull = d_icv
    d0, inv, (ta, ts, tb, tp) = _profiles(tis, lay, lev.spacing)
    n = ta.size
    idx = _lookup(d_skull, d0 + lay["rim"], inv, n)
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
    if rl is not None:
        # Every soft tissue inside the head becomes one of the random classes.
        inside = np.clip((np.float32(lay["head"]) - lev.d_head[crop]) / np.float32(lev.spacing)
                         + np.float32(0.5), 0, 1)
        soft = random_label_image(d_icv.shape, lev.spacing, rl, tis) * inside
    if anat is not None:
        total = lay["rim"] + lay["dura"] + lay["inner"] + lay["diploe"] + lay["outer"]
        base = base_tissue(lev, crop, anat, d_icv - k * np.float32(total), lev.d_head[crop])
        soft = np.where(base == 1, np.float32(tis["base_muscle"]), soft)
        soft = np.where(base == 2, np.float32(tis["base_fat"]), soft)
        del base, k, d_skull
    soft *= w_soft
    out += soft
    if anat is not None:
        lut_s = np.zeros(max(STRUCTURES) + 1, np.float32)
        for label, tissue in STRUCTURES.items():
            lut_s[label] = tis[tissue]
        st = structures(lev, crop)
        out = np.where(st > 0, lut_s[st], out)
    if not neck:
        # Nothing below the foramen magnum (the mask's lowest voxel is at BRAINSTEM_CUT_MM).
        z = lev.origin[2] + lev.spacing * np.arange(crop[2].start, crop[2].stop)
        out[:, :, z < BRAINSTEM_CUT_MM - 4.0] = 0.0
    return out


def draw_random_labels(rng: np.random.Generator, n: int) -> dict:
    """Per-head parameters of `n` random non-brain classes (drawn in a fixed order).

    Each class gets a level (its mean intensity, 0-1.1 x the brightest brain
    tissue, so anywhere from air to above white matter in T1) and a texture
    (relative sd 2-20 %); the label map's feature size is drawn in 10-40 mm.
    """
    return {
        "n": int(n),
        "seed": int(rng.integers(2**32)),
        "scale_mm": float(rng.uniform(10.0, 40.0)),
        "level": rng.uniform(0.0, 1.1, n),
        "texture": rng.uniform(0.02, 0.20, n),
    }


def random_labels(shape: tuple[int, ...], spacing: float, n: int, seed: int,
                  scale_mm: float) -> np.ndarray:
    """SynthStrip-style random label map: the argmax of `n` smooth noise fields (uint8).

    As the label maps of SynthMorph and SynthStrip are drawn (Hoffmann et al.
    2022, Hoopes et al. 2022: smooth multi-scale noise images, one per label,
    and at each voxel the label whose image is largest), so the classes are
    random blobs and sheets of about `scale_mm`, with no anatomy to learn.

    Examples
    --------
    >>> lab = random_labels((40, 40, 40), 2.0, 5, seed=1, scale_mm=20.0)
    >>> lab.dtype.name, sorted(np.unique(lab).tolist())
    ('uint8', [0, 1, 2, 3, 4])
    """
    best = np.full(shape, -np.inf, np.float32)
    out = np.zeros(shape, np.uint8)
    field = np.empty(shape, np.float32)
    seeds = np.random.SeedSequence(seed).generate_state(2 * n)
    for j in range(n):
        # Two scales per label: blobs of scale_mm with finer ripples at half of it.
        _smooth_noise(shape, spacing, int(seeds[2 * j]), scale_mm, out=field)
        fine = _smooth_noise(shape, spacing, int(seeds[2 * j + 1]), scale_mm / 2.0)
        field += np.float32(0.5) * fine
        larger = field > best
        out[larger] = j
        np.maximum(best, field, out=best)
    return out


def random_label_image(shape: tuple[int, ...], spacing: float, rl: dict,
                       tis: dict[str, float]) -> np.ndarray:
    """Intensities (float32) of the random non-brain classes, with texture inside each."""
    labels = random_labels(shape, spacing, rl["n"], rl["seed"], rl["scale_mm"])
    top = max(tis["wm"], tis["gm"], tis["csf"])
    level = (np.asarray(rl["level"]) * top).astype(np.float32)
    texture = np.asarray(rl["texture"], np.float32)
    tex = _smooth_noise(shape, spacing, rl["seed"] ^ 0x5EED, 8.0)
    tex *= texture[labels]
    tex += np.float32(1.0)
    tex *= level[labels]
    return np.clip(tex, 0.0, None, out=tex)
