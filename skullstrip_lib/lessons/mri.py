"""MRI signal models: where T1-, T2- and PD-weighted contrast comes from.

A teaching module for the book's first chapter. An MR image does not show one
physical quantity: each voxel's brightness mixes the density of mobile protons
(PD), how fast their longitudinal magnetisation recovers after excitation (T1)
and how fast the transverse signal decays (T2), weighted by the sequence's
timing, the repetition time TR and the echo time TE. For a spin echo, with the
magnetisation allowed to reach a steady state,

.. math::

    S = PD \\,\\bigl(1 - e^{-TR/T1}\\bigr)\\, e^{-TE/T2} ,

and an inversion-recovery sequence (FLAIR) with inversion time TI gives
:math:`S = PD\\,\\lvert 1 - 2e^{-TI/T1} + e^{-TR/T1}\\rvert\\, e^{-TE/T2}`
(magnitude image, perfect pulses, TE ≪ TR).

:data:`TISSUES` holds typical relaxation times of grey matter, white matter,
CSF and fat at 1.5 T and 3 T: rounded, approximate values in the range the
literature reports (published measurements differ by 10-20 % and more between
studies, methods and brain regions). They are meant to reproduce the familiar
contrasts, not to simulate a particular scanner.

:func:`load_tissue_maps` gives GM, WM and CSF fractions of a real brain (the
MNI152 2009 template bundled with nilearn, 1 mm) so that
:func:`paint_contrast` can render the same anatomy at any (TR, TE, TI).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..viz import figure_png, pyplot

__all__ = [
    "FIELD_STRENGTHS",
    "TISSUES",
    "WEIGHTINGS",
    "Tissue",
    "TissueMaps",
    "best_tr",
    "contrast",
    "display_range",
    "inversion_recovery_signal",
    "load_tissue_maps",
    "null_inversion_time",
    "paint_contrast",
    "sequence_explorer",
    "spin_echo_signal",
    "tissue_signals",
    "tissue_table",
]


@dataclass(frozen=True)
class Tissue:
    """Relaxation parameters of one tissue at one field strength.

    Attributes
    ----------
    pd : float
        Proton density relative to CSF (= 1), unitless.
    t1_ms : float
        Longitudinal relaxation time T1, ms.
    t2_ms : float
        Transverse relaxation time T2, ms.
    """

    pd: float
    t1_ms: float
    t2_ms: float


FIELD_STRENGTHS = ("1.5T", "3T")

TISSUES: dict[str, dict[str, Tissue]] = {
    "1.5T": {
        "wm": Tissue(pd=0.70, t1_ms=800.0, t2_ms=75.0),
        "gm": Tissue(pd=0.80, t1_ms=1150.0, t2_ms=95.0),
        "csf": Tissue(pd=1.00, t1_ms=4000.0, t2_ms=2000.0),
        "fat": Tissue(pd=0.90, t1_ms=270.0, t2_ms=85.0),
    },
    "3T": {
        "wm": Tissue(pd=0.70, t1_ms=1100.0, t2_ms=70.0),
        "gm": Tissue(pd=0.80, t1_ms=1700.0, t2_ms=90.0),
        "csf": Tissue(pd=1.00, t1_ms=4200.0, t2_ms=2000.0),
        "fat": Tissue(pd=0.90, t1_ms=380.0, t2_ms=70.0),
    },
}
"""Typical relaxation times, ``TISSUES[field][tissue]``: approximate literature values.

T1 grows with the field strength, T2 barely changes; CSF has by far the longest
T1 and T2, fat the shortest T1. Rounded values, representative of adult brain
measurements; individual studies differ by 10-20 % or more.
"""

WEIGHTINGS: dict[str, dict[str, float]] = {
    "T1w": {"tr_ms": 500.0, "te_ms": 15.0},
    "PDw": {"tr_ms": 5000.0, "te_ms": 15.0},
    "T2w": {"tr_ms": 5000.0, "te_ms": 100.0},
    "FLAIR": {"tr_ms": 9000.0, "te_ms": 100.0, "ti_ms": 2400.0},
}
"""Textbook sequence timings (ms) for each weighting (spin echo; FLAIR is inversion recovery).

T1-weighted: short TR (T1 differences dominate), short TE (little T2 decay).
PD-weighted: long TR, short TE. T2-weighted: long TR, long TE. FLAIR: T2-weighted
with an inversion time that nulls CSF (:func:`null_inversion_time`).
"""


def _field(field: str) -> dict[str, Tissue]:
    if field not in TISSUES:
        raise ValueError(f"field must be one of {FIELD_STRENGTHS}, got {field!r}")
    return TISSUES[field]


def spin_echo_signal(pd, t1_ms, t2_ms, tr_ms, te_ms) -> np.ndarray:
    """Spin-echo signal ``PD * (1 - exp(-TR/T1)) * exp(-TE/T2)``.

    All arguments broadcast against one another (numpy rules), so a grid of TR
    and TE values gives a grid of signals.

    Parameters
    ----------
    pd : float or array_like
        Proton density (relative, CSF = 1).
    t1_ms, t2_ms : float or array_like
        Relaxation times, ms (> 0).
    tr_ms, te_ms : float or array_like
        Repetition and echo times, ms (>= 0; ``np.inf`` allowed for TR).

    Returns
    -------
    numpy.ndarray
        The signal in units of the fully relaxed signal of PD = 1, the broadcast
        shape of the inputs (0-d for scalars).

    Examples
    --------
    >>> float(spin_echo_signal(1.0, 1000.0, 100.0, np.inf, 0.0))  # fully relaxed, no decay
    1.0
    >>> round(float(spin_echo_signal(1.0, 1000.0, 100.0, 1000.0 * np.log(2), 100.0)), 4)
    0.1839
    """
    pd, t1, t2, tr, te = (np.asarray(v, dtype=float) for v in (pd, t1_ms, t2_ms, tr_ms, te_ms))
    return pd * -np.expm1(-tr / t1) * np.exp(-te / t2)


def inversion_recovery_signal(pd, t1_ms, t2_ms, tr_ms, te_ms, ti_ms) -> np.ndarray:
    """Magnitude inversion-recovery signal ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``.

    The model of FLAIR (and of the inversion in MPRAGE): a 180° pulse flips the
    longitudinal magnetisation, which recovers for TI before the readout; a
    tissue whose magnetisation crosses zero at TI gives no signal. Perfect pulses,
    TE much shorter than TR. Arguments broadcast.

    Parameters
    ----------
    pd : float or array_like
        Proton density (relative, CSF = 1).
    t1_ms, t2_ms : float or array_like
        Relaxation times, ms (> 0).
    tr_ms, te_ms, ti_ms : float or array_like
        Repetition, echo and inversion times, ms.

    Returns
    -------
    numpy.ndarray
        Magnitude signal (>= 0), broadcast shape of the inputs.

    Examples
    --------
    >>> float(inversion_recovery_signal(1.0, 1000.0, 100.0, np.inf, 0.0, 0.0))  # inverted, |-1|
    1.0
    >>> float(inversion_recovery_signal(1.0, 1000.0, 100.0, np.inf, 0.0, 1000.0 * np.log(2)))
    0.0
    """
    pd, t1, t2, tr, te, ti = (np.asarray(v, dtype=float)
                              for v in (pd, t1_ms, t2_ms, tr_ms, te_ms, ti_ms))
    mz = 1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)
    return pd * np.abs(mz) * np.exp(-te / t2)


def null_inversion_time(t1_ms: float, tr_ms: float = np.inf) -> float:
    """Inversion time (ms) at which a tissue's signal is zero: ``T1 ln(2 / (1 + exp(-TR/T1)))``.

    Parameters
    ----------
    t1_ms : float
        The tissue's T1, ms.
    tr_ms : float
        Repetition time, ms; infinite gives the textbook ``T1 ln 2``.

    Returns
    -------
    float
        TI in ms.

    Examples
    --------
    >>> round(null_inversion_time(1000.0), 1)  # 1000 ln 2
    693.1
    """
    return float(t1_ms * math.log(2.0 / (1.0 + math.exp(-tr_ms / t1_ms))))


def tissue_table(field: str = "3T") -> pd.DataFrame:
    """:data:`TISSUES` at one field strength as a table.

    Parameters
    ----------
    field : {"1.5T", "3T"}

    Returns
    -------
    pandas.DataFrame
        Index ``tissue`` (wm, gm, csf, fat); columns ``pd``, ``t1_ms``, ``t2_ms``.

    Examples
    --------
    >>> float(tissue_table("3T").loc["csf", "t1_ms"])
    4200.0
    """
    rows = {name: vars(t) for name, t in _field(field).items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("tissue")


def tissue_signals(tr_ms, te_ms, *, ti_ms=None, field: str = "3T") -> dict[str, np.ndarray]:
    """Signal of every tissue of :data:`TISSUES` for given sequence timings.

    Parameters
    ----------
    tr_ms, te_ms : float or array_like
        Repetition and echo times, ms; arrays broadcast (e.g. a TR column against
        a TE row gives a TR x TE grid per tissue).
    ti_ms : float or array_like, optional
        Inversion time, ms: inversion recovery (FLAIR) instead of a spin echo.
    field : {"1.5T", "3T"}
        Which relaxation times to use.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{"wm": S_wm, "gm": S_gm, "csf": S_csf, "fat": S_fat}``, each of the
        broadcast shape of the timings, in units of the fully relaxed PD = 1 signal.

    Examples
    --------
    >>> s = tissue_signals(500.0, 15.0)  # a T1-weighted spin echo
    >>> bool(s["fat"] > s["wm"] > s["gm"] > s["csf"])
    True
    """
    out = {}
    for name, t in _field(field).items():
        if ti_ms is None:
            out[name] = spin_echo_signal(t.pd, t.t1_ms, t.t2_ms, tr_ms, te_ms)
        else:
            out[name] = inversion_recovery_signal(t.pd, t.t1_ms, t.t2_ms, tr_ms, te_ms, ti_ms)
    return out


def display_range(tr_ms: float, te_ms: float, ti_ms: float | None = None, *,
                  field: str = "3T") -> dict[str, float]:
    """A grey-scale window for an image painted with these timings.

    From half the darkest to the brightest *brain* tissue (fat may saturate),
    so that grey and white matter stay readable whatever the weighting.

    Returns
    -------
    dict
        ``{"vmin": float, "vmax": float}``, ready for ``imshow(**window)``.

    Examples
    --------
    >>> w = display_range(500.0, 15.0)
    >>> bool(0 < w["vmin"] < w["vmax"])
    True
    """
    sig = [float(v) for t, v in tissue_signals(tr_ms, te_ms, ti_ms=ti_ms, field=field).items()
           if t != "fat"]
    return {"vmin": 0.5 * min(sig), "vmax": max(max(sig), 1e-6)}


def contrast(tissue_a: str, tissue_b: str, tr_ms, te_ms, *, ti_ms=None,
             field: str = "3T") -> np.ndarray:
    """Signal difference ``S_a - S_b`` of two tissues for given timings.

    With the same noise everywhere in the image, this difference is what lets
    the eye (or a network) tell the tissues apart; its sign says which is brighter.

    Parameters
    ----------
    tissue_a, tissue_b : str
        Keys of :data:`TISSUES` (``"wm"``, ``"gm"``, ``"csf"``, ``"fat"``).
    tr_ms, te_ms : float or array_like
        Repetition and echo times, ms; arrays broadcast.
    ti_ms : float or array_like, optional
        Inversion time for inversion recovery.
    field : {"1.5T", "3T"}
        Which relaxation times to use.

    Returns
    -------
    numpy.ndarray
        ``S_a - S_b`` (units of the fully relaxed PD = 1 signal), broadcast shape.

    Examples
    --------
    >>> bool(contrast("wm", "gm", 500.0, 15.0) > 0)   # T1-weighted: WM brighter
    True
    >>> bool(contrast("wm", "gm", 5000.0, 100.0) < 0)  # T2-weighted: GM brighter
    True
    """
    signals = tissue_signals(tr_ms, te_ms, ti_ms=ti_ms, field=field)
    for name in (tissue_a, tissue_b):
        if name not in signals:
            raise ValueError(f"unknown tissue {name!r}; choose from {sorted(signals)}")
    return signals[tissue_a] - signals[tissue_b]


def best_tr(tissue_a: str, tissue_b: str, te_ms: float = 0.0, *, field: str = "3T") -> float:
    """TR (ms) at which the T1-driven spin-echo difference ``S_a - S_b`` peaks.

    With ``A = PD_a exp(-TE/T2_a)`` and ``B`` alike, ``S_a - S_b = A (1 - e^{-TR/T1_a})
    - B (1 - e^{-TR/T1_b})`` starts at 0 for TR = 0, reaches an extremum where its
    derivative vanishes, ``TR* = ln(A T1_b / (B T1_a)) / (1/T1_a - 1/T1_b)``, and then
    tends to ``A - B`` (the PD/T2 difference) for long TR. TR* is the best T1
    weighting for the pair; when the difference only grows (no interior extremum)
    there is none and the result is ``inf``.

    Parameters
    ----------
    tissue_a, tissue_b : str
        Keys of :data:`TISSUES`, with different T1.
    te_ms : float
        Echo time, ms.
    field : {"1.5T", "3T"}
        Which relaxation times to use.

    Returns
    -------
    float
        TR*, ms (``inf`` if the difference has no interior extremum).

    Examples
    --------
    >>> round(best_tr("wm", "gm", 0.0, field="3T"))  # T1s of 1100 and 1700 ms
    941
    """
    tissues = _field(field)
    a, b = tissues[tissue_a], tissues[tissue_b]
    if a.t1_ms == b.t1_ms:
        raise ValueError("the two tissues have the same T1: there is no T1 contrast")
    amp_a = a.pd * math.exp(-te_ms / a.t2_ms)
    amp_b = b.pd * math.exp(-te_ms / b.t2_ms)
    tr = math.log(amp_a * b.t1_ms / (amp_b * a.t1_ms)) / (1.0 / a.t1_ms - 1.0 / b.t1_ms)
    return tr if tr > 0 else math.inf


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class TissueMaps:
    """Tissue fractions of one brain on a voxel grid.

    Attributes
    ----------
    fractions : dict of str to numpy.ndarray
        ``"gm"``, ``"wm"``, ``"csf"`` (and ``"fat"`` when a scalp is added):
        float32 arrays of shape ``(X, Y, Z)`` in [0, 1], summing to at most 1
        per voxel (the rest is air or bone, which give no signal here).
    affine : numpy.ndarray
        (4, 4) voxel-to-world (RAS+ mm) affine.
    """

    fractions: dict[str, np.ndarray]
    affine: np.ndarray

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel size in mm."""
        return tuple(float(z) for z in np.linalg.norm(self.affine[:3, :3], axis=0))


def load_tissue_maps(*, scalp: bool = True) -> TissueMaps:
    """GM, WM and CSF fractions of the MNI152 2009 brain (nilearn's bundled templates), 1 mm.

    CSF is what lies inside the (hole-filled) brain mask and is neither GM nor
    WM. With `scalp`, a crude scalp is added: a 4 mm layer of fat 8 to 12 mm
    outside the brain surface (what lies between, skull and meninges, gives no
    signal in this cartoon, as cortical bone nearly does in a real scan).

    Parameters
    ----------
    scalp : bool
        Add the fat layer.

    Returns
    -------
    TissueMaps
        Arrays of shape (197, 233, 189) at 1 mm, RAS voxel order. Takes a few
        seconds (nilearn import and three gzip'ed templates).
    """
    from nilearn import datasets
    from scipy import ndimage as ndi

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    mask = ndi.binary_fill_holes(np.asarray(mask_img.dataobj) > 0)
    m = mask.astype(np.float32)
    gm = np.asarray(gm_img.dataobj, dtype=np.float32) * m
    wm = np.asarray(wm_img.dataobj, dtype=np.float32) * m
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(m - gm - wm, 0.0, 1.0)
    fractions = {"gm": gm, "wm": wm, "csf": csf}
    if scalp:
        dist = ndi.distance_transform_edt(~mask).astype(np.float32)
        fractions["fat"] = ((dist > 8.0) & (dist <= 12.0)).astype(np.float32)
    return TissueMaps(fractions=fractions, affine=np.asarray(mask_img.affine, dtype=float))


def paint_contrast(fractions: Mapping[str, np.ndarray], tr_ms: float, te_ms: float, *,
                   ti_ms: float | None = None, field: str = "3T") -> np.ndarray:
    """Render tissue fractions as an image: ``sum_k fraction_k * S_k(TR, TE[, TI])``.

    Each voxel's signal is the fraction-weighted sum of its tissues' signals (a
    partial-volume model with no noise, bias or blur).

    Parameters
    ----------
    fractions : mapping of str to numpy.ndarray
        Tissue name (keys of :data:`TISSUES`) to fraction arrays, all the same
        shape, e.g. :attr:`TissueMaps.fractions`.
    tr_ms, te_ms : float
        Repetition and echo times, ms.
    ti_ms : float, optional
        Inversion time, ms (inversion recovery, e.g. FLAIR).
    field : {"1.5T", "3T"}
        Which relaxation times to use.

    Returns
    -------
    numpy.ndarray
        float32 image of the fractions' shape, in units of the fully relaxed
        PD = 1 signal.

    Examples
    --------
    >>> f = {"wm": np.array([1.0, 0.0, 0.5]), "gm": np.array([0.0, 1.0, 0.5])}
    >>> img = paint_contrast(f, 500.0, 15.0)
    >>> bool(np.isclose(img[2], (img[0] + img[1]) / 2))
    True
    """
    signals = tissue_signals(tr_ms, te_ms, ti_ms=ti_ms, field=field)
    out: np.ndarray | None = None
    for name, frac in fractions.items():
        if name not in signals:
            raise ValueError(f"unknown tissue {name!r}; choose from {sorted(signals)}")
        term = np.asarray(frac, dtype=np.float32) * np.float32(signals[name])
        out = term if out is None else out + term
    if out is None:
        raise ValueError("no tissue fractions given")
    return out


def sequence_explorer(fractions, *, axial_slice: int, field: str = "3T",
                      colors: dict[str, str] | None = None):
    """Sliders for TR, TE, TI and field strength, redrawing a painted brain slice.

    Each change repaints the tissue fractions with
    :func:`skullstrip_lib.paint_contrast` and shows the tissues' signals as
    bars. It needs a live kernel; the book shows static figures beside it.

    Parameters
    ----------
    fractions : mapping of str to numpy.ndarray
        Tissue fraction maps (:attr:`skullstrip_lib.lessons.mri.TissueMaps.fractions`).
    axial_slice : int
        The axial slice shown (voxel index along the third axis).
    field : {"1.5T", "3T"}
        The initial field strength.
    colors : dict, optional
        Bar colour per tissue name.

    Returns
    -------
    ipywidgets.VBox
    """
    import ipywidgets as widgets

    plt = pyplot()
    colors = colors or {}

    view = widgets.Image(format="png")

    def draw(_=None) -> None:
        tr_ms, te_ms, ti_ms, field_strength = (c.value for c in controls.values())
        ti = ti_ms if ti_ms > 0 else None  # TI = 0 means a plain spin echo
        img = paint_contrast(fractions, tr_ms, te_ms, ti_ms=ti, field=field_strength)
        sig = tissue_signals(tr_ms, te_ms, ti_ms=ti, field=field_strength)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
        ax1.imshow(img[:, :, axial_slice].T, cmap="gray", origin="lower",
                   **display_range(tr_ms, te_ms, ti, field=field_strength))
        ax1.axis("off")
        ax2.bar(list(sig), [float(v) for v in sig.values()],
                color=[colors.get(n, "tab:gray") for n in sig])
        ax2.set(ylim=(0, 1), ylabel="signal", title="tissue signals")
        fig.tight_layout()
        view.value = figure_png(fig)

    controls = {
        "tr_ms": widgets.IntSlider(500, min=50, max=10000, step=50, description="TR (ms)"),
        "te_ms": widgets.IntSlider(15, min=5, max=250, step=5, description="TE (ms)"),
        "ti_ms": widgets.IntSlider(0, min=0, max=4000, step=50, description="TI (ms)"),
        "field_strength": widgets.Dropdown(options=FIELD_STRENGTHS, value=field,
                                           description="field"),
    }
    for c in controls.values():
        c.observe(draw, names="value")
    draw()
    boxes = list(controls.values())
    return widgets.VBox([widgets.HBox(boxes[:2]), widgets.HBox(boxes[2:]), view])
