"""The head check and the confidence of ``skullstrip predict`` on heads it can and cannot read.

For every head of the benchmark families (``bench_families.FAMILIES``: 19
families of 3 held-out synthetic heads, as a user's files) the script runs the
real prediction path (:func:`skullstrip_lib.inference.predict` and
:func:`skullstrip_lib.inference.assess`, what ``strip`` runs) and prints the
Dice against the exact mask, the head contrast, the certainty, the flip
agreement and the confidence; then the same for the first head of each family
with its intensities negated (``max - x``), which the model cannot read. The
summary says how many heads the head check refuses
(:data:`~skullstrip_lib.inference.MIN_HEAD_CONTRAST`) and how many the
confidence flags (:data:`~skullstrip_lib.inference.CONFIDENCE_FLOOR`): the
README's figures.

Run:  python benchmarks/bench_confidence.py [--model default] [--families control,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_families import FAMILIES, _save_scan

from skullstrip_lib import inference
from skullstrip_lib.io import load_scan
from skullstrip_lib.metrics import dice
from skullstrip_lib.synth import make_head


def judge(path: Path, truth: np.ndarray, model) -> dict:
    scan = load_scan(path, keep_dtype=True, allow_nonfinite=True)
    prediction = inference.predict(scan, model)
    quality = inference.assess(scan, prediction, model.threshold)
    return {"dice": dice(scan.to_original(prediction.mask), truth), **quality}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--families", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    model = inference.load_model(args.model)
    names = args.families.split(",") if args.families else list(FAMILIES)
    rows = {"read": [], "negated": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in names:
            family = FAMILIES[name]
            for index in range(3):
                head = make_head(family["seed"], index, **family["kwargs"])
                truth = np.asarray(head.brainmask.dataobj) > 0
                path = work / f"{name}-{index}.nii.gz"
                _save_scan(head, path, family.get("offset", 0.0))
                cases = [("read", path)]
                if index == 0:
                    data = np.asarray(head.t1w.dataobj, np.float32)
                    negated = work / f"{name}-{index}-negated.nii.gz"
                    nib.save(nib.Nifti1Image(data.max() - data, head.t1w.affine), negated)
                    cases.append(("negated", negated))
                for kind, p in cases:
                    r = judge(p, truth, model)
                    rows[kind].append(r)
                    print(f"{name:22s} {index} {kind:8s} Dice {r['dice']:.3f}  contrast "
                          f"{r['contrast']:+.3f}  certainty {r['certainty']:.3f}  flip "
                          f"{r['flip_dice']:.3f}  confidence {r['confidence']:.3f}", flush=True)
                    p.unlink()
    for kind, found in rows.items():
        if not found:
            continue
        def get(key: str, found: list[dict] = found) -> np.ndarray:
            return np.array([r[key] for r in found], float)

        refused = int(np.sum(get("contrast") < inference.MIN_HEAD_CONTRAST))
        flagged = int(np.sum(get("confidence") < inference.CONFIDENCE_FLOOR))
        print(f"{kind}: {len(found)} heads; Dice {get('dice').min():.3f}-{get('dice').max():.3f}, "
              f"contrast {get('contrast').min():+.3f} to {get('contrast').max():+.3f}, confidence "
              f"{get('confidence').min():.3f}-{get('confidence').max():.3f}; refused by the head "
              f"check {refused}, flagged {flagged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
