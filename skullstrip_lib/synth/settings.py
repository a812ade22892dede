"""What a synthetic head is made with: typed, validated settings in three groups.

:func:`~skullstrip_lib.synth.make_head` takes a :class:`HeadSettings` (or the same
values as flat keyword arguments, the form the training groups, ``config.yaml``
and ``skullstrip synth`` use). The settings are frozen dataclasses that check
their values when made, so a bad value fails before anything is computed or
written:

- :class:`GridSettings`: the scanner's voxel grid (shape, voxel size, axis order,
  obliquity, centre);
- :class:`AnatomySettings`: the head itself (size, tilt, atrophy, neck, and the
  non-brain anatomy around the brain: ``skull_base``);
- :class:`AppearanceSettings`: how the scanner renders it (contrast, bias field,
  noise, blur, slice profile, contrast curve, defacing, random non-brain labels).

Every setting's default reproduces the generator as it was before the groups
existed, byte for byte for the same seed: new anatomy and appearance are opt-in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from ..validate import check_choice
from .template import _rotation

__all__ = [
    "ATROPHY_RANGE",
    "BIAS_RANGE",
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
    "check_head_kwargs",
    "grid_affine",
]

NFBS_SHAPE = (256, 256, 192)
"""Voxel grid of an NFBS T1w scan (1 mm isotropic)."""

CONTRASTS = ("t1", "t2", "random", "mixed")
"""Tissue contrasts: MPRAGE-like T1, T2-like, a random monotone remap of T1, every tissue on
its own."""

SKULL_BASES = ("uniform", "realistic", "thin")
"""Non-brain anatomy around the brain (see :class:`AnatomySettings`)."""

# Anatomy drawn per head when not given (see make_head): linear size relative to
# MNI152 (whose brain mask is 1883 mL: 0.84-1.04 gives about 1.1-2.1 L, the adult
# range of masks that include the sulcal CSF), head tilt about the left-right
# axis, and atrophy (widened sulci and ventricles, more CSF under the dura).
SCALE_RANGE = (0.84, 1.04)
PITCH_RANGE_DEG = (-15.0, 15.0)
ATROPHY_RANGE = (0.0, 0.6)
BIAS_RANGE = (0.1, 0.4)
"""Default range of the bias field's peak relative amplitude drawn per head."""

MIN_SHAPE = 8
"""Fewest voxels along any axis of a synthetic grid: fewer cannot hold a head."""
MAX_VOXELS = 512**3
"""Most voxels of a synthetic grid (a head of 512^3 takes about 6 GB while it is made)."""


def _floats(name: str, value: Any, n: int = 3) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(name, f"must be {n} numbers, got {value!r}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise InvalidArgumentError(name, f"must be {n} finite numbers, got {value!r}")
    return out


def _optional(name: str, value: Any, lo: float = 0.0, hi: float = math.inf,
              open_lo: bool = False) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(name, f"must be a number or None, got {value!r}") from None
    if not math.isfinite(v) or v < lo or v > hi or (open_lo and v == lo):
        bound = f"({lo:g}" if open_lo else f"[{lo:g}"
        raise InvalidArgumentError(name, f"must be a finite number in {bound}, {hi:g}], "
                                         f"got {value!r}")
    return v


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


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
        raise InvalidArgumentError("orientation", f"must be three axis codes like 'RAS', "
                                                  f"got {orientation!r}")
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
class GridSettings:
    """The scanner's voxel grid.

    Attributes
    ----------
    shape : tuple of 3 int
        Grid size in voxels, each at least :data:`MIN_SHAPE`, at most
        :data:`MAX_VOXELS` in all (default NFBS, 256x256x192).
    voxel_size : tuple of 3 float
        Voxel size in mm, finite and positive.
    orientation : str
        nibabel axis codes of the voxel axes, e.g. ``"RAS"``, ``"LPS"``, ``"PIR"``.
    oblique_deg : tuple of 3 float
        Grid rotation about x, y, z in degrees (oblique acquisitions).
    center_mm : tuple of 3 float
        World position (mm, RAS+) of the grid centre.

    Examples
    --------
    >>> GridSettings(shape=(64, 64, 48), voxel_size=(4, 4, 4)).voxel_size
    (4.0, 4.0, 4.0)
    >>> GridSettings(voxel_size=(float("nan"), 1, 1))
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: voxel_size must be 3 finite numbers, got (nan, 1, 1)
    """

    shape: tuple[int, int, int] = NFBS_SHAPE
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    orientation: str = "RAS"
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    center_mm: tuple[float, float, float] = (0.0, -18.0, -8.0)

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(s) for s in self.shape)
            integral = all(float(s) == int(s) and not isinstance(s, bool) for s in self.shape)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgumentError("shape", f"must be 3 whole numbers, got {self.shape!r}") \
                from None
        if len(shape) != 3 or not integral:
            raise InvalidArgumentError("shape", f"must be 3 whole numbers, got {self.shape!r}")
        if min(shape) < MIN_SHAPE:
            raise InvalidArgumentError("shape", f"{shape} is too small for a head: every axis "
                                                f"needs at least {MIN_SHAPE} voxels")
        if math.prod(shape) > MAX_VOXELS:
            raise InvalidArgumentError("shape", f"{shape} has {math.prod(shape):,} voxels, more "
                                                f"than {MAX_VOXELS:,}")
        voxel = _floats("voxel_size", self.voxel_size)
        if min(voxel) <= 0:
            raise InvalidArgumentError("voxel_size", f"must be positive, got {self.voxel_size!r}")
        if not isinstance(self.orientation, str):
            raise InvalidArgumentError("orientation", f"must be three axis codes like 'RAS', "
                                                      f"got {self.orientation!r}")
        _set(self, "shape", shape)
        _set(self, "voxel_size", voxel)
        _set(self, "oblique_deg", _floats("oblique_deg", self.oblique_deg))
        _set(self, "center_mm", _floats("center_mm", self.center_mm))
        grid_affine(shape, voxel, self.orientation, self.oblique_deg, self.center_mm)


@dataclass(frozen=True)
class AnatomySettings:
    """The head: its size, pose and ageing, and the non-brain anatomy around the brain.

    Attributes
    ----------
    scale : float or None
        Linear size of head and brain relative to MNI152 (whose brain mask holds
        1883 mL). None draws it from :data:`SCALE_RANGE`; each axis then gets
        its own further 0.96-1.04.
    pitch_deg : float or None
        Head tilt about the left-right axis (nodding), degrees. None draws it
        from :data:`PITCH_RANGE_DEG`.
    atrophy : float or None
        0 (none) to 1 (severe): thinner gyri, wider sulci, larger ventricles,
        more CSF under the dura. None draws it from :data:`ATROPHY_RANGE`.
    neck : bool
        Keep the neck below the skull base; False zeroes what lies below it.
    skull_base : {"uniform", "realistic", "thin"}
        ``"uniform"`` (the default, the generator's first head): the same
        concentric shell (CSF rim, dura, inner table, diploe, outer table, 4-8 mm)
        everywhere around the brain, uniform muscle below it. ``"realistic"``:
        the skull thins by region, down to about 1 mm under the temporal lobes,
        over the orbits and under the cerebellum, with muscle and fat of
        brain-like intensity right beneath; sphenoid, ethmoid and mastoid air
        cells, the clivus and petrous bones with marrow, the sella with the
        pituitary; falx, tentorium and venous sinuses with random intensities
        (grey-matter-like and bright among them); see
        :mod:`skullstrip_lib.synth.anatomy`. ``"thin"``: the realistic
        anatomy at its hardest, for held-out tests: the thinnest floors
        (about 0.5 mm), the cranial cavity hugging the brain, 35 mm of muscle
        and fat whose intensities are the head's own grey and white matter's,
        and dura as grey as the cortex.
    warp_mm : float or None
        Standard deviation (mm) of the smooth elastic displacement (features
        of about 4 cm) that makes each head's anatomy its own. None draws it in
        [1, 2.5]; real brains differ from MNI152 after an affine by more,
        5 mm and over in the temporal lobes and cerebellum.
    proportions : tuple of 3 float or None
        Factors on the head's left-right, front-back and top-bottom size, on top
        of `scale` and the 0.96-1.04 drawn per axis: real heads vary in shape
        (a brain 10 % flatter or longer than MNI152 is common). None: 1, 1, 1.
    """

    scale: float | None = None
    pitch_deg: float | None = None
    atrophy: float | None = None
    neck: bool = True
    skull_base: str = "uniform"
    warp_mm: float | None = None
    proportions: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        _set(self, "warp_mm", _optional("warp_mm", self.warp_mm, 0.0, 20.0))
        if self.proportions is not None:
            prop = _floats("proportions", self.proportions)
            if not all(0.5 <= p <= 2.0 for p in prop):
                raise InvalidArgumentError("proportions", f"must be 3 factors in [0.5, 2], "
                                                          f"got {self.proportions!r}")
            _set(self, "proportions", prop)
        _set(self, "scale", _optional("scale", self.scale, 0.0, 3.0, open_lo=True))
        _set(self, "pitch_deg", _optional("pitch_deg", self.pitch_deg, -90.0, 90.0))
        _set(self, "atrophy", _optional("atrophy", self.atrophy, 0.0, 1.0))
        check_choice(self.skull_base, "skull_base", SKULL_BASES)
        _set(self, "neck", bool(self.neck))


@dataclass(frozen=True)
class AppearanceSettings:
    """How the scanner renders the head.

    Attributes
    ----------
    contrast : {"t1", "t2", "random", "mixed"}
        Tissue contrast: MPRAGE-like T1 (WM > GM > CSF, fat bright, bone dark,
        marrow dark to bright), T2-like (fluid bright), a random monotone remap
        of the T1 intensities, or every tissue drawn on its own ("mixed", as in
        SynthStrip's training).
    bias_strength : float or None
        Peak relative amplitude of the multiplicative bias field (0.2 = gains
        from 1/1.2 to 1.2). None draws it from `bias_range`.
    bias_range : tuple of 2 float
        Where `bias_strength` is drawn when not given (default
        :data:`BIAS_RANGE`).
    bias_knots : int
        Knots per axis of the bias field's spline over a 500 mm cube: 5 (the
        default) varies over about 12 cm, 7-9 over 6-8 cm, like a multi-channel
        head coil's field at 3 T.
    noise_level : float or None
        Rician noise sigma as a fraction of the WM intensity. None draws it in
        [0.01, 0.04].
    blur_mm : float or None
        Gaussian blur sigma in mm. None draws it in [0, 0.6].
    slice_mm : float or None
        Slice thickness (mm) along the third voxel axis, thicker than its voxels.
    gamma : float or None
        Contrast curve ``I**gamma``. None: 1 for "t1" and "t2", drawn around 1
        for "random" and "mixed".
    deface : bool
        Zero the face in front of a plane anterior-inferior to the brain.
    nonbrain_labels : int
        0 (the default): non-brain tissues take their anatomical intensities.
        2 to 12: SynthStrip-style random labels: the soft tissue outside the
        skull is split into that many classes by the argmax of smooth
        multi-scale noise fields, each class drawn its own intensity (anywhere
        from air to brighter than white matter, so overlapping the brain's) and
        texture; see :func:`skullstrip_lib.synth.appearance.random_labels`.

    Examples
    --------
    >>> AppearanceSettings(contrast="t1", nonbrain_labels=6).nonbrain_labels
    6
    >>> AppearanceSettings(contrast="pd")
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: contrast must be one of 't1', 't2', 'random' or 'mixed', got 'pd'
    """  # noqa: E501 (a doctest's expected line cannot be wrapped)

    contrast: str = "t1"
    bias_strength: float | None = None
    bias_range: tuple[float, float] = BIAS_RANGE
    bias_knots: int = 5
    noise_level: float | None = None
    blur_mm: float | None = None
    slice_mm: float | None = None
    gamma: float | None = None
    deface: bool = True
    nonbrain_labels: int = 0

    def __post_init__(self) -> None:
        check_choice(self.contrast, "contrast", CONTRASTS)
        _set(self, "bias_strength", _optional("bias_strength", self.bias_strength, 0.0, 10.0))
        lo, hi = _floats("bias_range", self.bias_range, 2)
        if not 0.0 <= lo <= hi <= 10.0:
            raise InvalidArgumentError("bias_range", f"must be (low, high) with 0 <= low <= high "
                                                     f"<= 10, got {self.bias_range!r}")
        _set(self, "bias_range", (lo, hi))
        if isinstance(self.bias_knots, bool) or int(self.bias_knots) != self.bias_knots or not (
                4 <= int(self.bias_knots) <= 16):
            raise InvalidArgumentError("bias_knots", f"must be a whole number from 4 to 16, "
                                                     f"got {self.bias_knots!r}")
        _set(self, "bias_knots", int(self.bias_knots))
        _set(self, "noise_level", _optional("noise_level", self.noise_level, 0.0, 1.0))
        _set(self, "blur_mm", _optional("blur_mm", self.blur_mm, 0.0, 20.0))
        _set(self, "slice_mm", _optional("slice_mm", self.slice_mm, 0.0, 50.0))
        _set(self, "gamma", _optional("gamma", self.gamma, 0.0, 10.0, open_lo=True))
        _set(self, "deface", bool(self.deface))
        n = self.nonbrain_labels
        if isinstance(n, bool) or int(n) != n or not (n == 0 or 2 <= int(n) <= 12):
            raise InvalidArgumentError("nonbrain_labels", f"must be 0 or a whole number from 2 "
                                                          f"to 12, got {n!r}")
        _set(self, "nonbrain_labels", int(n))


_GROUPS = {"grid": GridSettings, "anatomy": AnatomySettings, "appearance": AppearanceSettings}
_GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}

HEAD_ARGUMENTS = tuple(_GROUP_OF)
"""Every flat keyword argument :func:`~skullstrip_lib.synth.make_head` takes (a field of one
of the three groups)."""


@dataclass(frozen=True)
class HeadSettings:
    """Everything a head is made with but its seed: grid, anatomy and appearance.

    Examples
    --------
    >>> s = HeadSettings.from_kwargs(shape=(64, 64, 48), contrast="t2")
    >>> s.grid.shape, s.appearance.contrast, s.anatomy.skull_base
    ((64, 64, 48), 't2', 'uniform')
    >>> s.replace(skull_base="realistic").anatomy.skull_base
    'realistic'
    >>> HeadSettings.from_kwargs(colour="red")
    Traceback (most recent call last):
    ...
    TypeError: unknown make_head arguments: colour
    """

    grid: GridSettings = field(default_factory=GridSettings)
    anatomy: AnatomySettings = field(default_factory=AnatomySettings)
    appearance: AppearanceSettings = field(default_factory=AppearanceSettings)

    @classmethod
    def from_kwargs(cls, base: HeadSettings | None = None, **kwargs: Any) -> HeadSettings:
        """Settings from flat keyword arguments (``shape=...``, ``contrast=...``), over `base`.

        Raises
        ------
        TypeError
            An argument no group has.
        InvalidArgumentError
            A value out of its range (a :class:`ValueError` naming it).
        """
        return (base or cls()).replace(**kwargs)

    def replace(self, **kwargs: Any) -> HeadSettings:
        """A copy with some flat fields changed (validated like a new one)."""
        unknown = sorted(set(kwargs) - set(_GROUP_OF))
        if unknown:
            raise TypeError(f"unknown make_head arguments: {', '.join(unknown)}")
        changes: dict[str, dict[str, Any]] = {}
        for key, value in kwargs.items():
            changes.setdefault(_GROUP_OF[key], {})[key] = value
        groups = {g: dataclasses.replace(getattr(self, g), **c) for g, c in changes.items()}
        return dataclasses.replace(self, **groups)

    def as_kwargs(self) -> dict[str, Any]:
        """The flat keyword arguments (every field) that :meth:`from_kwargs` reads back."""
        return {f.name: getattr(getattr(self, g), f.name)
                for g, cls in _GROUPS.items() for f in dataclasses.fields(cls)}


def check_head_kwargs(kwargs: Mapping[str, Any]) -> HeadSettings:
    """Validate flat :func:`~skullstrip_lib.synth.make_head` arguments before any work.

    Returns the :class:`HeadSettings` they make; raises TypeError (an unknown
    argument) or :class:`~skullstrip_lib.errors.InvalidArgumentError` (a bad value, a
    :class:`ValueError` naming it) otherwise.
    """
    return HeadSettings.from_kwargs(**dict(kwargs))

