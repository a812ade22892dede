"""The input pipeline: TFRecords, data augmentation and ``tf.data`` datasets.

Training reads every volume many times, so the preprocessed NIfTI files are
packed once into one TFRecord file per split (:func:`write_tfrecords`) and read
back with pure TensorFlow ops (:func:`load_split`): no Python generator and no
``tf.numpy_function`` in the hot path, so ``tf.data`` can run the parsing and
the augmentation in parallel threads, outside the Python interpreter lock.

:func:`augment` draws every random number with *stateless* random ops from an
explicit seed, so an augmented volume is a pure function of (volume, seed).
:func:`make_dataset` gives each element a seed from a seeded random stream: the
same ``seed`` gives the same sequence of augmented batches, run after run.

The layout on disk (``out_dir``)::

    train.tfrecord  val.tfrecord  test.tfrecord   # GZIP-compressed TFRecords
    manifest.json                                 # grid shape, counts, source

Each record is a ``tf.train.Example`` with the features ``image`` (the float32
volume as raw little-endian bytes, C order), ``mask`` (uint8 bytes, same
order), ``shape`` (three int64) and ``subject`` (the id, UTF-8 bytes).

TensorFlow is imported when this module is imported (not by ``skullstrip_lib``
itself).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from . import __version__
from ._docs import fill_doc
from .datasets import SPLITS
from .errors import InvalidArgumentError, InvalidInputError, MissingFileError, SkullstripError
from .io import atomic_path, from_plain, to_plain
from .validate import check_choice, check_int, check_number

__all__ = [
    "SPLITS",
    "AugmentConfig",
    "augment",
    "load_split",
    "make_dataset",
    "read_manifest",
    "write_tfrecords",
]

#: The splits, one TFRecord file each.
#: Name of the manifest written next to the TFRecord files.
MANIFEST = "manifest.json"
COMPRESSION = "GZIP"

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "mask": tf.io.FixedLenFeature([], tf.string),
    "shape": tf.io.FixedLenFeature([3], tf.int64),
    "subject": tf.io.FixedLenFeature([], tf.string),
}


# --------------------------------------------------------------------------- writing
def _record_path(tfrecord_dir: str | os.PathLike, split: str) -> Path:
    return Path(tfrecord_dir) / f"{split}.tfrecord"


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _example(subject: str, image: np.ndarray, mask: np.ndarray) -> bytes:
    feature = {
        "image": _bytes(np.ascontiguousarray(image, dtype="<f4").tobytes()),
        "mask": _bytes(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(image.shape))),
        "subject": _bytes(subject.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _read_table(preprocessed) -> tuple[pd.DataFrame, Path | None]:
    if isinstance(preprocessed, pd.DataFrame):
        return preprocessed.copy(), None
    source = Path(preprocessed)
    if not source.exists():
        raise MissingFileError(f"{source}: no such file")
    try:
        return pd.read_csv(source, dtype={"subject": str}), source
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInputError(source, f"not a readable CSV table ({exc})") from None


def _usable_rows(df: pd.DataFrame, source: Path | None) -> tuple[pd.DataFrame, list[str]]:
    """The rows to write (status not failed) with absolute paths; the failed subjects."""
    where = source if source is not None else "preprocessed table"
    missing = [c for c in ("subject", "t1w", "brainmask", "split") if c not in df]
    if missing:
        raise InvalidInputError(where, f"missing column(s) {', '.join(missing)}")
    failed_rows = (df["status"].astype(str) == "failed") if "status" in df else pd.Series(
        False, index=df.index)
    failed = sorted(df.loc[failed_rows, "subject"].astype(str))
    df = df.loc[~failed_rows].copy()
    df["subject"] = df["subject"].astype(str)
    for column in ("t1w", "brainmask", "split"):
        empty = df[column].isna() | (df[column].astype(str).str.strip() == "")
        if empty.any():
            raise InvalidInputError(where, f"subject {df.loc[empty, 'subject'].iloc[0]}: "
                                    f"no {column}")
    bad = sorted(set(df["split"].astype(str)) - set(SPLITS))
    if bad:
        raise InvalidInputError(where, f"unknown split value(s) {', '.join(bad)}")
    if df["subject"].duplicated().any():
        dup = df.loc[df["subject"].duplicated(), "subject"].iloc[0]
        raise InvalidInputError(where, f"subject {dup} appears twice")
    base = source.parent if source is not None else Path.cwd()
    for column in ("t1w", "brainmask"):  # relative paths are relative to the CSV
        df[column] = [str(p if Path(p).is_absolute() else base / p) for p in df[column]]
    return df.sort_values("subject").reset_index(drop=True), failed


def _load_pair(row) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for key in ("t1w", "brainmask"):
        path = Path(getattr(row, key))
        if not path.exists():
            raise MissingFileError(f"{path}: no such file (subject {row.subject}, {key})")
        try:
            img = nib.load(path)
        except Exception as exc:  # nibabel raises several types for a bad file
            raise InvalidInputError(path, f"not a NIfTI image ({type(exc).__name__})") from None
        if len(img.shape) != 3:
            raise InvalidInputError(path, f"expected a 3D image, got shape {img.shape}")
        arrays.append(np.asarray(img.dataobj, dtype=np.float32))
    image, mask = arrays
    if image.shape != mask.shape:
        raise InvalidInputError(row.brainmask, f"mask shape {mask.shape} differs from the "
                                f"image's {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InvalidInputError(row.t1w, "image has NaN or infinite values")
    if not np.all((mask == 0) | (mask == 1)):
        raise InvalidInputError(row.brainmask, "mask values are not all 0 or 1")
    return image, mask.astype(np.uint8)


@fill_doc
def write_tfrecords(
    preprocessed: pd.DataFrame | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Pack preprocessed subjects into one GZIP TFRecord file per split.

    Parameters
    ----------
    preprocessed : pandas.DataFrame or path-like
        The report of :func:`skullstrip_lib.workflow.run_preprocessing`
        (``preprocessed.csv``) or its table: columns ``subject``, ``t1w``,
        ``brainmask``, ``split`` and optionally ``status``. Rows whose status is
        ``failed`` are skipped. Relative paths in a CSV are taken relative to
        the CSV's folder.
    out_dir : path-like
        Where to write ``train.tfrecord``, ``val.tfrecord``, ``test.tfrecord``
        and ``manifest.json`` (created if needed). A split without subjects
        gets an empty file.
    overwrite : bool
        Replace existing files; without it any existing output is an error.
    %(progress)s

    Returns
    -------
    dict
        ``{"train": path, "val": path, "test": path, "manifest": path}``.

    Raises
    ------
    SkullstripError
        Outputs exist (without ``overwrite``), a column or file is missing, a
        volume is not on the same grid as the others, a mask is not 0/1.
        Nothing is left half-written: files are written under temporary names
        and renamed into place at the end.

    Examples
    --------
    Three subjects of 16x16x16 voxels, two for training and one for validation:

    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> cube = np.zeros((16, 16, 16), "float32")
    >>> cube[4:12, 4:12, 4:12] = 1  # the cube serves as image and as mask
    >>> table = pd.DataFrame({"subject": ["a", "b", "c"], "split": ["train", "train", "val"]})
    >>> table["t1w"] = table["brainmask"] = [str(tmp / f"{s}.nii.gz") for s in table["subject"]]
    >>> for path in table["t1w"]:
    ...     nib.save(nib.Nifti1Image(cube, np.eye(4)), path)
    >>> paths = write_tfrecords(table, tmp / "records", progress=False)
    >>> sorted(paths), paths["train"].name
    (['manifest', 'test', 'train', 'val'], 'train.tfrecord')
    >>> read_manifest(tmp / "records")["counts"]
    {'train': 2, 'val': 1, 'test': 0}
    >>> train = load_split(tmp / "records", "train")
    >>> [(tuple(image.shape), float(mask.numpy().sum())) for image, mask in train]
    [((16, 16, 16, 1), 512.0), ((16, 16, 16, 1), 512.0)]
    >>> next(iter(make_dataset(tmp / "records", "train", batch_size=2)))[0].shape
    TensorShape([2, 16, 16, 16, 1])
    """
    df, source = _read_table(preprocessed)
    rows, failed = _usable_rows(df, source)
    if rows.empty:
        raise InvalidInputError(source, "no subjects to write (all failed, or none listed)")
    out_dir = Path(out_dir)
    paths = {split: _record_path(out_dir, split) for split in SPLITS}
    paths["manifest"] = out_dir / MANIFEST
    existing = [p for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise SkullstripError(f"{existing[0]}: already exists (pass overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)

    shape: tuple[int, ...] | None = None
    counts = dict.fromkeys(SPLITS, 0)
    subjects: dict[str, list[str]] = {split: [] for split in SPLITS}
    options = tf.io.TFRecordOptions(compression_type=COMPRESSION)
    # Each file is written under a temporary name and renamed when all are complete;
    # the manifest is entered first so that it is renamed last: its presence means a
    # complete set.
    with contextlib.ExitStack() as stack:
        tmps = {key: stack.enter_context(atomic_path(paths[key], overwrite=True))
                for key in ("manifest", *SPLITS)}
        with tqdm(total=len(rows), desc="tfrecords", unit="subject", disable=not progress) as bar:
            for split in SPLITS:
                with tf.io.TFRecordWriter(str(tmps[split]), options) as writer:
                    for row in rows.loc[rows["split"] == split].itertuples(index=False):
                        image, mask = _load_pair(row)
                        if shape is None:
                            shape = image.shape
                        elif image.shape != shape:
                            raise InvalidInputError(row.t1w, f"shape {image.shape} differs "
                                                    f"from the other subjects' {shape}")
                        writer.write(_example(row.subject, image, mask))
                        counts[split] += 1
                        subjects[split].append(row.subject)
                        bar.update(1)
        manifest = {
            "shape": list(shape),
            "image_dtype": "float32",
            "mask_dtype": "uint8",
            "compression": COMPRESSION,
            "counts": counts,
            "subjects": subjects,
            "skipped_failed": failed,
            "source": None if source is None else str(source.absolute()),
            "version": __version__,
        }
        tmps["manifest"].write_text(json.dumps(manifest, indent=1))
    return paths


def read_manifest(tfrecord_dir: str | os.PathLike) -> dict:
    """The manifest written by :func:`write_tfrecords` (shape, counts, source).

    Parameters
    ----------
    tfrecord_dir : path-like
        The folder written by :func:`write_tfrecords`.

    Returns
    -------
    dict
        ``shape``, ``image_dtype``, ``mask_dtype``, ``compression``, ``counts``
        and ``subjects`` per split, ``skipped_failed``, ``source``, ``version``.

    Raises
    ------
    MissingFileError
        No manifest in that folder.

    Examples
    --------
    >>> read_manifest("no-such-folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.MissingFileError: no-such-folder/manifest.json: no such file ...

    :func:`write_tfrecords` shows one that exists.
    """
    path = Path(tfrecord_dir) / MANIFEST
    if not path.exists():
        raise MissingFileError(f"{path}: no such file (run write_tfrecords first)")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- reading
def _load_raw(tfrecord_dir: str | os.PathLike, split: str) -> tf.data.Dataset:
    """(image float32 (X,Y,Z,1), mask uint8 (X,Y,Z,1)): compact, for caching."""
    check_choice(split, "split", SPLITS)
    path = _record_path(tfrecord_dir, split)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file (run write_tfrecords first)")
    manifest_path = Path(tfrecord_dir) / MANIFEST
    static = (tuple(json.loads(manifest_path.read_text())["shape"])
              if manifest_path.exists() else None)

    @tf.autograph.experimental.do_not_convert
    def parse(record):
        ex = tf.io.parse_single_example(record, _FEATURES)
        shape = tf.constant([*static, 1]) if static else tf.concat(
            [tf.cast(ex["shape"], tf.int32), [1]], axis=0)
        image = tf.reshape(tf.io.decode_raw(ex["image"], tf.float32), shape)
        mask = tf.reshape(tf.io.decode_raw(ex["mask"], tf.uint8), shape)
        return image, mask

    ds = tf.data.TFRecordDataset(str(path), compression_type=COMPRESSION)
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@tf.autograph.experimental.do_not_convert
def _mask_to_float(image, mask):
    return image, tf.cast(mask, tf.float32)


def load_split(tfrecord_dir: str | os.PathLike, split: str) -> tf.data.Dataset:
    """The volumes of one split, in the order they were written (by subject id).

    Parameters
    ----------
    tfrecord_dir : path-like
        The folder written by :func:`write_tfrecords`.
    split : {"train", "val", "test"}
        Which file to read.

    Returns
    -------
    tf.data.Dataset
        Elements ``(image, mask)``, both float32 of shape ``(X, Y, Z, 1)``; the
        mask is 0/1. The shape is static when the manifest is present.

    Examples
    --------
    See :func:`write_tfrecords`, which writes the files and reads them back.
    """
    return _load_raw(tfrecord_dir, split).map(_mask_to_float)


# --------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class AugmentConfig:
    """Random transformations for training, and how strong they are.

    Attributes
    ----------
    flip_lr : float
        Probability of a left-right flip (axis 0 of an RAS volume).
    rotate_deg : float
        Rotations about each of the three axes are drawn from
        ``[-rotate_deg, rotate_deg]`` degrees.
    scale : tuple of 2 floats
        Scale factor along each axis (independently: anisotropic) drawn from
        this range; above 1 enlarges.
    gamma : tuple of 2 floats
        Gamma drawn log-uniformly from this range (``(1, 1)``: off).
    bias : float
        Peak magnitude of the log of the multiplicative bias field (0: off);
        0.3 makes the field vary within about ``[0.74, 1.35]``.
    noise : float
        Standard deviation of the additive Gaussian noise, as a fraction of
        the image's standard deviation (0: off).
    p_geometric : float
        Probability of the rotation and scaling (one resampling for both).

    Examples
    --------
    >>> AugmentConfig().rotate_deg, AugmentConfig.none().rotate_deg
    (10.0, 0.0)
    >>> AugmentConfig(flip_lr=2)
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidArgumentError: flip_lr must be a number in [0, 1], got 2
    """

    flip_lr: float = 0.5
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.7, 1.5)
    bias: float = 0.3
    noise: float = 0.05
    p_geometric: float = 0.8

    def __post_init__(self) -> None:
        for name in ("flip_lr", "p_geometric"):  # probabilities
            check_number(getattr(self, name), name, minimum=0, maximum=1)
        for name in ("rotate_deg", "bias", "noise"):
            check_number(getattr(self, name), name, minimum=0)
        for name in ("scale", "gamma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise InvalidArgumentError(name, f"must be a range 0 < low <= high, "
                                                 f"got {(lo, hi)}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation: :func:`augment` returns its input unchanged."""
        return cls(flip_lr=0.0, rotate_deg=0.0, scale=(1.0, 1.0), gamma=(1.0, 1.0), bias=0.0,
                   noise=0.0, p_geometric=0.0)

    @property
    def geometric(self) -> bool:
        """Whether rotation or scaling can happen."""
        return self.p_geometric > 0 and (self.rotate_deg > 0 or tuple(self.scale) != (1.0, 1.0))

    @property
    def enabled(self) -> bool:
        """Whether any transformation can happen."""
        return (self.flip_lr > 0 or self.geometric or tuple(self.gamma) != (1.0, 1.0)
                or self.bias > 0 or self.noise > 0)

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        """Inverse of :meth:`to_dict` (JSON and YAML give lists where tuples are kept)."""
        return from_plain(cls, d, what="augmentation")


def _uniform(seed, shape=(), lo=0.0, hi=1.0):
    return tf.random.stateless_uniform(shape, seed, minval=lo, maxval=hi, dtype=tf.float32)


def _axis_coords(n, axis: int):
    """Voxel indices along one axis, shaped to broadcast over (X, Y, Z)."""
    shape = [1, 1, 1]
    shape[axis] = -1
    return tf.reshape(tf.cast(tf.range(n), tf.float32), shape)


def _rotation(angles):
    """R = Rz @ Ry @ Rx for angles (radians) about axes 0, 1, 2."""
    c, s = tf.cos(angles), tf.sin(angles)
    one, zero = tf.ones_like(c[0]), tf.zeros_like(c[0])
    rx = tf.stack([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
    ry = tf.stack([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
    rz = tf.stack([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def _warp(image, mask, seed, config: AugmentConfig):
    """Rotate and scale image (X,Y,Z) and mask about the centre with one sampling grid."""
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    limit = math.radians(config.rotate_deg)
    angles = _uniform(seeds[0], (3,), -limit, limit)
    log_lo, log_hi = math.log(config.scale[0]), math.log(config.scale[1])
    scales = tf.exp(_uniform(seeds[1], (3,), log_lo, log_hi)) if log_hi > log_lo else tf.fill(
        [3], tf.constant(config.scale[0], tf.float32))
    # Output voxel p shows the input at c + S^-1 R^T (p - c): rotate by R, scale by S.
    inverse = tf.linalg.diag(1.0 / scales) @ tf.transpose(_rotation(angles))

    dims = tf.shape(image)
    n = [dims[0], dims[1], dims[2]]
    rel = [_axis_coords(n[a], a) - tf.cast(n[a] - 1, tf.float32) / 2.0 for a in range(3)]
    src = [inverse[a, 0] * rel[0] + inverse[a, 1] * rel[1] + inverse[a, 2] * rel[2]
           + tf.cast(n[a] - 1, tf.float32) / 2.0 for a in range(3)]

    # Image shifted so that its minimum is 0: outside the field of view both
    # channels read 0, i.e. the image's minimum and "not brain".
    low = tf.reduce_min(image)
    flat = tf.reshape(tf.stack([image - low, mask], axis=-1), [-1, 2])
    # Per axis and corner offset (0 or 1): the weight (0 outside the volume) and
    # the clipped index times the axis stride; a corner combines one of each axis.
    strides = [n[1] * n[2], n[2], 1]
    weights, terms = [], []
    for a in range(3):
        base = tf.floor(src[a])
        frac = src[a] - base
        base = tf.cast(base, tf.int32)
        w_a, t_a = [], []
        for off, w in ((0, 1.0 - frac), (1, frac)):
            i = base + off
            w_a.append(tf.where((i >= 0) & (i < n[a]), w, 0.0))
            t_a.append(tf.clip_by_value(i, 0, n[a] - 1) * strides[a])
        weights.append(w_a)
        terms.append(t_a)
    out = None
    for ox in (0, 1):
        for oy in (0, 1):
            w_xy, t_xy = weights[0][ox] * weights[1][oy], terms[0][ox] + terms[1][oy]
            for oz in (0, 1):
                weight = w_xy * weights[2][oz]
                part = weight[..., None] * tf.gather(flat, t_xy + terms[2][oz])
                out = part if out is None else out + part
    # The mask is interpolated trilinearly and re-thresholded at 0.5: it stays 0/1.
    return out[..., 0] + low, tf.cast(out[..., 1] >= 0.5, tf.float32)


def _bias_field(shape, seed, strength: float):
    """exp of a random quadratic polynomial in x, y, z (in [-1, 1]), peak |log| = strength."""
    n = [shape[0], shape[1], shape[2]]
    x, y, z = (_axis_coords(n[a], a) / tf.maximum(tf.cast(n[a] - 1, tf.float32) / 2.0, 1.0)
               - 1.0 for a in range(3))
    c = _uniform(seed, (9,), -1.0, 1.0)
    log = (c[0] * x + c[1] * y + c[2] * z + c[3] * x * x + c[4] * y * y + c[5] * z * z
           + c[6] * x * y + c[7] * x * z + c[8] * y * z)
    log = log - tf.reduce_mean(log)
    log = strength * log / tf.maximum(tf.reduce_max(tf.abs(log)), 1e-6)
    return tf.exp(log)


@tf.autograph.experimental.do_not_convert  # plain TF ops and tf.cond: nothing to convert
def augment(image, mask, seed, config: AugmentConfig | None = None):
    """Randomly transform one volume and its mask; pure TensorFlow, stateless.

    In order: left-right flip; rotation about the three axes and anisotropic
    scaling about the volume centre, as one trilinear resampling applied to
    image and mask alike (outside the field of view the image takes its
    minimum value and the mask 0; the interpolated mask is re-thresholded at
    0.5, so it stays binary); then, on the image only, gamma (the image is
    mapped to [0, 1] with its own minimum and maximum, raised to the power
    gamma and mapped back, so z-scores stay on the same scale), a smooth
    multiplicative bias field (applied to the image minus its minimum, so the
    background stays at the minimum) and additive Gaussian noise.

    Every random number comes from ``tf.random.stateless_*`` ops seeded by
    ``seed``: the same seed gives the same result. Transformations that the
    config switches off are left out of the graph, so :meth:`AugmentConfig.none`
    returns the input unchanged (the mask cast to float32).

    The rotation is about voxel axes, which is a rotation in space because
    the model grid has isotropic voxels.

    Parameters
    ----------
    image : tf.Tensor
        float32, shape ``(X, Y, Z)`` or ``(X, Y, Z, 1)``.
    mask : tf.Tensor
        Same shape, 0/1 (any numeric dtype).
    seed : tf.Tensor
        Shape ``(2,)``, int32 or int64.
    config : AugmentConfig, optional
        Defaults to ``AugmentConfig()``.

    Returns
    -------
    (tf.Tensor, tf.Tensor)
        Image and mask, float32, with the input's shape.

    Examples
    --------
    :meth:`AugmentConfig.none` changes nothing; a certain left-right flip alone
    mirrors axis 0 of image and mask alike:

    >>> cube = np.zeros((16, 16, 16, 1), "float32")
    >>> cube[2:6, 4:12, 4:12] = 1
    >>> seed = tf.constant([1, 2])
    >>> image, mask = augment(cube, cube, seed, AugmentConfig.none())
    >>> bool((image.numpy() == cube).all()), mask.dtype.name
    (True, 'float32')
    >>> flip = AugmentConfig(flip_lr=1.0, p_geometric=0.0, gamma=(1.0, 1.0), bias=0.0, noise=0.0)
    >>> image, mask = augment(cube, cube, seed, flip)
    >>> bool((mask.numpy() == cube[::-1]).all())
    True
    """
    config = config or AugmentConfig()
    image = tf.convert_to_tensor(image, tf.float32)
    mask = tf.cast(mask, tf.float32)
    if not config.enabled:
        return image, mask
    channel = image.shape.rank == 4
    if channel:
        image, mask = image[..., 0], mask[..., 0]
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), num=8)

    if config.flip_lr > 0:
        flip = _uniform(seeds[0]) < config.flip_lr
        image, mask = tf.cond(flip, lambda: (tf.reverse(image, [0]), tf.reverse(mask, [0])),
                              lambda: (image, mask))
    if config.geometric:
        static = image.shape
        warp = _uniform(seeds[1]) < config.p_geometric
        image, mask = tf.cond(warp, lambda: _warp(image, mask, seeds[2], config),
                              lambda: (image, mask))
        image.set_shape(static)
        mask.set_shape(static)
    if tuple(config.gamma) != (1.0, 1.0):
        lo, hi = tf.reduce_min(image), tf.reduce_max(image)
        span = tf.maximum(hi - lo, 1e-6)
        log_g = _uniform(seeds[3], (), math.log(config.gamma[0]), math.log(config.gamma[1]))
        image = lo + span * tf.pow(tf.clip_by_value((image - lo) / span, 0.0, 1.0),
                                   tf.exp(log_g))
    if config.bias > 0:
        lo = tf.reduce_min(image)
        image = lo + (image - lo) * _bias_field(tf.shape(image), seeds[4], config.bias)
    if config.noise > 0:
        std = tf.math.reduce_std(image) * config.noise
        image = image + std * tf.random.stateless_normal(tf.shape(image), seeds[5])
    if channel:
        image, mask = image[..., None], mask[..., None]
    return image, mask


# --------------------------------------------------------------------------- datasets
def make_dataset(
    tfrecord_dir: str | os.PathLike,
    split: str,
    *,
    batch_size: int = 1,
    shuffle: bool = True,
    augment_config: AugmentConfig | None = None,
    seed: int = 0,
    repeat: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """A batched, shuffled, augmented dataset for training or evaluation.

    ``load_split`` → ``cache`` (in memory: the float32 image and the uint8 mask,
    about 9.8 MB a volume at 96x128x160) → ``shuffle`` (the whole split,
    seeded, a new order each epoch) → ``repeat`` → ``augment`` (each element
    gets a seed from ``tf.data.Dataset.random(seed)``, a new stream each
    epoch; parallel, order kept) → ``batch`` → ``prefetch``.

    Parameters
    ----------
    tfrecord_dir : path-like
        The folder written by :func:`write_tfrecords`.
    split : {"train", "val", "test"}
        Which split.
    batch_size : int
        Volumes per batch.
    shuffle : bool
        Shuffle (training). A shuffled dataset also drops the last, smaller
        batch, so every batch has ``batch_size`` volumes.
    augment_config : AugmentConfig, optional
        Augmentation; ``None`` for none (validation, test).
    seed : int
        Seed of the shuffling and the augmentation: the same seed gives the same
        sequence of batches (epoch after epoch), another seed another one.
        (A global seed set with ``tf.random.set_seed`` also enters.)
    repeat : bool
        Repeat forever (then pass ``steps_per_epoch`` to ``Model.fit``).
    cache : bool
        Keep the parsed volumes in memory after the first pass.

    Returns
    -------
    tf.data.Dataset
        Elements ``(image, mask)``, float32, shape ``(batch, X, Y, Z, 1)``.

    Examples
    --------
    See :func:`write_tfrecords`, whose example ends with a batch of two from here.
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    ds = _load_raw(tfrecord_dir, split)
    if cache:
        ds = ds.cache()
    if shuffle:
        try:
            buffer = max(1, int(read_manifest(tfrecord_dir)["counts"][split]))
        except (SkullstripError, KeyError, ValueError):
            buffer = 256
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if augment_config is not None and augment_config.enabled:
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)

        @tf.autograph.experimental.do_not_convert
        def apply(pair, element_seed):
            return augment(pair[0], pair[1], element_seed, augment_config)

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(_mask_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=shuffle)
    return ds.prefetch(tf.data.AUTOTUNE)
