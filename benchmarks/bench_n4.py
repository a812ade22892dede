"""N4 settings: seconds per subject against accuracy on a known bias field, full size.

Each synthetic head (256x256x192 at 1 mm, ``make_head(seed=6006, index=i,
bias_strength=0)``: no bias field of its own) is multiplied by a known smooth
field (``lessons.bias.simulate_bias_field``, peak gain 1.2, 1.3 or 1.4, seed
``6100 + i``; seeds used nowhere else). For every setting,
:func:`skullstrip_lib.preprocess.n4_correct` corrects it inside the pipeline's
head mask and the table gives

* the median wall time and CPU time of the call, over heads and repeats;
* the correlation of the estimated log field with the true one in the brain
  (``lessons.bias.log_field_correlation``; 1 = the same shape), mean and worst;
* the white-matter coefficient of variation after correction
  (``lessons.bias.intensity_cv`` in the white stripe of the *clean* head,
  ``lessons.intensity.white_stripe_mask``), with the biased and the clean
  heads' values as the two ends of the scale, and the share of the spread the
  field added that is left, ``(after - clean) / (before - clean)`` (0: all
  removed, 1: none; comparable across grids, unlike the CV itself).

SimpleITK runs on one thread by default (``--threads``): the cost per core, as
when ``MultiProc`` runs one subject on each core. The "Gaussian 1 mm before"
row fits N4 on a smoothed copy and divides the original by its field. The
"model grid" row runs N4 on the image already resampled (anti-aliased) to the
2 mm model grid and scores it there; its WM CV is on that grid too.

Run:  python benchmarks/bench_n4.py [--heads 6] [--repeats 1] [--threads 1] [--only TEXT]
                                    [--markdown]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

from machine import cpu_model  # benchmarks/machine.py: run as a script, its folder is on the path
from table import print_table

SETTINGS = {
    "shrink 4, 4x50, field at full res (old default)":
        {"shrink_factor": 4, "n_iterations": (50,) * 4, "full_resolution_field": True},
    "shrink 4, 4x50": {"shrink_factor": 4, "n_iterations": (50,) * 4},
    "shrink 4, 4x20": {"shrink_factor": 4, "n_iterations": (20,) * 4},
    "shrink 6, 4x50": {"shrink_factor": 6, "n_iterations": (50,) * 4},
    "shrink 8, 4x50": {"shrink_factor": 8, "n_iterations": (50,) * 4},
    "shrink 4, 3x50": {"shrink_factor": 4, "n_iterations": (50,) * 3},
    "shrink 6, 3x50": {"shrink_factor": 6, "n_iterations": (50,) * 3},
    "default: shrunk to 8 mm (8), 3x50": {},
    "shrink 8, 3x50, field at full res":
        {"shrink_factor": 8, "n_iterations": (50,) * 3, "full_resolution_field": True},
    "shrink 8, 3x50, convergence 1e-4":
        {"shrink_factor": 8, "n_iterations": (50,) * 3, "convergence_threshold": 1e-4},
    "shrink 8, 3x25": {"shrink_factor": 8, "n_iterations": (25,) * 3},
    "shrink 8, 2x50": {"shrink_factor": 8, "n_iterations": (50,) * 2},
    "shrink 10, 3x50": {"shrink_factor": 10, "n_iterations": (50,) * 3},
    "shrink 8, 3x50, Gaussian 1 mm before": {"presmooth_mm": 1.0},
    "model grid (2 mm), shrink 4, 3x50": {"shrink_factor": 4, "model_grid": True},
}
STRENGTHS = (0.2, 0.3, 0.4)


def make_cases(n_heads: int) -> list[dict]:
    """Clean heads times known fields, with the masks each score needs."""
    import numpy as np

    from skullstrip_lib import preprocess as pp
    from skullstrip_lib.lessons.bias import simulate_bias_field
    from skullstrip_lib.lessons.intensity import white_stripe_mask
    from skullstrip_lib.synth import make_head

    cases = []
    for i in range(n_heads):
        head = make_head(seed=6006, index=i, bias_strength=0.0)
        clean = np.asarray(head.t1w.dataobj, dtype=np.float32)
        brain = np.asarray(head.brainmask.dataobj) > 0
        field = simulate_bias_field(clean.shape, strength=STRENGTHS[i % 3], seed=6100 + i,
                                    mask=brain)
        biased = np.rint(clean * field)  # a scanner writes integers
        zooms = tuple(float(z) for z in head.t1w.header.get_zooms()[:3])
        cases.append({"clean": clean, "brain": brain, "field": field, "biased": biased,
                      "zooms": zooms, "affine": head.t1w.affine,
                      "head": pp.head_mask(biased, zooms),
                      "white": white_stripe_mask(clean, brain)})
        print(f"head {i} ready", file=sys.stderr, flush=True)
    return cases


def _on_model_grid(case: dict) -> dict:
    """The case resampled to the model grid, as ``prepare_input`` places it."""
    from skullstrip_lib import preprocess as pp

    if "grid_case" not in case:
        grid = pp.fit_model_grid(case["affine"], case["biased"].shape, case["head"])
        on = lambda a: pp.to_model_grid(a.astype("float32"), grid)  # noqa: E731
        case["grid_case"] = {
            "biased": on(case["biased"]), "clean": on(case["clean"]), "field": on(case["field"]),
            "brain": on(case["brain"]) >= 0.5, "white": on(case["white"]) >= 0.5,
            "head": pp.to_model_grid(case["head"].astype("float32"), grid,
                                     antialias=False) >= 0.5,
            "zooms": grid.spacing,
        }
    return case["grid_case"]


def run_setting(case: dict, kwargs: dict) -> dict:
    """Correct one case with one setting: seconds and scores."""
    from skullstrip_lib import preprocess as pp
    from skullstrip_lib.lessons.bias import intensity_cv, log_field_correlation

    kwargs = dict(kwargs)
    if kwargs.pop("model_grid", False):
        case = _on_model_grid(case)
    sigma = kwargs.pop("presmooth_mm", 0.0)
    start, cpu = time.perf_counter(), time.process_time()
    if sigma:  # fit on a smoothed copy, divide the original
        from scipy import ndimage

        smooth = ndimage.gaussian_filter(case["biased"].astype("float32"),
                                         [sigma / z for z in case["zooms"]])
        _, estimate = pp.n4_correct(smooth, case["zooms"], case["head"], **kwargs)
        corrected = case["biased"] / estimate
    else:
        corrected, estimate = pp.n4_correct(case["biased"], case["zooms"], case["head"],
                                            **kwargs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    before, floor = (intensity_cv(case[k], case["white"]) for k in ("biased", "clean"))
    wm_cv = intensity_cv(corrected, case["white"])
    return {"seconds": seconds, "cpu": cpu,
            "r": log_field_correlation(estimate, case["field"], case["brain"]),
            "wm_cv": wm_cv, "left": (wm_cv - floor) / (before - floor)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per head and setting")
    parser.add_argument("--threads", type=int, default=1, help="SimpleITK threads (default 1)")
    parser.add_argument("--only", action="append", metavar="TEXT",
                        help="only the settings whose name contains TEXT (repeatable)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    settings = {k: v for k, v in SETTINGS.items()
                if not args.only or any(t in k for t in args.only)}

    import SimpleITK as sitk

    from skullstrip_lib.lessons.bias import intensity_cv

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    load_start = os.getloadavg()
    cases = make_cases(args.heads)
    results = {}
    for name, kwargs in settings.items():
        runs = [[run_setting(c, kwargs) for _ in range(args.repeats)] for c in cases]
        results[name] = runs
        flat = [r for rs in runs for r in rs]
        print(f"{name}: {statistics.median(r['seconds'] for r in flat):.2f} s, "
              f"r = {statistics.mean(rs[0]['r'] for rs in runs):.4f}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()

    print(f"\nCommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"Machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
          f"SimpleITK {sitk.Version.VersionString()} on {args.threads} thread(s); "
          f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end.")
    print(f"{args.heads} synthetic heads of 256x256x192 at 1 mm x {args.repeats} timed run(s); "
          "times are medians, scores the mean (and worst) over heads.\n")
    header = ["setting", "s/subject", "CPU s", "field r mean", "field r min", "WM CV",
              "WM spread left"]
    rows = []
    for name, runs in results.items():
        flat = [r for rs in runs for r in rs]
        rs = [r[0]["r"] for r in runs]
        rows.append([name, f"{statistics.median(r['seconds'] for r in flat):.2f}",
                     f"{statistics.median(r['cpu'] for r in flat):.2f}",
                     f"{statistics.mean(rs):.4f}", f"{min(rs):.4f}",
                     f"{statistics.mean(r[0]['wm_cv'] for r in runs):.4f}",
                     f"{statistics.mean(r[0]['left'] for r in runs):.2f}"])
    for name, key, left in (("no correction", "biased", "1"), ("clean head", "clean", "0")):
        cv = statistics.mean(intensity_cv(c[key], c["white"]) for c in cases)
        rows.append([name, "", "", "", "", f"{cv:.4f}", left])
    print_table(header, rows, args.markdown)


if __name__ == "__main__":
    main()
