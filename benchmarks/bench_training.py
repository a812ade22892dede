"""Training throughput: volumes per second, and whether the input pipeline keeps up.

For each configuration the script times (a) the input pipeline alone (cached
TFRecords, augmentation on, batches pulled as fast as possible) and (b) train
steps on fixed in-memory batches (the compute alone), then reports both in
volumes per second. If (a) is well above (b), the pipeline keeps the device
busy; otherwise the device waits on input. On a GPU it also reports the peak
GPU memory of the training steps.

The volumes are smooth random ellipsoid heads written to TFRecords directly
(no preprocessing), at each configuration's model grid.

Run:  python benchmarks/bench_training.py [--steps 5] [--configs default full] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = ("sample", "default", "full")
"""The training profiles measured (:data:`skullstrip_lib.train.TRAINING_PROFILES`)."""


def _profile(name: str) -> tuple[tuple[int, int, int], int, int, int]:
    """A profile's model grid, base filters, depth and batch size, read from the library."""
    from skullstrip_lib.train import resolve_config

    config = resolve_config(name)
    return (tuple(config.preprocess.shape), config.base_filters, config.depth,
            config.batch_size)


def _fake_records(shape, n: int, out: Path) -> Path:
    import nibabel as nib
    import numpy as np
    import pandas as pd
    from scipy import ndimage

    from skullstrip_lib.data import write_tfrecords

    rng = np.random.default_rng(0)
    rows = []
    grid = np.indices(shape).astype(np.float32)
    for i in range(n):
        centre = np.array(shape) / 2 + rng.normal(0, 2, 3)
        r = sum(((g - c) / (s * 0.35)) ** 2 for g, c, s in zip(grid, centre, shape, strict=True))
        mask = (r < 1).astype(np.uint8)
        image = ndimage.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32) + mask
        aff = np.eye(4)
        for kind, arr in (("t1w", image), ("brainmask", mask)):
            nib.save(nib.Nifti1Image(arr, aff), out / f"{i}_{kind}.nii.gz")
        rows.append({"subject": f"s{i}", "status": "done", "t1w": str(out / f"{i}_t1w.nii.gz"),
                     "brainmask": str(out / f"{i}_brainmask.nii.gz"), "split": "train"})
    write_tfrecords(pd.DataFrame(rows), out / "tf", progress=False)
    return out / "tf"


def bench(name: str, steps: int, work: Path) -> dict:
    import keras
    import tensorflow as tf

    from skullstrip_lib.data import AugmentConfig, make_dataset
    from skullstrip_lib.losses import DiceScore, get_loss
    from skullstrip_lib.model import build_unet
    from skullstrip_lib.train import precision_policy

    shape, base, depth, batch = _profile(name)
    folder = work / name
    folder.mkdir()
    tf_dir = _fake_records(shape, max(2 * batch, 4), folder)

    ds = make_dataset(tf_dir, "train", batch_size=batch, augment_config=AugmentConfig(),
                      repeat=True)
    it = iter(ds)
    x, y = next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    pipeline = batch * steps / (time.perf_counter() - start)

    gpus = tf.config.list_physical_devices("GPU")
    with precision_policy("mixed_float16" if gpus else "float32"):
        model = build_unet((*shape, 1), base_filters=base, depth=depth)
    model.compile(keras.optimizers.Adam(1e-3), loss=get_loss("dice_bce"), metrics=[DiceScore()])
    model.train_on_batch(x, y)  # build and trace
    if gpus:
        tf.config.experimental.reset_memory_stats("GPU:0")
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    compute = batch * steps / (time.perf_counter() - start)
    peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30) if gpus else None
    return {"config": name, "grid": "x".join(map(str, shape)), "filters/depth": f"{base}/{depth}",
            "batch": batch, "params": model.count_params(), "pipeline vol/s": pipeline,
            "train vol/s": compute, "step s": batch / compute,
            "GPU peak GiB": peak, "device": "GPU" if gpus else "CPU"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS),
                        choices=CONFIGS)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        results = [bench(c, args.steps, Path(work)) for c in args.configs]
    print(f"\nMachine: {os.cpu_count()} cores ({platform.machine()}), Python "
          f"{platform.python_version()}, {results[0]['device']}; {args.steps} steps each.\n")
    cols = list(results[0])
    fmt = {"pipeline vol/s": "{:.2f}", "train vol/s": "{:.2f}", "step s": "{:.2f}",
           "GPU peak GiB": "{:.2f}"}
    cells = [[("-" if r[c] is None else fmt.get(c, "{}").format(r[c])) for c in cols]
             for r in results]
    if args.markdown:
        print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
        for row in cells:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
