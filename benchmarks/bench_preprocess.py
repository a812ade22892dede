"""Seconds and peak memory per subject for each preprocessing step, full size.

Each step runs in a fresh Python process (so one step's memory does not hide
another's), on synthetic heads on the NFBS grid (256x256x192, 1 mm). For every
step the table gives the median wall time over the subjects, and the peak
resident memory of the process: in total, and above what it held just before
the step (the step's own cost).

``n4_old`` and ``preprocess_subject_old`` repeat those steps with the N4
settings used before (shrink 4, 4 levels of 50 iterations, the field evaluated
at every voxel) for comparison; ``benchmarks/bench_n4.py`` compares their
accuracy.

A second table (``--batch N``, default 6 subjects, 0 to skip) runs the whole
batch with :func:`skullstrip_lib.workflow.run_preprocessing`, in a fresh process
each time: ``Linear`` (one process) and ``MultiProc`` with one worker per core,
with the new and the old N4 settings. It gives the wall time of the batch, the
wall time per subject (batch / N: what sets the time for all of NFBS) and the
median seconds one subject takes inside its worker.

Run:  python benchmarks/bench_preprocess.py [--subjects 3] [--batch 6] [--repeats 2]
                                            [--markdown]
"""

from __future__ import annotations

import argparse
import datetime
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

from machine import cpu_model  # benchmarks/machine.py: run as a script, its folder is on the path
from table import print_table

STEPS = ["synth", "load", "head_mask", "n4", "n4_old", "resample", "normalise",
         "preprocess_subject", "preprocess_subject_old"]
OLD_N4 = {"shrink_factor": 4, "n_iterations": (50, 50, 50, 50), "full_resolution_field": True}
"""The N4 settings before ``bench_n4.py`` chose the new defaults."""
OLD_CONFIG = {"n4_shrink": 4, "n4_iterations": (50, 50, 50, 50)}
"""The same in :class:`~skullstrip_lib.preprocess.PreprocessConfig` (which always
interpolates the field from the fitting grid: a difference of 0.002 in log gain)."""


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
        cpu = time.process_time()
        write_nfbs_dataset(work / f"synth_{seed}", 1, seed=seed, progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        head = next((work / f"synth_{seed}" / "NFBS_Dataset").iterdir())
        for src, dst in (("T1w", t1w), ("T1w_brainmask", mask)):
            (head / f"sub-{head.name}_ses-NFB3_{src}.nii.gz").rename(dst)
        return {"seconds": seconds, "cpu": cpu, "peak_mb": _peak_mb(),
                "step_mb": _peak_mb() - before}

    scan = load_scan(t1w) if step != "load" else None
    inputs: dict = {}
    if step in ("n4", "n4_old", "resample", "normalise"):
        inputs["head"] = pp.head_mask(scan.data, scan.zooms)
    if step in ("resample", "normalise"):
        inputs["grid"] = pp.fit_model_grid(scan.affine, scan.image.shape, inputs["head"])
        inputs["mask"] = np.asarray(nib.load(mask).dataobj, dtype=np.float32)
    if step == "normalise":
        inputs["image"] = pp.to_model_grid(scan.data, inputs["grid"])
        inputs["head_m"] = pp.to_model_grid(inputs["head"].astype(np.float32), inputs["grid"]) > .5

    before = _reset_peak()
    start, cpu = time.perf_counter(), time.process_time()
    if step == "load":
        load_scan(t1w)
    elif step == "head_mask":
        pp.head_mask(scan.data, scan.zooms)
    elif step == "n4":
        pp.n4_correct(scan.data, scan.zooms, inputs["head"])
    elif step == "n4_old":
        pp.n4_correct(scan.data, scan.zooms, inputs["head"], **OLD_N4)
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
    elif step == "preprocess_subject_old":
        pp.preprocess_subject(f"s{seed}", t1w, work / "prep_old", mask,
                              pp.PreprocessConfig(**OLD_CONFIG))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "peak_mb": _peak_mb(),
            "step_mb": _peak_mb() - before}


def run_batch(work: Path, n: int, config: str, plugin: str, workers: int) -> dict:
    """Preprocess the ``n`` subjects under ``work/batch`` with one plugin; time it."""
    import shutil

    from skullstrip_lib import preprocess as pp
    from skullstrip_lib.datasets import index_dataset
    from skullstrip_lib.synth import write_nfbs_dataset
    from skullstrip_lib.workflow import run_preprocessing

    data = work / "batch"
    if config == "write":
        write_nfbs_dataset(data, n, seed=6200, progress=False)  # a seed used nowhere else
        return {}
    cfg = pp.PreprocessConfig(**(OLD_CONFIG if config == "old" else {}))
    out = work / f"batch_{config}_{plugin}"
    index = index_dataset(data / "NFBS_Dataset")
    start, cpu = time.perf_counter(), _cpu_all()
    report = run_preprocessing(index, out, cfg, plugin=plugin, workers=workers, progress=False)
    seconds, cpu = time.perf_counter() - start, _cpu_all() - cpu
    shutil.rmtree(out)
    assert (report["status"] == "done").all(), report
    return {"seconds": seconds, "cpu": cpu, "per_subject": statistics.median(report["seconds"])}


def _cpu_all() -> float:
    """CPU seconds of this process and of its finished children (MultiProc's workers)."""
    return sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3,
                        help="subjects for the step table (0: skip it)")
    parser.add_argument("--batch", type=int, default=6,
                        help="subjects for the batch table (0: skip it)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each batch (median)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--_step", help=argparse.SUPPRESS)
    parser.add_argument("--_seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_work", help=argparse.SUPPRESS)
    parser.add_argument("--_batch", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._step:  # child process: one step, result as JSON on stdout
        print(json.dumps(run_step(args._step, args._seed, Path(args._work))))
        return
    if args._batch:  # child process: one batch run
        config, plugin, workers = args._batch
        print(json.dumps(run_batch(Path(args._work), args.batch, config, plugin, int(workers))))
        return

    load_start = os.getloadavg()
    results: dict[str, list[dict]] = {s: [] for s in STEPS}
    batch: list[tuple[str, str, int, dict]] = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(args.subjects):
            for step in STEPS:
                results[step].append(_child("--_step", step, "--_seed", str(seed),
                                            "--_work", work))
                print(f"subject {seed} {step}: {results[step][-1]['seconds']:.2f} s",
                      file=sys.stderr)
        if args.batch:
            cores = os.cpu_count() or 1
            _child("--batch", str(args.batch), "--_batch", "write", "-", "0", "--_work", work)
            runs = [(c, p, w) for c in ("new", "old") for p, w in (("Linear", 1),
                                                                    ("MultiProc", cores))]
            done: dict = {r: [] for r in runs}
            for _ in range(args.repeats):  # interleaved, so a busy spell hits them all
                for config, plugin, workers in runs:
                    res = _child("--batch", str(args.batch), "--_batch", config, plugin,
                                 str(workers), "--_work", work)
                    done[config, plugin, workers].append(res)
                    print(f"batch {config} {plugin} x{workers}: {res['seconds']:.1f} s, "
                          f"CPU {res['cpu']:.1f} s", file=sys.stderr)
            batch = [(*r, {k: statistics.median(x[k] for x in done[r]) for k in done[r][0]})
                     for r in runs]
    load_end = os.getloadavg()

    print(f"\nCommand: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"Machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}; "
          f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end.")
    if args.subjects:
        print(f"{args.subjects} synthetic subjects of 256x256x192 at 1 mm; median per subject. "
              "CPU s counts every thread of the process (SimpleITK uses all cores).\n")
        header = ["step", "seconds", "CPU s", "peak RSS during step (MB)",
                  "above the step's start (MB)"]
        rows = [[s, f"{statistics.median(r['seconds'] for r in results[s]):.2f}",
                 f"{statistics.median(r['cpu'] for r in results[s]):.2f}",
                 f"{max(r['peak_mb'] for r in results[s]):.0f}",
                 f"{max(r['step_mb'] for r in results[s]):.0f}"] for s in STEPS]
        print_table(header, rows, args.markdown)
    if batch:
        print(f"\nThe whole batch, {args.batch} subjects, workflow.run_preprocessing, median "
              f"of {args.repeats} runs (new: the defaults; old: shrink 4, 4x50). CPU s/subject "
              "counts every process (the workers too): with the cores to itself, a batch "
              "takes about that times N / cores.\n")
        header = ["N4", "plugin", "workers", "batch (s)", "s/subject (batch / N)",
                  "s/subject in its worker (median)", "CPU s/subject", "125 subjects (min)"]
        rows = [[config, plugin, str(workers), f"{res['seconds']:.1f}",
                 f"{res['seconds'] / args.batch:.2f}", f"{res['per_subject']:.2f}",
                 f"{res['cpu'] / args.batch:.2f}",
                 f"{res['seconds'] / args.batch * 125 / 60:.1f}"]
                for config, plugin, workers, res in batch]
        print_table(header, rows, args.markdown)


if __name__ == "__main__":
    main()
