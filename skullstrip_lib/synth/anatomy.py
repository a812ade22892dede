"""Non-brain anatomy that is real where brain extraction fails: the skull base.

The generator's first head (``AnatomySettings(skull_base="uniform")``) wraps the
brain in the same concentric shell everywhere (CSF rim, dura, inner table,
diploe, outer table: 4-8 mm) with uniform muscle below it. A network trained on
it learns "brain = what sits inside a thick dark ring", and on real heads leaks
through the skull base, where the bone is 1-2 mm thin and muscle and fat of
grey-matter intensity lie right beneath it. ``skull_base="realistic"`` adds, in
template space (so every head's warp carries it):

- **Skull thickness by region** (:func:`skull_thickness`): the layers are
  compressed to a fraction (drawn per head, 0.12-0.30, so 0.5-2.4 mm in all)
  under the temporal lobes (middle cranial fossa floor), over the orbits
  (orbital roofs), under the cerebellum (posterior fossa) and over the temporal
  squama, with a smooth random variation of thickness everywhere; there the
  cranial cavity also hugs the brain (:func:`cavity_distance`), so no ring of
  dark CSF is left where the template's closed cavity had one.
- **Brain-like soft tissue under the base** (:func:`base_tissue`): a layer of
  muscle interleaved with fat planes (two classes split by smooth noise of 6-24
  mm features), 8-35 mm deep, right under the skull base and beside the temporal
  squama (temporalis), whose intensities are drawn in grey- and white-matter
  ranges: at a 4 mm grid, grey and bright bands look like cortex.
- **Skull-base structures** (:func:`_base_structures`, static anatomy placed in
  MNI152 coordinates): sphenoid sinus; ethmoid and mastoid air cells (a honeycomb
  of air and bone); the clivus and the petrous bones (cortical bone around
  marrow whose intensity is drawn per head); the pituitary in the sella.
- **Dural folds and venous sinuses**: falx (midline, above the corpus callosum),
  tentorium (between the occipital lobes and the cerebellum), superior sagittal
  and transverse sinuses, each with its own random intensity, from CSF-dark to
  brighter than grey matter; and the dura itself drawn from a wider range.

``skull_base="thin"`` is the same anatomy at its hardest, for held-out tests
only: floors of about 0.5 mm, a cavity that hugs the brain fully, 35 mm of
muscle and fat with the head's own grey- and white-matter intensities.

Only what lies outside the brain mask changes (and a fold in a fissure the mask
closes over): the masks, and so what the network is taught to call brain, stay
those of the uniform heads for the same seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .template import (
    _LEVEL_FACTORS,
    _SOFT,
    _TMPL_LO,
    _TMPL_SHAPE,
    _block_mean,
    _ellipsoid_r,
    _Level,
    _polyline,
    _sdf,
    _template,
    _tube_dist,
    _zoom_to,
)

__all__ = ["STRUCTURES", "draw_anatomy"]

# Labels of the skull-base and dural structures (0: none).
_AIR, _BONE, _MARROW, _PITUITARY, _FOLD, _SINUS = range(1, 7)
STRUCTURES = {_AIR: "air", _BONE: "bone", _MARROW: "base_marrow", _PITUITARY: "pituitary",
              _FOLD: "fold", _SINUS: "sinus"}
"""Structure label -> the tissue whose intensity it takes
(:func:`skullstrip_lib.synth.appearance._draw_tissues`)."""

# Where the skull is thin (MNI152 mm): centre and radii of ellipsoids; the
# thinning is full inside 0.7 of the radius and fades out by 1.3.
_THIN_REGIONS = (
    ((-38.0, -5.0, -48.0), (24.0, 30.0, 14.0)),  # middle cranial fossa floors
    ((38.0, -5.0, -48.0), (24.0, 30.0, 14.0)),
    ((-26.0, 40.0, -28.0), (18.0, 22.0, 10.0)),  # orbital roofs
    ((26.0, 40.0, -28.0), (18.0, 22.0, 10.0)),
    ((0.0, -68.0, -62.0), (48.0, 30.0, 16.0)),  # posterior fossa (occipital squama below)
    ((-60.0, -10.0, -22.0), (12.0, 30.0, 20.0)),  # temporal squamae
    ((60.0, -10.0, -22.0), (12.0, 30.0, 20.0)),
)
# The brain-like soft-tissue layer lies under the skull base only: below this
# template height (mm), the level of the orbital roofs.
_BASE_TOP_MM = -18.0


def draw_anatomy(rng: np.random.Generator) -> dict[str, float | int]:
    """Per-head parameters of the realistic non-brain anatomy (drawn in a fixed order)."""
    return {
        "thin": float(rng.uniform(0.12, 0.30)),  # thickness factor where the skull is thin
        "thick_sd": float(rng.uniform(0.10, 0.35)),  # log-sd of the smooth thickness variation
        "thick_seed": int(rng.integers(2**32)),
        "base_depth": float(rng.uniform(8.0, 35.0)),  # mm of brain-like tissue under the base
        "base_seed": int(rng.integers(2**32)),
        # Muscle interleaved with fat planes every few mm: at the model's 4 mm grid, grey
        # (muscle) and bright (fat) bands look like cortex around white matter.
        "base_scale_mm": float(rng.uniform(6.0, 24.0)),
        "base_fat_share": float(rng.uniform(0.25, 0.55)),
        # Where the skull is thin, the cranial cavity hugs the brain: the CSF the template's
        # closed cavity leaves under the temporal lobes and the cerebellum (up to ~8 mm,
        # dark, a ring the network would learn) shrinks by this fraction.
        "hug": float(rng.uniform(0.4, 1.0)),
    }


@dataclass(frozen=True)
class _BaseLevel:
    """Static skull-base maps at one template level (same grid as its :class:`_Level`)."""

    thin: np.ndarray  # float32 0..1: how much the skull thins here
    d_brain: np.ndarray  # float32 signed distance from the brain mask's surface, mm
    labels: np.ndarray  # uint8 structure labels (see STRUCTURES)
    base_region: np.ndarray  # bool: where brain-like muscle and fat may lie under the skull


def _honeycomb(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Air cells: True (air) / False (bony septa) from smooth noise, cells ~4-6 mm."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.3)
    return noise > -0.15 * noise.std()


@functools.lru_cache(maxsize=1)
def _base_structures() -> tuple[_BaseLevel, ...]:
    """Build the static skull-base maps at every template level (once per process, ~5 s)."""
    tmpl = _template()
    lev = tmpl.levels[0]
    d_icv, mask = lev.d_icv, lev.mask > 0
    thin = np.zeros(_TMPL_SHAPE, np.float32)
    for centre, radii in _THIN_REGIONS:
        sl, rr = _ellipsoid_r(centre, np.asarray(radii) * 1.3)
        w = np.clip((1.0 - rr) / (0.6 / 1.3), 0.0, 1.0).astype(np.float32)
        np.maximum(thin[sl], w, out=thin[sl])
    lab = np.zeros(_TMPL_SHAPE, np.uint8)

    def paint(sl, where, value):
        lab[sl][where] = value

    outside = d_icv > 1.0  # below the (thin) base: never inside the cranial cavity
    # Sphenoid sinus under the sella, walled by bone.
    sl, rr = _ellipsoid_r((0.0, 12.0, -50.0), (13.0, 12.0, 10.0))
    paint(sl, (rr <= 1.0) & outside[sl], _BONE)
    paint(sl, (rr <= 0.85) & outside[sl], _AIR)
    # Ethmoid (between the orbits) and mastoid (behind the ears) air cells.
    for seed, (centre, radii) in enumerate([((0.0, 42.0, -40.0), (10.0, 16.0, 12.0)),
                                            ((-50.0, -35.0, -55.0), (11.0, 13.0, 13.0)),
                                            ((50.0, -35.0, -55.0), (11.0, 13.0, 13.0))]):
        sl, rr = _ellipsoid_r(centre, radii)
        cells = _honeycomb(rr.shape, 7300 + seed)
        inside = (rr <= 1.0) & outside[sl]
        paint(sl, inside & ~cells, _BONE)
        paint(sl, inside & cells, _AIR)
    # Clivus (dorsum sellae down to the foramen magnum) and petrous ridges: bone with marrow.
    bones = [([(0.0, -4.0, -40.0), (0.0, -30.0, -72.0)], 6.0, 4.0)]
    bones += [([(sx * 52.0, -28.0, -46.0), (sx * 20.0, -10.0, -40.0)], 7.0, 3.0)
              for sx in (-1, 1)]
    for nodes, r_bone, r_marrow in bones:
        sl, dist = _tube_dist(_polyline(nodes), r_bone)
        ok = d_icv[sl] > 0.5
        paint(sl, (dist <= r_bone) & ok, _BONE)
        paint(sl, (dist <= r_marrow) & ok, _MARROW)
    # Pituitary in the sella (outside the brain mask, as in NFBS).
    sl, rr = _ellipsoid_r((0.0, -2.0, -38.0), (6.0, 5.0, 4.5))
    paint(sl, (rr <= 1.0) & ~mask[sl], _PITUITARY)

    # Dural folds and sinuses: in the cranial cavity or the dura, never on the brain.
    x = (_TMPL_LO[0] + np.arange(_TMPL_SHAPE[0], dtype=np.float32))[:, None, None]
    y = (_TMPL_LO[1] + np.arange(_TMPL_SHAPE[1], dtype=np.float32))[None, :, None]
    z = (_TMPL_LO[2] + np.arange(_TMPL_SHAPE[2], dtype=np.float32))[None, None, :]
    free = ~mask & (d_icv < 0.0)
    lab[free & (np.abs(x) <= 1.0) & (z > -5.0)] = _FOLD  # falx
    lab[free & (y < -40.0) & (z > -45.0) & (z < -5.0) & (np.abs(x) < 60.0)] = _FOLD  # tentorium
    shell = ~mask & (d_icv > -3.0) & (d_icv < 1.5)
    lab[shell & (np.abs(x) < 5.0) & ((z > 10.0) | (y < -60.0)) & (z > -25.0)] = _SINUS  # SSS
    lab[shell & (y < -75.0) & (z > -35.0) & (z < -15.0)] = _SINUS  # transverse sinuses
    # Brain-like muscle and fat: under the skull base (middle cranial and infratemporal
    # fossae, orbits, under the cerebellum) and beside the temporal squama (temporalis).
    region = np.broadcast_to(z < _BASE_TOP_MM, _TMPL_SHAPE).copy()
    for sx in (-1, 1):
        sl, rr = _ellipsoid_r((sx * 66.0, -5.0, -5.0), (16.0, 42.0, 32.0))
        region[sl] |= rr <= 1.0
    del x, y, z, free, shell, outside

    d_brain = _sdf(mask)
    levels = [_BaseLevel(thin, d_brain, lab, region)]
    pad = [(0, (-s) % 4) for s in _TMPL_SHAPE]
    cur_t, cur_l, cur_r = np.pad(thin, pad), np.pad(lab, pad), np.pad(region, pad)
    cur_d = np.pad(d_brain, pad, mode="edge")
    for _ in _LEVEL_FACTORS[1:]:
        cur_t, cur_d = _block_mean(cur_t), _block_mean(cur_d)
        cur_l = cur_l[::2, ::2, ::2]
        cur_r = cur_r[::2, ::2, ::2]
        levels.append(_BaseLevel(cur_t, cur_d, np.ascontiguousarray(cur_l),
                                 np.ascontiguousarray(cur_r)))
    return tuple(levels)


def _level_no(lev: _Level) -> int:
    return _LEVEL_FACTORS.index(round(lev.spacing))


def _smooth_noise(shape: tuple[int, ...], spacing: float, seed: int, scale_mm: float,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Smooth N(0, 1) noise (float32) of about `scale_mm` features on a crop's voxel grid.

    Drawn on a coarse grid (a quarter of `scale_mm` apart), smoothed and
    upsampled linearly, so its cost is that of one linear interpolation.
    """

    step = max(scale_mm / 4.0, spacing)
    m = tuple(max(2, int(np.ceil((n - 1) * spacing / step)) + 1) for n in shape)
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(m), 2.0,
                                mode="wrap")
    field /= max(float(field.std()), 1e-6)
    full = np.empty(shape, np.float32) if out is None else out
    _zoom_to(field.astype(np.float32), shape, full)
    return full


def skull_thickness(lev: _Level, crop: tuple[slice, ...], params: dict) -> np.ndarray:
    """Factor (float32) by which the skull's layers are thinned at each voxel of a crop.

    1 keeps the uniform shell; ``params["thin"]`` (0.12-0.30) is reached in the
    thin regions (:data:`_THIN_REGIONS`); a smooth random variation (log-sd
    ``params["thick_sd"]``, features of ~5 cm) is applied everywhere.
    """
    thin = _base_structures()[_level_no(lev)].thin[crop]
    k = 1.0 - thin * np.float32(1.0 - params["thin"])
    var = _smooth_noise(k.shape, lev.spacing, params["thick_seed"], 50.0)
    var *= np.float32(params["thick_sd"])
    k *= np.exp(var, out=var)
    return np.clip(k, 0.08, 1.6, out=k)


def cavity_distance(lev: _Level, crop: tuple[slice, ...], params: dict) -> np.ndarray:
    """Signed distance (mm) from the cranial cavity's surface, hugging the brain where thin.

    The template's cavity (the brain closed with an 8 mm ball, grown by 1 mm)
    leaves CSF under the temporal lobes and the cerebellum; where the skull
    thins (:data:`_THIN_REGIONS`), the surface moves towards the brain's by the
    fraction ``params["hug"]``, never inside it (at least 0.5 mm of CSF is kept).
    """
    base = _base_structures()[_level_no(lev)]
    d_icv = lev.d_icv[crop]
    d_brain = base.d_brain[crop] - np.float32(0.5)
    w = base.thin[crop] * np.float32(params["hug"])
    moved = d_icv + w * (np.maximum(d_brain, np.minimum(d_icv, 0)) - d_icv)
    return np.where(d_icv > 0, np.maximum(moved, d_brain), moved).astype(np.float32)


def base_tissue(lev: _Level, crop: tuple[slice, ...], params: dict, d_bone: np.ndarray,
                d_head: np.ndarray) -> np.ndarray:
    """Brain-like soft tissue right under the skull base: 0 none, 1 muscle, 2 fat (uint8).

    Parameters
    ----------
    d_bone : numpy.ndarray
        Distance (mm) below the outer surface of the (thinned) skull, on the crop.
    d_head : numpy.ndarray
        Signed distance from the head surface (mm), on the crop.
    """
    region = _base_structures()[_level_no(lev)].base_region[crop]
    labels = lev.labels[crop]
    layer = ((d_bone > 0) & (d_bone < np.float32(params["base_depth"])) & (labels == _SOFT)
             & (d_head < -3.0) & region)
    split = _smooth_noise(layer.shape, lev.spacing, params["base_seed"], params["base_scale_mm"])
    # The fat share sets the threshold on the N(0, 1) noise: P(split > t) = share.
    from statistics import NormalDist

    t = np.float32(NormalDist().inv_cdf(1.0 - params["base_fat_share"]))
    out = np.where(layer, np.where(split > t, 2, 1), 0).astype(np.uint8)
    return out


def structures(lev: _Level, crop: tuple[slice, ...]) -> np.ndarray:
    """Skull-base and dural structure labels (see :data:`STRUCTURES`) on a crop (uint8)."""
    return _base_structures()[_level_no(lev)].labels[crop]
