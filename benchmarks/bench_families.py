"""Held-out synthetic families: how a model does on heads unlike its training set.

The bundled model is trained on synthetic heads (``skullstrip_lib.train``: the
groups of its profile, ``DOMAIN_SYNTH`` for ``default``, seeds ``synth_seed``
100 plus the group number) and scored on held-out heads of the same groups
(``skullstrip evaluate --split test``). That test split is the training
distribution. This benchmark is the other measure, the one the bundled model
is chosen by and the README reports: :data:`FAMILIES` are heads made with
settings no training group uses and seeds never used elsewhere (7000 upwards;
the book uses 0-20, the tests a few small ones, ``bench_n4`` 6006 and 6100+).
Some lie beyond what training draws (head size, tilt, atrophy, bias and noise,
thick slices, an intensity offset, cut fields of view), some near a training
group with other settings (clinical 1.5 mm, mixed contrast, T2), and one,
``control``, inside it, as the reference the others are read against.

For each head the T1w is written as a NIfTI file into a temporary folder,
exactly as a user's scan would arrive, and goes through the real prediction
path (:func:`skullstrip_lib.io.load_scan` and
:func:`skullstrip_lib.inference.predict_mask`, what ``skullstrip predict`` and
:func:`skullstrip_lib.inference.strip` run). The mask is scored on the scan's
own voxel grid against the head's exact synthetic mask: Dice, HD95 (mm, with
the voxel spacing) and the signed volume error (mL). The first head of each
family is also stripped once by a fresh ``skullstrip predict`` process (what a
user waits for, imports and model loading included), unless ``--no-cli``.

The skull-base families (``skull_base_thin``, ``nonbrain_brainlike``,
``bias_strong_base``, ``tight_fov_neck_1.5mm``) are built to fail the way real
heads do (issue 20): the mask leaking through a 1-2 mm skull base into the
fossae, orbits and neck. Each head is also scored in thirds of the true brain's
height (:func:`skullstrip_lib.metrics.dice_by_height`), with the share of the
false positives in the lowest third and the network's mean probability on them.

A calibration table gives each family's Dice at thresholds 0.3-0.6, from the
same probability maps. It is for reporting only: the threshold is a property
of the model (``threshold`` in its ``model.json``, set on its own validation
heads by :func:`skullstrip_lib.evaluate.calibrate_threshold`);
setting it on this benchmark would tune the model to the benchmark, which
would then no longer be held out.

Finally chapter 10's drift sweep
(:func:`skullstrip_lib.lessons.drift.drift_sweep`, one change at a time from a
T1 head on the NFBS grid) runs with the same model on ``--drift-heads`` held-out
heads (seed 7100).

Families whose settings the installed :func:`skullstrip_lib.synth.make_head`
does not have yet (an argument missing from its signature, or a contrast not
in ``synth.CONTRASTS``) are listed as skipped rather than failing the run.

Run:  python benchmarks/bench_families.py [--model default] [--heads 3] [--families a b]
                                          [--drift-heads 1] [--no-cli] [--markdown] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- the families

def _training_range(name: str, unit: str = "") -> str:
    # The ranges make_head draws from when an argument is not given, read from synth
    # itself so that the descriptions follow the generator (or say "?" if it has none).
    from skullstrip_lib import synth

    lo, hi = getattr(synth, name, ("?", "?"))
    return f"{lo:g} to {hi:g}{unit}" if not isinstance(lo, str) else "?"


# The training distribution's mid-range values, pinned (a head's bias peak is drawn in
# 0.1-0.4, noise in 1-4 % of WM, blur in 0-0.6 mm): the control stays in distribution
# while no training group's arguments equal its own, and the offset family differs from
# it only in the offset.
_TYPICAL = {"bias_strength": 0.25, "noise_level": 0.025, "blur_mm": 0.3}

FAMILIES: dict[str, dict[str, Any]] = {
    "control": {
        "seed": 7000, "kwargs": dict(_TYPICAL),
        "about": "in distribution: MPRAGE-like T1, NFBS grid 256x256x192 at 1 mm, RAS"},
    "clinical_las_1.5mm": {
        "seed": 7001,
        "kwargs": {"shape": (116, 136, 128), "voxel_size": (1.5, 1.5, 1.5),
                   "orientation": "LAS", "center_mm": (0.0, -20.0, -4.0)},
        "about": "T1, 1.5 mm, LAS, a tight field of view around the head (174x204x192 mm)"},
    "thick_slices": {
        "seed": 7002,
        "kwargs": {"shape": (256, 256, 48), "voxel_size": (1.0, 1.0, 4.0), "slice_mm": 6.0},
        "about": "T1, 1x1x4 mm voxels of 6 mm thick axial slices (the through-plane blur)"},
    "grid_0.8mm": {
        "seed": 7003,
        "kwargs": {"shape": (300, 300, 220), "voxel_size": (0.8, 0.8, 0.8),
                   "center_mm": (0.0, -18.0, -4.0)},
        "about": "T1, a big grid: 300x300x220 at 0.8 mm"},
    "t2_1.2mm": {
        "seed": 7004,
        "kwargs": {"contrast": "t2", "shape": (200, 200, 160), "voxel_size": (1.2, 1.2, 1.2)},
        "about": "T2-like contrast (fluid bright) at 1.2 mm"},
    "mixed_contrast": {
        "seed": 7005, "kwargs": {"contrast": "mixed"},
        "about": "an independent random intensity per tissue class, defaced, NFBS grid"},
    "small_heads": {
        "seed": 7006, "kwargs": {"scale": 0.80},
        "about": f"head and brain 0.80 x MNI152 (training draws {_training_range('SCALE_RANGE')})"},
    "large_heads": {
        "seed": 7007,
        "kwargs": {"scale": 1.10, "shape": (256, 256, 224), "center_mm": (0.0, -18.0, 0.0)},
        "about": f"1.10 x MNI152 (training {_training_range('SCALE_RANGE')}), on a taller "
                 "grid (256x256x224) so that the head fits"},
    "tilt_28deg": {
        "seed": 7008, "kwargs": {"pitch_deg": 28.0},
        "about": "head pitched 28° about the left-right axis (training draws "
                 f"{_training_range('PITCH_RANGE_DEG', '°')})"},
    "atrophy": {
        "seed": 7009, "kwargs": {"atrophy": 0.9},
        "about": "atrophy 0.9: wide sulci and ventricles (training draws "
                 f"{_training_range('ATROPHY_RANGE')})"},
    "bias_noise": {
        "seed": 7010, "kwargs": {"bias_strength": 0.8, "noise_level": 0.06},
        "about": "bias peak gain 1.8 and Rician noise 6 % of WM (training: 1.1-1.4, 1-4 %)"},
    "oblique_25deg_lps": {
        "seed": 7011,
        "kwargs": {"orientation": "LPS", "oblique_deg": (25.0, 0.0, 0.0),
                   "shape": (256, 256, 220)},
        "about": "T1, LPS voxel order, grid tilted 25° about x (AC-PC-like), 256x256x220"},
    "fov_cut_top": {
        "seed": 7012,
        "kwargs": {"shape": (256, 256, 160), "center_mm": (0.0, -18.0, -28.0)},
        "about": "T1, 160 mm field of view ending ~20 mm below the top of the brain"},
    "fov_cut_cerebellum": {
        "seed": 7013,
        "kwargs": {"shape": (256, 256, 160), "center_mm": (0.0, -18.0, 36.0)},
        "about": "T1, 160 mm field of view from z = -44 mm: lower cerebellum and stem cut"},
    "offset_minus_1000": {
        "seed": 7014, "kwargs": dict(_TYPICAL), "offset": -1000.0,
        "about": "the control's kind of scan saved minus 1000, float32 (background -1000)"},
    # Built to fail the way real heads do (issue 20): the skull base as it is, not a
    # thick dark ring; non-brain tissue of brain-like intensity; a strong, dense bias
    # field; a tight field of view with the neck and the face.
    "skull_base_thin": {
        "seed": 7015, "kwargs": {**_TYPICAL, "skull_base": "thin", "warp_mm": 6.0},
        "about": "T1, NFBS grid, the skull base at its thinnest (~0.5 mm floors under the "
                 "temporal lobes, orbital roofs and posterior fossa, the cavity hugging the "
                 "brain) with 35 mm of muscle and fat as grey and as bright as the head's own "
                 "grey and white matter under it, air cells, clivus, petrous bone, dural "
                 "folds; anatomy 6 mm away from MNI152 (training: 1-2.5)"},
    "nonbrain_brainlike": {
        "seed": 7016,
        "kwargs": {**_TYPICAL, "skull_base": "realistic", "nonbrain_labels": 6,
                   "warp_mm": 6.0},
        "about": "a realistic skull base, the soft tissue outside the skull split into 6 random "
                 "classes whose intensities overlap the brain's (SynthStrip-style labels), "
                 "anatomy 6 mm away from MNI152"},
    "bias_strong_base": {
        "seed": 7017,
        "kwargs": {"skull_base": "thin", "warp_mm": 6.0, "bias_strength": 0.6,
                   "bias_knots": 8, "noise_level": 0.025, "blur_mm": 0.3},
        "about": "as skull_base_thin with a bias field of peak gain 1.6 varying over ~7 cm "
                 "(training: 1.1-1.4 over ~12 cm)"},
    "tight_fov_neck_1.5mm": {
        "seed": 7018,
        "kwargs": {"skull_base": "thin", "warp_mm": 6.0, "shape": (116, 140, 128),
                   "voxel_size": (1.5, 1.5, 1.5), "orientation": "LAS",
                   "center_mm": (0.0, -20.0, -15.0), "deface": False,
                   "bias_strength": 0.35, "bias_knots": 7, "blur_mm": 0.6},
        "about": "as skull_base_thin at 1.5 mm LAS, a tight 174x210x192 mm field of view "
                 "from the top of the head into the neck, face kept, bias gain 1.35"},
}
"""Held-out families: name -> ``seed``, ``kwargs`` (:func:`~skullstrip_lib.synth.make_head`
arguments), ``about`` (one line) and optionally ``offset`` (added to the saved scan,
which is then float32). Head ``i`` of a family is ``make_head(seed, i, **kwargs)``."""

THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
"""Thresholds of the calibration table (reporting only, never used to set the model's)."""

DRIFT_SEED = 7100
"""Seed of the drift sweep's heads (held out like the families')."""


# --------------------------------------------------------------------------- helpers


def missing_setting(kwargs: dict[str, Any]) -> str | None:
    """Why the installed ``make_head`` cannot make a family yet, or None if it can.

    Parameters
    ----------
    kwargs : dict
        :func:`~skullstrip_lib.synth.make_head` keyword arguments.

    Returns
    -------
    str or None
        E.g. ``"make_head has no 'scale'"``; None when every argument (and the
        contrast) is supported.
    """
    from skullstrip_lib import synth

    # The flat arguments make_head takes: its settings' fields, or (an older synth) its
    # own keyword parameters.
    params = getattr(synth, "HEAD_ARGUMENTS", None) or inspect.signature(synth.make_head).parameters
    for key in kwargs:
        if key not in params:
            return f"make_head has no {key!r}"
    anatomy = kwargs.get("skull_base")
    if anatomy is not None and anatomy not in getattr(synth, "SKULL_BASES", ()):
        return f"make_head has no skull_base {anatomy!r}"
    contrast = kwargs.get("contrast")
    if contrast is not None and contrast not in synth.CONTRASTS:
        return f"make_head has no contrast {contrast!r}"
    return None


def score_mask(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
               affine: np.ndarray | None = None) -> dict[str, float]:
    """Dice, HD95 (mm), signed volume error (mL) and Dice by height of a mask against the truth.

    Parameters
    ----------
    pred, truth : numpy.ndarray of bool
        Masks on the same voxel grid (the scan's own, in its file's voxel order).
    spacing : sequence of 3 float
        Voxel size in mm along the three axes of that grid.
    affine : (4, 4) numpy.ndarray or None
        That grid's voxel-to-world affine, which says where "up" is (None: the
        third voxel axis).

    Returns
    -------
    dict
        ``dice``, ``hd95_mm`` (``inf`` if exactly one mask is empty),
        ``volume_err_ml`` (positive: the prediction is too large), ``dice_low``,
        ``dice_mid``, ``dice_top`` (Dice in the lowest, middle and highest third
        of the true brain's height, :func:`skullstrip_lib.metrics.dice_by_height`)
        and ``fp_low_share`` (the share of the false-positive voxels that lie in
        the lowest third or below; NaN without false positives).
    """
    from skullstrip_lib.metrics import dice, dice_by_height, hausdorff95, volume_difference

    low, mid, top = dice_by_height(pred, truth, affine, parts=3)
    fp = pred & ~truth
    return {"dice": dice(pred, truth), "hd95_mm": hausdorff95(pred, truth, spacing),
            "volume_err_ml": volume_difference(pred, truth, spacing),
            "dice_low": low, "dice_mid": mid, "dice_top": top,
            "fp_low_share": (float((fp & lowest_third(truth, affine)).sum() / fp.sum())
                             if fp.any() else float("nan"))}


def lowest_third(truth: np.ndarray, affine: np.ndarray | None = None) -> np.ndarray:
    """Voxels in the lowest third of the true mask's world height or below it (the slab
    :func:`~skullstrip_lib.metrics.dice_by_height` scores first)."""
    from skullstrip_lib.metrics import height_slabs

    if not truth.any():
        return np.zeros(truth.shape, bool)
    return height_slabs(truth, affine) == 0


def _model_path(model: str) -> str:
    # A training run folder holds its exported model in export/: accept the run too.
    path = Path(model)
    if path.is_dir() and not (path / "model.onnx").is_file() and (path / "export").is_dir():
        return str(path / "export")
    return model


def _model_label(model) -> str:
    """Name, training profile and a short hash of the network file (which model exactly)."""
    from skullstrip_lib.inference import bundled_models

    folder = bundled_models().get(model.name, Path(model.name))
    weights = folder / "model.onnx" if folder.is_dir() else folder
    digest = (hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights.is_file()
              else "?")
    training = model.meta.get("training", {})
    best = training.get("best_epoch", {})
    parts = [f"{model.name} ({weights.name} sha256 {digest})",
             f"profile {training.get('profile', '?')}", f"threshold {model.threshold:g}"]
    if "val_dice" in best:
        parts.append(f"validation Dice {best['val_dice']:.3f} at epoch {best.get('epoch', 0):.0f}")
    return ", ".join(parts)


def _save_scan(head, path: Path, offset: float) -> None:
    """Write a head's T1w as a user's file: int16 as made, or float32 with an offset."""
    import nibabel as nib

    if not offset:
        nib.save(head.t1w, path)
        return
    data = np.asarray(head.t1w.dataobj, dtype=np.float32) + np.float32(offset)
    img = nib.Nifti1Image(data, head.t1w.affine, head.t1w.header)
    img.header.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, path)


def run_head(name: str, index: int, model, work: Path) -> dict[str, Any]:
    """Make head ``index`` of a family, strip it as a user's file and score it.

    Returns
    -------
    dict
        :func:`score_mask`'s scores, ``seconds`` (reading the file, the
        prediction and its clean-up), ``calibration`` (Dice per threshold of
        :data:`THRESHOLDS`), and the paths ``scan`` and ``mask`` (the
        in-process mask, in the file's voxel order, as uint8 NIfTI).
    """
    import nibabel as nib

    from skullstrip_lib.inference import postprocess_mask, predict_mask
    from skullstrip_lib.io import load_scan
    from skullstrip_lib.metrics import dice
    from skullstrip_lib.preprocess import from_model_grid
    from skullstrip_lib.synth import make_head

    family = FAMILIES[name]
    head = make_head(family["seed"], index, **family["kwargs"])
    scan_path = work / f"{family['seed']}-{index}_T1w.nii.gz"
    _save_scan(head, scan_path, family.get("offset", 0.0))
    truth = np.asarray(head.brainmask.dataobj) > 0  # the file's voxel order
    spacing = tuple(float(z) for z in head.brainmask.header.get_zooms()[:3])
    affine = head.brainmask.affine
    del head

    start = time.perf_counter()
    scan = load_scan(scan_path)
    result = predict_mask(scan, model, return_prob=True)
    mask, probability, grid = result.mask, result.probability, result.grid
    seconds = time.perf_counter() - start
    pred = scan.to_original(mask)  # back to the file's voxel order: exact, no interpolation
    out = {**score_mask(pred, truth, spacing, affine), "seconds": seconds}

    # Calibration from the same probability map: resample once with the lowest threshold
    # as support (above it the values are the same as probability_to_mask computes).
    native = from_model_grid(probability, grid, order=1, support=min(THRESHOLDS))
    # How sure the network was where it leaked low: the mean probability of the false
    # positives in the lowest third (a threshold or a clean-up cannot remove confident ones).
    fp_low = pred & ~truth & lowest_third(truth, affine)
    out["fp_low_prob"] = (float(scan.to_original(native)[fp_low].mean()) if fp_low.any()
                          else float("nan"))
    out["calibration"] = {t: dice(scan.to_original(postprocess_mask(native >= t)), truth)
                          for t in THRESHOLDS}
    mask_path = work / f"{family['seed']}-{index}_inprocess_mask.nii.gz"
    nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), mask_path)
    out.update(scan=scan_path, mask=mask_path)
    return out


def run_cli(scan: Path, model: str, reference: Path, work: Path) -> str:
    """Time a fresh ``skullstrip predict`` process on a scan and check its mask.

    Returns
    -------
    str
        Its wall seconds; with the Dice of its mask against the in-process one
        (``reference``) when they differ, or why the command failed (the run goes
        on: one failed command should not lose the other families' scores).
    """
    import nibabel as nib

    from skullstrip_lib.inference import scan_name
    from skullstrip_lib.metrics import dice

    exe = Path(sys.executable).with_name("skullstrip")
    out = work / f"cli-{scan_name(scan)}"
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "predict", str(scan), "-o", str(out), "--model", model,
                           "-q", "--overwrite"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"skullstrip predict {scan.name} failed: {proc.stderr}", file=sys.stderr)
        return f"failed ({last[:80]})"
    cli_mask = np.asarray(nib.load(out / f"{scan_name(scan)}_brainmask.nii.gz").dataobj) > 0
    agree = dice(cli_mask, np.asarray(nib.load(reference).dataobj) > 0)
    # A CLI mask that differs from the in-process one is flagged, not hidden.
    return f"{seconds:.2f}" + ("" if agree == 1.0 else f" (Dice {agree:.4f} with in-process)")


# --------------------------------------------------------------------------- tables


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True))
            for r in [header, *rows]]


def _f(value: float, digits: int) -> str:
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


def summary_row(label: str, heads: list[dict], cli: str = "") -> list[str]:
    """One table row: n, Dice mean/min, HD95 mean/max, volume error mean, seconds per head."""
    d = [h["dice"] for h in heads]
    hd = [h["hd95_mm"] for h in heads]
    return [label, str(len(heads)), f"{statistics.mean(d):.4f}", f"{min(d):.4f}",
            f"{statistics.mean(h['dice_low'] for h in heads):.3f}",
            f"{statistics.mean(h['dice_mid'] for h in heads):.3f}",
            f"{statistics.mean(h['dice_top'] for h in heads):.3f}",
            _nanmean([h["fp_low_share"] for h in heads], 2),
            _nanmean([h.get("fp_low_prob", float("nan")) for h in heads], 2),
            _f(statistics.mean(hd), 2), _f(max(hd), 2),
            f"{statistics.mean(h['volume_err_ml'] for h in heads):+.1f}",
            f"{statistics.mean(h['seconds'] for h in heads):.2f}", cli]


def _nanmean(values: Sequence[float], digits: int) -> str:
    kept = [v for v in values if v == v]
    return f"{statistics.mean(kept):.{digits}f}" if kept else "-"


def drift_table(model, n_heads: int, data_dir: Path, markdown: bool) -> list[str]:
    """Chapter 10's drift sweep on held-out heads: mean scores per condition."""
    from skullstrip_lib.lessons.drift import drift_sweep

    scores = drift_sweep(model, n_heads=n_heads, seed=DRIFT_SEED, data_dir=data_dir)
    rows = []
    for condition, group in scores.groupby("condition", sort=False):
        rows.append([condition, str(len(group)), f"{group['dice'].mean():.4f}",
                     _f(float(group["hd95_mm"].mean()), 2),
                     f"{group['volume_diff_ml'].mean():+.1f}"])
    return _table(["condition", "n", "Dice", "HD95 mm", "volume error mL"], rows, markdown)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark (see the module docstring) and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="families: " + ", ".join(FAMILIES))
    parser.add_argument("--model", default="default",
                        help="bundled name, model folder, or training run (its export/)")
    parser.add_argument("--heads", type=int, default=3, help="heads per family")
    parser.add_argument("--families", nargs="+", metavar="NAME", choices=list(FAMILIES),
                        help="a subset of the families (default: all)")
    parser.add_argument("--drift-heads", type=int, default=1,
                        help="heads per condition of the drift sweep (0: no sweep)")
    parser.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True,
                        help="time one fresh `skullstrip predict` process per family")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    if args.heads < 1:
        parser.error("--heads must be at least 1")

    from tqdm.auto import tqdm

    from skullstrip_lib.inference import load_model

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
    from machine import cpu_model

    model_arg = _model_path(args.model)
    model = load_model(model_arg)
    names = args.families or list(FAMILIES)
    skipped = {n: why for n in names if (why := missing_setting(FAMILIES[n]["kwargs"]))}
    todo = [n for n in names if n not in skipped]
    load_start = os.getloadavg()[0]

    results: dict[str, list[dict]] = {}
    cli: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench_families-") as tmp:
        work = Path(tmp)
        bar = tqdm(total=len(todo) * args.heads, desc="families", unit="head")
        for name in todo:
            bar.set_postfix_str(name)
            results[name] = []
            for i in range(args.heads):
                results[name].append(run_head(name, i, model, work))
                bar.update()
            if args.cli:
                first = results[name][0]
                cli[name] = run_cli(first["scan"], model_arg, first["mask"], work)
        bar.close()
        drift = (drift_table(model, args.drift_heads, work / "drift", args.markdown)
                 if args.drift_heads > 0 else [])
    load_end = os.getloadavg()[0]

    lines = [
        f"Command: {shlex.join([os.path.basename(sys.executable), *sys.argv])}",
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"Machine: {os.cpu_count()} cores ({cpu_model()}), Python "
        f"{platform.python_version()}; load average {load_start:.1f} at the start, "
        f"{load_end:.1f} at the end",
        f"Model: {_model_label(model)}",
        f"{args.heads} head(s) per family, scored in each scan's native space against its "
        "exact synthetic mask; Dice low/mid/top 1/3: Dice in the lowest, middle and highest "
        "third of the true brain's height (the lowest also takes all below it); FP share "
        "low: the share of false-positive voxels in the lowest third or below; FP prob "
        "low: the network's mean probability on those voxels; s/head: reading the file, "
        "predicting and cleaning the mask in-process; CLI s: one fresh `skullstrip "
        "predict` process (imports, model, both files written).",
        "",
    ]
    header = ["family", "n", "Dice mean", "Dice min", "Dice low 1/3", "Dice mid 1/3",
              "Dice top 1/3", "FP share low", "FP prob low", "HD95 mean (mm)",
              "HD95 max (mm)", "vol err mean (mL)", "s/head", "CLI s"]
    rows = [summary_row(n, results[n], cli.get(n, "")) for n in todo]
    rows += [[n, "0", f"skipped: {why}", *[""] * 11] for n, why in skipped.items()]
    if results:
        rows.append(summary_row("overall", [h for n in todo for h in results[n]]))
    lines += _table(header, rows, args.markdown)

    lines += ["", "Families:"]
    lines += [f"- {n} (seed {FAMILIES[n]['seed']}): {FAMILIES[n]['about']}" for n in names]

    if results:
        lines += ["", f"Calibration, for reporting only (never used to set the threshold; "
                      f"the model's is {model.threshold:g}): mean Dice per threshold", ""]
        cal_rows = [[n, *(f"{statistics.mean(h['calibration'][t] for h in results[n]):.4f}"
                          for t in THRESHOLDS)] for n in todo]
        every = [h for n in todo for h in results[n]]
        cal_rows.append(["overall", *(f"{statistics.mean(h['calibration'][t] for h in every):.4f}"
                                      for t in THRESHOLDS)])
        lines += _table(["family", *(f"t={t:g}" for t in THRESHOLDS)], cal_rows, args.markdown)
    if drift:
        lines += ["", f"Drift sweep (chapter 10, lessons.drift.drift_sweep), "
                      f"{args.drift_heads} head(s) of seed {DRIFT_SEED} per condition:", ""]
        lines += drift

    text = "\n".join(lines) + "\n"
    print("\n" + text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
