"""Tests of skullstrip_lib.mri: signal equations, tissue table, contrasts, rendered brains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skullstrip_lib.lessons import mri

# --------------------------------------------------------------------------- equations


def test_spin_echo_known_values():
    # Fully relaxed, no decay: the proton density itself.
    assert mri.spin_echo_signal(0.8, 1000.0, 80.0, np.inf, 0.0) == pytest.approx(0.8)
    # TR = T1 ln 2 recovers half the magnetisation; TE = T2 keeps 1/e of it.
    half = mri.spin_echo_signal(1.0, 1000.0, 80.0, 1000.0 * math.log(2), 0.0)
    assert half == pytest.approx(0.5)
    assert mri.spin_echo_signal(1.0, 1000.0, 80.0, np.inf, 80.0) == pytest.approx(math.exp(-1))
    # TR = 0: nothing has recovered.
    assert mri.spin_echo_signal(1.0, 1000.0, 80.0, 0.0, 10.0) == 0.0


def test_spin_echo_broadcasts_a_grid():
    tr = np.linspace(100, 5000, 7)[:, None]
    te = np.linspace(5, 150, 4)[None, :]
    s = mri.spin_echo_signal(0.7, 1100.0, 70.0, tr, te)
    assert s.shape == (7, 4)
    assert np.all(np.diff(s, axis=0) > 0)  # longer TR: more signal
    assert np.all(np.diff(s, axis=1) < 0)  # longer TE: less signal


def test_inversion_recovery_nulls_at_the_null_time():
    t1, tr = 4000.0, 9000.0
    ti = mri.null_inversion_time(t1, tr)
    assert ti == pytest.approx(t1 * math.log(2 / (1 + math.exp(-tr / t1))))
    nulled = mri.inversion_recovery_signal(1.0, t1, 2000.0, tr, 0.0, ti)
    assert nulled == pytest.approx(0, abs=1e-12)
    # No recovery time at all: the inverted magnetisation, full magnitude.
    assert mri.inversion_recovery_signal(0.9, t1, 2000.0, np.inf, 0.0, 0.0) == pytest.approx(0.9)
    assert mri.null_inversion_time(1000.0) == pytest.approx(1000.0 * math.log(2))


def test_inversion_recovery_mz_known_values():
    t1 = 1084.0
    # Just after the 180° pulse the magnetisation is inverted; it crosses zero at T1 ln 2
    # and tends to +1; one T1 after the inversion it is 1 - 2/e.
    assert mri.inversion_recovery_mz(t1, 0.0) == pytest.approx(-1.0)
    assert mri.inversion_recovery_mz(t1, t1 * math.log(2)) == pytest.approx(0.0, abs=1e-12)
    assert mri.inversion_recovery_mz(t1, t1) == pytest.approx(1 - 2 / math.e)
    assert mri.inversion_recovery_mz(t1, 1e7) == pytest.approx(1.0)
    # With inversions every TR, the null point is null_inversion_time(T1, TR).
    tr = 1900.0
    assert mri.inversion_recovery_mz(t1, mri.null_inversion_time(t1, tr), tr) == pytest.approx(
        0.0, abs=1e-12)
    # Its magnitude is the inversion-recovery signal with PD = 1 and no T2 decay.
    ti = np.array([100.0, 500.0, 900.0, 3000.0])
    assert np.allclose(np.abs(mri.inversion_recovery_mz(t1, ti, tr)),
                       mri.inversion_recovery_signal(1.0, t1, 50.0, tr, 0.0, ti))


def test_mprage_contrast_at_nfbs_settings():
    assert mri.NFBS_MPRAGE == {"tr_ms": 1900.0, "te_ms": 2.52, "ti_ms": 900.0, "flip_deg": 9.0}
    for field in mri.FIELD_STRENGTHS:
        s = mri.mprage_contrast(field)
        assert s["wm"] > s["gm"] > s["csf"]   # the T1-weighted order
        assert s["fat"] > s["wm"]             # fat bright
    # Known values at 3 T: PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| sin 9°.
    s = mri.mprage_contrast("3T")
    t = mri.TISSUES["3T"]["wm"]
    expected = t.pd * abs(1 - 2 * math.exp(-900 / t.t1_ms) + math.exp(-1900 / t.t1_ms))
    assert s["wm"] == pytest.approx(expected * math.sin(math.radians(9.0)))
    # CSF is read just after its null point: TI = 900 ms is close to T1 ln(2 / (1 + e^-TR/T1)).
    csf_null = mri.null_inversion_time(mri.TISSUES["3T"]["csf"].t1_ms, 1900.0)
    assert 800 < csf_null < 900
    # From full relaxation instead (simple IR), a magnitude image at TI = 900 ms would make
    # CSF the brightest of the three: the TR term is what makes MPRAGE T1-weighted.
    full = mri.mprage_contrast("3T", tr_ms=np.inf)
    assert full["csf"] > full["gm"] > full["wm"]


def test_inversion_recovery_curves_figure():
    fig = mri.inversion_recovery_curves("3T", ti_ms=900.0, tr_ms=1900.0)
    ax1, ax2 = fig.axes
    tissues = mri.TISSUES["3T"]
    for ax, tr in ((ax1, np.inf), (ax2, 1900.0)):
        curves = ax.lines[:3]
        assert [c.get_label().split()[0] for c in curves] == ["wm", "gm", "csf"]
        for line, name in zip(curves, ("wm", "gm", "csf"), strict=True):
            t, mz = line.get_data()
            assert np.allclose(mz, mri.inversion_recovery_mz(tissues[name].t1_ms, t, tr))
            # Each curve crosses zero at its null point, which is marked with a dot on the axis.
            null = mri.null_inversion_time(tissues[name].t1_ms, tr)
            assert t[np.argmin(np.abs(mz))] == pytest.approx(null, abs=t[1] - t[0])
        dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
        assert len(dots) == 3 and all(float(np.ravel(d.get_ydata())[0]) == 0.0 for d in dots)
        # TI is marked.
        ti_lines = [ln for ln in ax.lines if ln.get_label() == "TI = 900 ms"]
        assert len(ti_lines) == 1 and np.allclose(ti_lines[0].get_xdata(), 900.0)
    mri.pyplot().close(fig)


# --------------------------------------------------------------------------- tissues


def test_tissue_values_are_the_cited_ones():
    # Stanisz et al. 2005 (3 T), Rooney et al. 2007 (CSF T1): see mri.SOURCES.
    t = mri.TISSUES["3T"]
    assert (t["wm"].t1_ms, t["wm"].t2_ms) == (1084.0, 69.0)
    assert (t["gm"].t1_ms, t["gm"].t2_ms) == (1820.0, 99.0)
    assert t["csf"].t1_ms == 4300.0
    assert {"wm, gm", "csf T1", "csf T2", "fat"} == set(mri.SOURCES)
    assert all("doi:" in v for v in mri.SOURCES.values())


def test_tissue_table_matches_tissues():
    for field in mri.FIELD_STRENGTHS:
        table = mri.tissue_table(field)
        assert list(table.columns) == ["pd", "t1_ms", "t2_ms"]
        assert set(table.index) == {"wm", "gm", "csf", "fat"}
        for name, t in mri.TISSUES[field].items():
            assert table.loc[name, "t1_ms"] == t.t1_ms
    # T1 of tissue lengthens with the field (CSF's, nearly free water, does not measurably);
    # CSF has the longest T1 and T2, fat the shortest T1.
    for name in ("wm", "gm", "fat"):
        assert mri.TISSUES["3T"][name].t1_ms > mri.TISSUES["1.5T"][name].t1_ms
    assert mri.TISSUES["3T"]["csf"].t1_ms == mri.TISSUES["1.5T"]["csf"].t1_ms
    for field in mri.FIELD_STRENGTHS:
        t = mri.TISSUES[field]
        assert max(t, key=lambda k: t[k].t1_ms) == "csf"
        assert max(t, key=lambda k: t[k].t2_ms) == "csf"
        assert min(t, key=lambda k: t[k].t1_ms) == "fat"
    with pytest.raises(ValueError, match="field"):
        mri.tissue_table("7T")


@pytest.mark.parametrize("field", mri.FIELD_STRENGTHS)
def test_weightings_give_the_textbook_orderings(field):
    s = {k: mri.tissue_signals(field=field, **w) for k, w in mri.WEIGHTINGS.items()}
    t1w, t2w, pdw, flair = s["T1w"], s["T2w"], s["PDw"], s["FLAIR"]
    assert t1w["fat"] > t1w["wm"] > t1w["gm"] > t1w["csf"]
    assert t2w["csf"] > t2w["gm"] > t2w["wm"]
    assert pdw["csf"] > pdw["gm"] > pdw["wm"]
    # FLAIR: T2-like for the brain, CSF nulled.
    assert flair["gm"] > flair["wm"]
    assert flair["csf"] < 0.1 * flair["gm"]


def test_contrast_sign_and_antisymmetry():
    assert mri.contrast("wm", "gm", 500.0, 15.0) > 0
    assert mri.contrast("wm", "gm", 5000.0, 100.0) < 0
    tr = np.array([300.0, 800.0, 3000.0])
    assert np.allclose(mri.contrast("wm", "gm", tr, 20.0), -mri.contrast("gm", "wm", tr, 20.0))
    with pytest.raises(ValueError, match="unknown tissue"):
        mri.contrast("wm", "bone", 500.0, 15.0)


@pytest.mark.parametrize(("field", "te"), [("3T", 0.0), ("3T", 15.0), ("1.5T", 15.0)])
def test_best_tr_is_the_peak_of_the_difference(field, te):
    tr = np.arange(1.0, 6000.0, 0.5)
    diff = mri.contrast("wm", "gm", tr, te, field=field)
    numeric = tr[np.argmax(diff)]
    assert mri.best_tr("wm", "gm", te, field=field) == pytest.approx(numeric, abs=1.0)
    # The pair order does not matter.
    assert mri.best_tr("gm", "wm", te, field=field) == pytest.approx(
        mri.best_tr("wm", "gm", te, field=field))


def test_best_tr_without_interior_peak_is_inf():
    # At a long TE, CSF's slow recovery outweighs WM's head start: |S_wm - S_csf| only grows.
    assert mri.best_tr("wm", "csf", 100.0) == math.inf
    tr = np.linspace(10, 20000, 2000)
    assert np.all(np.diff(np.abs(mri.contrast("wm", "csf", tr, 100.0))) > 0)


# --------------------------------------------------------------------------- images


def test_paint_contrast_is_the_fraction_weighted_sum():
    f = {"wm": np.array([1.0, 0.0, 0.25, 0.0]), "gm": np.array([0.0, 1.0, 0.75, 0.0])}
    s = mri.tissue_signals(500.0, 15.0)
    img = mri.paint_contrast(f, 500.0, 15.0)
    assert img.dtype == np.float32
    assert np.allclose(img, [s["wm"], s["gm"], 0.25 * s["wm"] + 0.75 * s["gm"], 0.0])
    with pytest.raises(ValueError, match="unknown tissue"):
        mri.paint_contrast({"bone": np.ones(3)}, 500.0, 15.0)
    with pytest.raises(ValueError, match="no tissue"):
        mri.paint_contrast({}, 500.0, 15.0)


def test_load_tissue_maps_renders_the_contrasts():
    maps = mri.load_tissue_maps()
    f = maps.fractions
    assert set(f) == {"gm", "wm", "csf", "fat"}
    assert all(v.shape == (197, 233, 189) and v.dtype == np.float32 for v in f.values())
    total = f["gm"] + f["wm"] + f["csf"]
    assert total.max() <= 1.0 + 1e-6 and min(v.min() for v in f.values()) >= 0
    assert maps.zooms == (1.0, 1.0, 1.0)
    # The scalp lies outside the brain.
    assert not np.any((f["fat"] > 0) & (total > 0))
    brain_ml = float(total.sum()) / 1000.0
    assert 1000 < brain_ml < 2500
    wm = f["wm"] > 0.9
    gm = f["gm"] > 0.9
    t1w = mri.paint_contrast(f, **mri.WEIGHTINGS["T1w"])
    t2w = mri.paint_contrast(f, **mri.WEIGHTINGS["T2w"])
    assert t1w[wm].mean() > t1w[gm].mean()
    assert t2w[wm].mean() < t2w[gm].mean()


def test_display_range_spans_the_brain_tissues():
    # T1w spin echo at 3T: the window runs from half the darkest brain tissue (CSF)
    # to the brightest (WM); fat, brighter still, saturates.
    sig = mri.tissue_signals(500.0, 15.0, field="3T")
    w = mri.display_range(500.0, 15.0, field="3T")
    assert w["vmin"] == pytest.approx(0.5 * float(sig["csf"]))
    assert w["vmax"] == pytest.approx(float(sig["wm"]))
    assert float(sig["fat"]) > w["vmax"]


def test_sequence_explorer_repaints():
    shape = (8, 8, 3)
    fractions = {"wm": np.full(shape, 0.6), "gm": np.full(shape, 0.3),
                 "csf": np.full(shape, 0.1)}
    box = mri.sequence_explorer(fractions, axial_slice=1)
    view = box.children[-1]
    first = view.value
    assert first[:4] == b"\x89PNG"
    box.children[0].children[1].value = 200  # TE: T2 weighting
    assert view.value != first
