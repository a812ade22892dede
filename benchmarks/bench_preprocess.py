"""Seconds and peak memory per subject for each preprocessing step, full size.

Each step runs in a fresh Python process (so one step's memory does not hide
another's), on synthetic heads on the NFBS grid (256x256x192, 1 mm). For every
step the table gives the median wall time over the subjects, and the peak
resident memory of the process: in total, and above what it held just before
the step (the step's own cost).

Run:  python benchmarks/bench_preprocess.py [--subjects 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ["synth", "load", "head_mask", "n4", "resample", "normalise", "preprocess_subject"]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def _reset_peak() -> float:
    """Reset the process's peak-memory mark (Linux); return the memory held now, MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset VmHWM, the peak resident set size, to the current one
    except OSError:
        pass  # not Linux, or not allowed: the peak then includes what came before
    return _status_mb("VmRSS") if os.path.exists("/proc/self/status") else 0.0


def _peak_mb() -> float:
    if os.path.exists("/proc/self/status"):
        return _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_step(step: str, seed: int, work: Path) -> dict:
    """Run one step for one subject in this process; return seconds and memory."""
    import nibabel as nib
    import numpy as np

    from skullstrip_lib import preprocess as pp
    from skullstrip_lib.io import load_scan
    from skullstrip_lib.synth import make_head, write_nfbs_dataset

    t1w = work / f"t1w_{seed}.nii.gz"
    mask = work / f"mask_{seed}.nii.gz"
    if step == "synth":
        make_head(seed=seed + 1000, index=0, shape=(64, 64, 48), voxel_size=(4, 4, 4))  # templates
        before = _reset_peak()
        start = time.perf_counter()
        write_nfbs_dataset(work / f"synth_{seed}", 1, seed=seed, progress=False)
        seconds = time.perf_counter() - start
        head = next((work / f"synth_{seed}" / "NFBS_Dataset").iterdir())
        for src, dst in (("T1w", t1w), ("T1w_brainmask", mask)):
            (head / f"sub-{head.name}_ses-NFB3_{src}.nii.gz").rename(dst)
        return {"seconds": seconds, "peak_mb": _peak_mb(), "step_mb": _peak_mb() - before}

    scan = load_scan(t1w) if step != "load" else None
    inputs: dict = {}
    if step in ("n4", "resample", "normalise"):
        inputs["head"] = pp.head_mask(scan.data, scan.zooms)
    if step in ("resample", "normalise"):
        inputs["grid"] = pp.fit_model_grid(scan.affine, scan.image.shape, inputs["head"])
        inputs["mask"] = np.asarray(nib.load(mask).dataobj, dtype=np.float32)
    if step == "normalise":
        inputs["image"] = pp.to_model_grid(scan.data, inputs["grid"])
        inputs["head_m"] = pp.to_model_grid(inputs["head"].astype(np.float32), inputs["grid"]) > .5

    before = _reset_peak()
    start = time.perf_counter()
    if step == "load":
        load_scan(t1w)
    elif step == "head_mask":
        pp.head_mask(scan.data, scan.zooms)
    elif step == "n4":
        pp.n4_correct(scan.data, scan.zooms, inputs["head"])
    elif step == "resample":
        # What one subject needs: image and mask onto the model grid, a map back.
        image = pp.to_model_grid(scan.data, inputs["grid"])
        fraction = pp.to_model_grid(inputs["mask"], inputs["grid"])
        pp.from_model_grid(fraction, inputs["grid"])
        del image
    elif step == "normalise":
        pp.normalize_intensity(inputs["image"], inputs["head_m"])
    elif step == "preprocess_subject":
        pp.preprocess_subject(f"s{seed}", t1w, work / "prep", mask)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": _peak_mb(), "step_mb": _peak_mb() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--_step", help=argparse.SUPPRESS)
    parser.add_argument("--_seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._step:  # child process: one step, result as JSON on stdout
        print(json.dumps(run_step(args._step, args._seed, Path(args._work))))
        return

    results: dict[str, list[dict]] = {s: [] for s in STEPS}
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.subjects):
            for step in STEPS:
                out = subprocess.run(
                    [sys.executable, __file__, "--_step", step, "--_seed", str(seed),
                     "--_work", work], capture_output=True, text=True, check=True)
                results[step].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"subject {seed} {step}: {results[step][-1]['seconds']:.2f} s",
                      file=sys.stderr)

    cpu = platform.processor() or platform.machine()
    print(f"\nMachine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
          f"{args.subjects} synthetic subjects of 256x256x192 at 1 mm; median per subject.\n")
    sep = "|" if args.markdown else " "
    header = ["step", "seconds", "peak RSS during step (MB)", "above the step's start (MB)"]
    rows = [[s, f"{statistics.median(r['seconds'] for r in results[s]):.2f}",
             f"{max(r['peak_mb'] for r in results[s]):.0f}",
             f"{max(r['step_mb'] for r in results[s]):.0f}"] for s in STEPS]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
        for row in [header, *rows]:
            print(sep.join(x.ljust(w) for x, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
