"""One synthetic head: :func:`make_head` and the grid it is made on.

How a head is made
------------------
1. Once per process (:func:`~skullstrip_lib.synth.template._template`), the padded
   template space around the MNI152 brain is built.
2. Per subject, every random number is drawn in a fixed order from
   ``SeedSequence([seed, index])``; tissue intensities are turned into an image
   in template space (:mod:`~skullstrip_lib.synth.appearance`), with the
   non-brain anatomy the :class:`~skullstrip_lib.synth.settings.AnatomySettings`
   ask for (:mod:`~skullstrip_lib.synth.anatomy`).
3. The output grid (any affine) is mapped to template coordinates through the
   inverse of a random affine + smooth elastic transform. The coordinate map is
   computed on every 4th voxel and upsampled linearly (it is smooth), then the
   image and the brain mask are resampled with the same map, so the mask fits
   the image exactly.
4. Bias field, texture, blur, Rician noise and defacing are applied on the
   output grid and the result is stored as int16, like a scanner would.

New anatomy and appearance draw from their own stream
(``SeedSequence([seed, index, 1])``), so the default settings give the same
bytes as before they existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from ..validate import check_int
from .anatomy import draw_anatomy
from .appearance import _draw_tissues, _smooth_field, _template_image, draw_random_labels
from .settings import (
    ATROPHY_RANGE,
    PITCH_RANGE_DEG,
    SCALE_RANGE,
    HeadSettings,
    grid_affine,
)
from .template import _rotation, _template, _zoom_to

__all__ = ["SynthHead", "make_head", "subject_id"]


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
    index = check_int(index, "index", 0, 9999)
    return f"A9{seed % 1000:03d}{index:04d}"


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



def make_head(
    seed: int,
    index: int = 0,
    settings: HeadSettings | None = None,
    **kwargs: Any,
) -> SynthHead:
    """Make one synthetic T1-weighted head with its exact brain mask.

    Parameters
    ----------
    seed, index : int
        Dataset seed and subject number; together they fix every random draw
        (``np.random.SeedSequence([seed, index])``), so the same pair always gives
        the same images. The draws do not depend on the settings: a subject keeps
        its anatomy when only the grid changes.
    settings : HeadSettings or None
        The grid, anatomy and appearance (:class:`~skullstrip_lib.synth.settings.HeadSettings`);
        None: the defaults, an NFBS-like defaced T1 head on the NFBS grid.
    **kwargs
        Any field of the three groups by name, over `settings`: ``shape``,
        ``voxel_size``, ``orientation``, ``oblique_deg``, ``center_mm``
        (:class:`~skullstrip_lib.synth.settings.GridSettings`); ``scale``,
        ``pitch_deg``, ``atrophy``, ``neck``, ``skull_base``, ``warp_mm``, ``proportions``
        (:class:`~skullstrip_lib.synth.settings.AnatomySettings`); ``contrast``,
        ``bias_strength``, ``bias_range``, ``bias_knots``, ``noise_level``,
        ``blur_mm``, ``slice_mm``, ``gamma``, ``deface``, ``nonbrain_labels``
        (:class:`~skullstrip_lib.synth.settings.AppearanceSettings`), where each
        is described.

    Returns
    -------
    SynthHead
        ``t1w`` (int16), ``brainmask`` (uint8 {0, 1}) and ``brain`` (int16,
        t1w * mask) on the grid ``grid_affine(shape, voxel_size, orientation,
        oblique_deg, center_mm)``, with qform and sform (code 1) set and mm units.

    Raises
    ------
    TypeError
        An argument no settings group has.
    ValueError
        A value out of range (the message names it), before any work.

    Notes
    -----
    What the mask holds, following the NFBS masks (BEaST's definition, then
    corrected by hand): cerebrum, cerebellum and brainstem down to the foramen
    magnum (:data:`~skullstrip_lib.synth.BRAINSTEM_CUT_MM`), with the ventricles
    and the CSF in the sulci (the brain's envelope); not the CSF outside that
    envelope, the dura, venous sinuses, skull, eyes or optic nerves. It is the
    MNI152 2009a brain mask (holes filled) carried by each head's warp.

    Examples
    --------
    >>> head = make_head(0, 0, shape=(48, 48, 40), voxel_size=(4.0, 4.0, 4.0))
    >>> head.subject, head.t1w.shape, head.brainmask.get_data_dtype().name
    ('A90000000', (48, 48, 40), 'uint8')
    """
    settings = HeadSettings.from_kwargs(settings, **kwargs)
    grid, anat, app = settings.grid, settings.anatomy, settings.appearance
    shape, voxel_size, contrast = grid.shape, grid.voxel_size, app.contrast
    affine = grid_affine(shape, voxel_size, grid.orientation, grid.oblique_deg, grid.center_mm)
    tmpl = _template()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    # New anatomy and appearance draw from a stream of their own: the draws above
    # stay those of the first generator, so its heads keep their bytes.
    extra_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 1]))
    realistic = anat.skull_base in ("realistic", "thin")

    # ---- every random draw, in a fixed order --------------------------------
    tis = _draw_tissues(rng, contrast, extra_rng if realistic or app.nonbrain_labels else None)
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
    drawn_bias = rng.uniform(*app.bias_range)
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
    s_global = drawn_scale if anat.scale is None else anat.scale
    scale = s_global * axis_scale
    angles[0] = np.deg2rad(drawn_pitch if anat.pitch_deg is None else anat.pitch_deg)
    atrophy = drawn_atrophy if anat.atrophy is None else anat.atrophy
    gamma = app.gamma
    if gamma is None:
        gamma = drawn_gamma if contrast in ("random", "mixed") else 1.0
    lay["rim"] += 3.0 * atrophy  # a shrunken brain leaves more CSF under the dura
    bias_strength = drawn_bias if app.bias_strength is None else app.bias_strength
    noise_level = drawn_noise if app.noise_level is None else app.noise_level
    blur_mm = drawn_blur if app.blur_mm is None else app.blur_mm
    neck, deface, slice_mm = anat.neck, app.deface, app.slice_mm
    if anat.warp_mm is not None:
        elastic_sd = anat.warp_mm
    if anat.proportions is not None:
        scale = scale * np.asarray(anat.proportions)
    extra = (draw_anatomy(extra_rng) if realistic else None,
             draw_random_labels(extra_rng, app.nonbrain_labels) if app.nonbrain_labels else None)
    if anat.skull_base == "thin":
        # The realistic anatomy at its hardest (held-out tests): the non-brain tissue at the
        # brain's border is the brain's own grey and white.
        extra[0].update(thin=0.1, hug=1.0, base_depth=35.0)
        tis.update(base_muscle=tis["gm"], base_fat=tis["wm"], dura_r=tis["gm"])

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
    bias = _smooth_field(np.random.default_rng(bias_seed), app.bias_knots, world, 250.0)
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

    img_t = _template_image(lev, crop, tis, lay, neck, atrophy, *extra)
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



def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """NIfTI-1 image with qform and sform = scanner (code 1) and mm units."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units(xyz="mm", t="sec")
    img.header["descrip"] = b"skullstrip_lib.synth"
    return img
