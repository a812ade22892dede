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

The spin-echo equation assumes a 90°-180° spin echo repeated every TR, with
TE much shorter than TR and the transverse magnetisation fully decayed before
each excitation (TR much longer than T2, or spoiled); mono-exponential T1 and
T2 relaxation; no flow, diffusion or magnetisation-transfer effects; and PD
constant within a tissue. A gradient echo would decay with T2* instead of T2.

:data:`TISSUES` holds relaxation times of white matter, grey matter, CSF and
fat at 1.5 T and 3 T, each from a cited measurement (:data:`SOURCES` says which
value comes from where). Published values differ by 10-20 % and more between
studies, methods and brain regions: they reproduce the familiar contrasts, not
a particular scanner. NFBS was acquired at 3 T.

NFBS's T1-weighted heads are MPRAGE scans (:data:`NFBS_MPRAGE`):
:func:`inversion_recovery_mz` and :func:`mprage_contrast` give the
longitudinal magnetisation after an inversion and a simple model of the
MPRAGE contrast, and :func:`inversion_recovery_curves` draws them.

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

from .._docs import fill_doc
from ..viz import figure_png, label_orientation, pyplot

__all__ = [
    "FIELD_STRENGTHS",
    "NFBS_MPRAGE",
    "SOURCES",
    "TISSUES",
    "WEIGHTINGS",
    "Tissue",
    "TissueMaps",
    "best_tr",
    "contrast",
    "display_range",
    "inversion_recovery_curves",
    "inversion_recovery_mz",
    "inversion_recovery_signal",
    "load_tissue_maps",
    "mprage_contrast",
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
        "wm": Tissue(pd=0.70, t1_ms=884.0, t2_ms=72.0),
        "gm": Tissue(pd=0.80, t1_ms=1124.0, t2_ms=95.0),
        "csf": Tissue(pd=1.00, t1_ms=4300.0, t2_ms=1790.0),
        "fat": Tissue(pd=0.90, t1_ms=343.0, t2_ms=58.0),
    },
    "3T": {
        "wm": Tissue(pd=0.70, t1_ms=1084.0, t2_ms=69.0),
        "gm": Tissue(pd=0.80, t1_ms=1820.0, t2_ms=99.0),
        "csf": Tissue(pd=1.00, t1_ms=4300.0, t2_ms=1790.0),
        "fat": Tissue(pd=0.90, t1_ms=382.0, t2_ms=68.0),
    },
}
"""Relaxation times, ``TISSUES[field][tissue]``, from the studies in :data:`SOURCES`.

T1 of tissue grows with the field strength, T2 barely changes; CSF (nearly free
water) has by far the longest T1 and T2, and its T1 shows no measurable field
dependence; fat has the shortest T1. PD is a relative water content (CSF = 1),
rounded: a teaching value, not a measurement from these sources.
"""

SOURCES: dict[str, str] = {
    "wm, gm": "Stanisz et al. 2005, Magn Reson Med 54:507-512, doi:10.1002/mrm.20605: "
              "T1 and T2 at 1.5 T and 3 T (bovine brain in vitro, 37 °C)",
    "csf T1": "Rooney et al. 2007, Magn Reson Med 57:308-318, doi:10.1002/mrm.21122: "
              "about 4.3 s in vivo, independent of the field strength",
    "csf T2": "Spijkerman et al. 2018, MAGMA, doi:10.1007/s10334-017-0659-3: "
              "about 1.8 s at 3 T (partial-volume corrected); the 1.5 T value is taken as equal",
    "fat": "de Bazelaire et al. 2004, Radiology 230:652-659, doi:10.1148/radiol.2303021331: "
           "subcutaneous fat in vivo at 1.5 T and 3 T (fat T2 depends much on the method: "
           "Gold et al. 2004 measured 133-165 ms with T2 preparation)",
}
"""Where each value of :data:`TISSUES` comes from (the book's bibliography has the entries)."""

NFBS_MPRAGE: dict[str, float] = {"tr_ms": 1900.0, "te_ms": 2.52, "ti_ms": 900.0,
                                 "flip_deg": 9.0}
"""Nominal MPRAGE settings of the NKI-Rockland protocol NFBS comes from (3 T Siemens
Magnetom TIM Trio, 1 mm isotropic): TR (inversion to inversion), TE, TI and flip angle.

As reported for the Enhanced NKI-Rockland Sample's MPRAGE; the NFBS page does not
list them, and they were not checked against the scans' headers.
"""

WEIGHTINGS: dict[str, dict[str, float]] = {
    "T1w": {"tr_ms": 500.0, "te_ms": 15.0},
    "PDw": {"tr_ms": 5000.0, "te_ms": 15.0},
    "T2w": {"tr_ms": 5000.0, "te_ms": 100.0},
    "FLAIR": {"tr_ms": 9000.0, "te_ms": 100.0, "ti_ms": 2500.0},
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


@fill_doc
def spin_echo_signal(pd, t1_ms, t2_ms, tr_ms, te_ms) -> np.ndarray:
    """Spin-echo signal ``PD * (1 - exp(-TR/T1)) * exp(-TE/T2)``.

    Assumes a 90°-180° spin echo with TE much shorter than TR, the transverse
    magnetisation fully decayed before each excitation (TR much longer than
    T2), mono-exponential relaxation, no flow, diffusion or magnetisation
    transfer, and PD constant per tissue. (A gradient echo decays with T2*.)

    All arguments broadcast against one another (numpy rules), so a grid of TR
    and TE values gives a grid of signals.

    Parameters
    ----------
    %(relaxation)s
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


@fill_doc
def inversion_recovery_signal(pd, t1_ms, t2_ms, tr_ms, te_ms, ti_ms) -> np.ndarray:
    """Magnitude inversion-recovery signal ``PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)``.

    The model of FLAIR (and of the inversion in MPRAGE): a 180° pulse flips the
    longitudinal magnetisation, which recovers for TI before the readout; a
    tissue whose magnetisation crosses zero at TI gives no signal. Perfect pulses,
    TE much shorter than TR. Arguments broadcast.

    Parameters
    ----------
    %(relaxation)s
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


def inversion_recovery_mz(t1_ms, ti_ms, tr_ms=np.inf) -> np.ndarray:
    """Longitudinal magnetisation ``Mz / M0`` a time TI after a 180° inversion (signed).

    ``1 - 2 exp(-TI/T1) + exp(-TR/T1)``: the magnetisation starts from what
    had recovered since the previous readout (taken to use it all up, as the
    90° excitation of a classic inversion recovery does), is flipped, and
    recovers towards ``+1``. With ``TR = inf`` (fully relaxed before every
    inversion) this is the textbook ``1 - 2 exp(-TI/T1)``, which starts at -1,
    crosses zero at ``TI = T1 ln 2`` and tends to +1. Arguments broadcast.

    Parameters
    ----------
    t1_ms : float or array_like
        T1, ms (> 0).
    ti_ms : float or array_like
        Time after the inversion, ms.
    tr_ms : float or array_like
        Time between inversions, ms; ``np.inf`` for full recovery.

    Returns
    -------
    numpy.ndarray
        ``Mz / M0`` in [-1, 1], broadcast shape of the inputs.

    Examples
    --------
    >>> float(inversion_recovery_mz(1000.0, 0.0))  # just after the inversion
    -1.0
    >>> round(float(inversion_recovery_mz(1000.0, 1000.0 * np.log(2))), 12)  # the null point
    0.0
    >>> round(float(inversion_recovery_mz(1084.0, 900.0, 1900.0)), 3)  # WM at 3 T, NFBS timing
    0.301
    """
    t1, ti, tr = (np.asarray(v, dtype=float) for v in (t1_ms, ti_ms, tr_ms))
    return 1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1)


@fill_doc
def mprage_contrast(field: str = "3T", *, tr_ms: float = NFBS_MPRAGE["tr_ms"],
                    ti_ms: float = NFBS_MPRAGE["ti_ms"],
                    flip_deg: float = NFBS_MPRAGE["flip_deg"]) -> dict[str, float]:
    """A simple model of the MPRAGE contrast: ``PD |Mz(TI)| sin(flip)`` per tissue.

    The magnetisation at the centre of the readout is taken as that of an
    inversion recovery read at TI (:func:`inversion_recovery_mz` with the
    sequence's TR), scaled by the small flip angle. The gradient-echo train of
    the real sequence (many small pulses around TI, which lower and smooth the
    curves) and the T2* decay until TE = 2.52 ms (a few per cent) are left out:
    the model gives the order of the tissues, not their exact values.

    Parameters
    ----------
    %(field)s
    tr_ms, ti_ms : float
        Time between inversions and inversion time, ms (NFBS's by default).
    flip_deg : float
        Readout flip angle, degrees.

    Returns
    -------
    dict of str to float
        Signal per tissue of :data:`TISSUES`, in units of the fully relaxed PD = 1
        magnetisation.

    Examples
    --------
    >>> s = mprage_contrast("3T")  # TR 1900 ms, TI 900 ms, 9°
    >>> bool(s["wm"] > s["gm"] > s["csf"])
    True
    """
    sin = math.sin(math.radians(flip_deg))
    return {name: float(t.pd * abs(inversion_recovery_mz(t.t1_ms, ti_ms, tr_ms)) * sin)
            for name, t in _field(field).items()}


@fill_doc
def inversion_recovery_curves(field: str = "3T", *, ti_ms: float = NFBS_MPRAGE["ti_ms"],
                              tr_ms: float = NFBS_MPRAGE["tr_ms"],
                              tissues=("wm", "gm", "csf"), t_max_ms: float = 5000.0,
                              colors: dict[str, str] | None = None):
    """Longitudinal magnetisation after an inversion, and the MPRAGE model, for WM, GM, CSF.

    Left: ``Mz/M0 = 1 - 2 exp(-t/T1)`` after a 180° pulse from full
    relaxation, each tissue's null point ``T1 ln 2`` dotted. Right: the same
    with the time between inversions ``tr_ms`` (``+ exp(-TR/T1)``,
    :func:`inversion_recovery_mz`), against the inversion time; its zero
    crossings are the null points of :func:`null_inversion_time`. Both panels
    mark ``ti_ms`` with a dashed line.

    Parameters
    ----------
    %(field)s
    ti_ms, tr_ms : float
        Inversion time and time between inversions, ms (NFBS's MPRAGE by default).
    tissues : sequence of str
        Keys of :data:`TISSUES` to draw.
    t_max_ms : float
        Right end of the time axes, ms.
    colors : dict, optional
        Line colour per tissue.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes; each tissue's curve is labelled with its T1.

    Examples
    --------
    >>> fig = inversion_recovery_curves("3T")
    >>> [ax.get_title() for ax in fig.axes]
    ['inversion from full relaxation, 3T', 'inversions every TR = 1900 ms, 3T']
    >>> [line.get_label() for line in fig.axes[0].lines][:3]
    ['wm (T1 1084 ms)', 'gm (T1 1820 ms)', 'csf (T1 4300 ms)']
    >>> pyplot().close(fig)
    """
    plt = pyplot()
    colors = colors or {"wm": "tab:blue", "gm": "tab:orange", "csf": "tab:cyan",
                        "fat": "tab:olive"}
    table = _field(field)
    t = np.linspace(0.0, t_max_ms, 501)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for name in tissues:
        tis = table[name]
        c = colors.get(name, "tab:gray")
        label = f"{name} (T1 {tis.t1_ms:.0f} ms)"
        ax1.plot(t, inversion_recovery_mz(tis.t1_ms, t), color=c, label=label)
        ax2.plot(t, inversion_recovery_mz(tis.t1_ms, t, tr_ms), color=c, label=label)
    for name in tissues:  # null points after the curves, so that lines[:n] are the curves
        tis = table[name]
        c = colors.get(name, "tab:gray")
        ax1.plot(null_inversion_time(tis.t1_ms), 0.0, "o", color=c, ms=5)
        ax2.plot(null_inversion_time(tis.t1_ms, tr_ms), 0.0, "o", color=c, ms=5)
    for ax in (ax1, ax2):
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.axvline(ti_ms, color="tab:red", ls="--", lw=1.2, label=f"TI = {ti_ms:g} ms")
        ax.set_xlabel("time after the inversion, TI (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    ax1.set(ylabel="Mz / M0", ylim=(-1.05, 1.05), title=f"inversion from full relaxation, {field}")
    ax2.set(title=f"inversions every TR = {tr_ms:g} ms, {field}")
    fig.tight_layout()
    return fig


@fill_doc
def tissue_table(field: str = "3T") -> pd.DataFrame:
    """:data:`TISSUES` at one field strength as a table.

    Parameters
    ----------
    %(field)s

    Returns
    -------
    pandas.DataFrame
        Index ``tissue`` (wm, gm, csf, fat); columns ``pd``, ``t1_ms``, ``t2_ms``.

    Examples
    --------
    >>> float(tissue_table("3T").loc["csf", "t1_ms"])
    4300.0
    """
    rows = {name: vars(t) for name, t in _field(field).items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("tissue")


@fill_doc
def tissue_signals(tr_ms, te_ms, *, ti_ms=None, field: str = "3T") -> dict[str, np.ndarray]:
    """Signal of every tissue of :data:`TISSUES` for given sequence timings.

    Parameters
    ----------
    tr_ms, te_ms : float or array_like
        Repetition and echo times, ms; arrays broadcast (e.g. a TR column against
        a TE row gives a TR x TE grid per tissue).
    ti_ms : float or array_like, optional
        Inversion time, ms: inversion recovery (FLAIR) instead of a spin echo.
    %(field)s

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


@fill_doc
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
    %(field)s

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


@fill_doc
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
    %(field)s

    Returns
    -------
    float
        TR*, ms (``inf`` if the difference has no interior extremum).

    Examples
    --------
    >>> round(best_tr("wm", "gm", 0.0, field="3T"))  # T1s of 1084 and 1820 ms
    1031
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

    Examples
    --------
    >>> maps = load_tissue_maps(scalp=False)
    >>> sorted(maps.fractions), maps.fractions["gm"].shape, maps.zooms
    (['csf', 'gm', 'wm'], (197, 233, 189), (1.0, 1.0, 1.0))
    >>> total = sum(maps.fractions.values())  # partial volumes: at most one tissue in all
    >>> bool(total.max() <= 1.0 + 1e-6)
    True
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


@fill_doc
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
    %(field)s

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

    Examples
    --------
    Three tissues mixed evenly on a 4x4x3 grid (chapter 2 paints a real slice):

    >>> fractions = {"wm": np.full((4, 4, 3), 0.5), "gm": np.full((4, 4, 3), 0.3),
    ...              "csf": np.full((4, 4, 3), 0.2)}
    >>> type(sequence_explorer(fractions, axial_slice=1)).__name__
    'VBox'
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
        label_orientation(ax1, "axial")
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
