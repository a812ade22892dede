"""Throughput of the tf.data input pipeline (TFRecord parsing and augmentation).

The volumes are synthetic, written straight to NIfTI instead of running the
preprocessing: a smooth random texture (Gaussian noise at 1/8 resolution,
upsampled linearly) inside an ellipsoidal head, z-scored in the head, with an
ellipsoidal brain mask, on the model grid (96x128x160 by default). Smooth data
compress about as well under GZIP as real preprocessed scans do; pure white
noise would not. They are packed with :func:`skullstrip_lib.data.write_tfrecords`
into a temporary folder, then read back in several ways:

* ``load+parse``: :func:`~skullstrip_lib.data.load_split` alone (GZIP
  decompression, ``parse_single_example``, ``decode_raw``), or through
  :func:`~skullstrip_lib.data.make_dataset` without augmentation and cache;
* ``+augment``: :func:`~skullstrip_lib.data.make_dataset` with the default
  :class:`~skullstrip_lib.data.AugmentConfig`, uncached (parsing every time) and
  cached (the steady state of training from the second epoch);
* ``augment alone``: one :func:`~skullstrip_lib.data.augment` call on a volume
  already in memory, in a ``tf.function``, default config and with the
  resampling forced on (``p_geometric=1``, the worst case).

Throughput excludes the first batch (tracing, warm-up); cached rows also
exclude the first epoch (filling the cache).

Run:  python benchmarks/bench_input_pipeline.py [--volumes 8] [--shape 96 128 160] [--markdown]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def synthetic_volume(shape: tuple[int, int, int], seed: int):
    """A smooth random 'head' (float32, z-scored) and its brain mask (uint8)."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=tuple(max(2, s // 8) for s in shape)).astype(np.float32)
    texture = ndimage.zoom(coarse, [s / c for s, c in zip(shape, coarse.shape, strict=True)],
                           order=1)[: shape[0], : shape[1], : shape[2]]
    grid = np.indices(shape, dtype=np.float32)
    centre = [s / 2 + rng.uniform(-0.05, 0.05) * s for s in shape]
    r_head = sum(((g - c) / (0.45 * s)) ** 2 for g, c, s in zip(grid, centre, shape, strict=True))
    r_brain = sum(((g - c) / (0.36 * s)) ** 2 for g, c, s in zip(grid, centre, shape,
                                                                   strict=True))
    head, brain = r_head <= 1, r_brain <= 1
    image = np.where(head, 1.0 + 0.3 * texture + 0.5 * brain, 0.0).astype(np.float32)
    image += rng.normal(scale=0.02, size=shape).astype(np.float32)
    image = (image - image[head].mean()) / image[head].std()
    return image.astype(np.float32), brain.astype(np.uint8)


def build_records(n: int, shape: tuple[int, int, int], work: Path) -> tuple[Path, float]:
    """Write n synthetic subjects as NIfTI and pack them; return the folder and s/volume."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from skullstrip_lib.data import write_tfrecords

    rows = []
    for i in range(n):
        image, mask = synthetic_volume(shape, seed=i)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        t1w, bm = work / f"sub{i:03d}_T1w.nii", work / f"sub{i:03d}_brainmask.nii"
        nib.save(nib.Nifti1Image(image, affine), t1w)
        nib.save(nib.Nifti1Image(mask, affine), bm)
        rows.append({"subject": f"sub{i:03d}", "status": "done", "t1w": str(t1w),
                     "brainmask": str(bm), "split": "train"})
    start = time.perf_counter()
    write_tfrecords(pd.DataFrame(rows), work / "records", progress=False)
    return work / "records", (time.perf_counter() - start) / n


def throughput(ds, batch_size: int, n_batches: int, warmup: int = 1) -> float:
    """Volumes per second over n_batches, after warmup batches."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch_size / (time.perf_counter() - start)


def augment_ms(shape, config, calls: int) -> float:
    """Median milliseconds of one augment call on a volume in memory."""
    import tensorflow as tf

    from skullstrip_lib.data import augment

    image, mask = synthetic_volume(shape, seed=99)
    image, mask = tf.constant(image[..., None]), tf.constant(mask[..., None])
    fn = tf.function(lambda i, m, s: augment(i, m, s, config))
    times = []
    for k in range(calls + 1):
        seed = tf.constant([k, 1], tf.int64)
        start = time.perf_counter()
        out = fn(image, mask, seed)
        out[0].numpy()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])  # the first call traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=8, help="synthetic volumes (>= 4)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 160),
                        metavar=("X", "Y", "Z"), help="model grid shape")
    parser.add_argument("--epochs", type=int, default=2,
                        help="passes over the volumes timed per row")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    if args.volumes < 4:
        parser.error("--volumes must be at least 4 (batches of 4)")
    shape = tuple(args.shape)

    import tensorflow as tf

    from skullstrip_lib.data import AugmentConfig, load_split, make_dataset

    n = args.volumes
    results: list[tuple[str, int, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        records, write_s = build_records(n, shape, Path(tmp))
        size_mb = (records / "train.tfrecord").stat().st_size / 1e6
        total = n * args.epochs

        def rate(ds, bs, cached=False):
            warm = math.ceil(n / bs) + 1 if cached else 1
            return f"{throughput(ds, bs, max(1, total // bs), warm):.2f} vol/s"

        results.append(("load+parse (load_split)", 1,
                        rate(load_split(records, "train").repeat(), 1)))
        for bs in (1, 4):
            results.append(("load+parse (make_dataset, no augment, no cache)", bs,
                            rate(make_dataset(records, "train", batch_size=bs, shuffle=False,
                                              cache=False, repeat=True), bs)))
        for bs in (1, 4):
            results.append(("load+parse+augment (no cache)", bs,
                            rate(make_dataset(records, "train", batch_size=bs, cache=False,
                                              augment_config=AugmentConfig(), repeat=True), bs)))
        for bs in (1, 4):
            results.append(("cached+augment (training steady state)", bs,
                            rate(make_dataset(records, "train", batch_size=bs, cache=True,
                                              augment_config=AugmentConfig(), repeat=True), bs,
                                 cached=True)))
        calls = max(4, n)
        results.append(("augment alone, default config", 1,
                        f"{augment_ms(shape, AugmentConfig(), calls):.0f} ms/vol"))
        results.append(("augment alone, resampling always (p_geometric=1)", 1,
                        f"{augment_ms(shape, AugmentConfig(p_geometric=1.0), calls):.0f} ms/vol"))
        results.append(("augment alone, intensity only (no flip/rotate/scale)", 1,
                        f"{augment_ms(shape, AugmentConfig(flip_lr=0, p_geometric=0), calls):.0f}"
                        " ms/vol"))

    print(f"# input pipeline: {n} volumes of {'x'.join(map(str, shape))}, "
          f"TFRecord {size_mb / n:.1f} MB/vol (GZIP), write {write_s:.2f} s/vol")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"TensorFlow {tf.__version__}, Python {sys.version.split()[0]}")
    width = max(len(r[0]) for r in results)
    if args.markdown:
        print("| pipeline | batch | throughput |\n|---|---|---|")
        for name, bs, value in results:
            print(f"| {name} | {bs} | {value} |")
    else:
        print(f"{'pipeline':<{width}}  batch  throughput")
        for name, bs, value in results:
            print(f"{name:<{width}}  {bs:>5}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
