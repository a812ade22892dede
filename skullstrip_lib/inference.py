"""Brain extraction of new scans with a trained model, in the scan's own space.

A *model* here is a network plus the preprocessing it was trained with. On
disk it is a folder (or a pair of files with the same stem) holding
``model.onnx`` — the network exported to ONNX — and ``model.json`` — the
preprocessing parameters and how the model was made. ONNX files hold only
tensors and a graph, so loading one never runs code from the file (unlike a
pickle). A Keras ``.keras`` file with a ``.json`` beside it works too, through
TensorFlow.

:func:`predict_mask` is the core: prepare the scan exactly as in training
(:func:`skullstrip_lib.preprocess.prepare_input`), run the network on the model
grid, take the probability map back onto the scan's grid by linear
interpolation, threshold, keep the largest connected component and fill holes.
:func:`strip` wraps it for files: for each scan (NIfTI, MGH/MGZ, Analyze or
MINC) it writes ``<name>_brainmask`` and ``<name>_brain`` in the scan's own
format (NIfTI for MINC) with its shape, affine, header and data type, after
checking that the scan can hold a head and that the mask can be a brain, with a
JSON sidecar holding the volume and a confidence (:func:`assess`: how sure the
network was and how well it agreed with itself on the mirrored scan). Every
output path is planned before any work, so an output is never an input; a BIDS
dataset gives a BIDS-derivatives dataset (:mod:`skullstrip_lib.bids`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import __version__
from ._docs import fill_doc
from .bids import (
    DESCRIPTION,
    BidsScan,
    check_output_root,
    dataset_description,
    derivative_paths,
    find_t1w,
    is_bids_dataset,
)
from .errors import (
    ImplausibleMaskError,
    InputWarning,
    InvalidInputError,
    MissingFileError,
    OutputExistsError,
    SkullstripError,
)
from .io import (
    SCAN_SUFFIXES,
    WRITABLE_SUFFIXES,
    Scan,
    atomic_write_text,
    check_writable,
    file_key,
    image_files,
    image_suffix,
    load_scan,
    move_into_place,
    save_like,
)
from .preprocess import (
    ModelGrid,
    PreprocessConfig,
    bounding_box,
    from_model_grid,
    prepare_input,
)

__all__ = [
    "BRAIN_VOLUME_ML",
    "CONFIDENCE_FLOOR",
    "MIN_FIELD_OF_VIEW_MM",
    "MIN_HEAD_CONTRAST",
    "MIN_VOXELS_PER_AXIS",
    "OUTPUT_ENDINGS",
    "UNCERTAIN_BAND",
    "BrainModel",
    "Prediction",
    "as_model",
    "assess",
    "bundled_models",
    "check_probabilities",
    "head_contrast",
    "is_output_name",
    "load_model",
    "postprocess_mask",
    "predict",
    "predict_mask",
    "probability_to_mask",
    "scan_name",
    "strip",
]

MODEL_FILE, META_FILE = "model.onnx", "model.json"
TTA_MODES = ("none", "flip_lr")
"""Test-time augmentations a model's JSON may ask for (``"tta"``); see :class:`BrainModel`."""


@dataclass
class BrainModel:
    """A network and the preprocessing it expects.

    Attributes
    ----------
    name : str
        Bundled name or path it was loaded from.
    config : PreprocessConfig
        The preprocessing the network was trained with.
    run : callable
        Maps a batch ``(N, X, Y, Z, 1)`` float32 on the model grid to brain
        probabilities of the same shape.
    threshold : float
        Probability above which a voxel is brain.
    meta : dict
        Everything in the model's JSON (training data, scores, ...).
    flip_lr : bool
        Test-time augmentation: average the probabilities of the volume and of
        its left-right mirror image (``"tta": "flip_lr"`` in the JSON). A brain
        is nearly symmetric, so the mirror is a second, slightly different look
        at the same head; averaging the two cancels part of each one's errors.

    Examples
    --------
    A stand-in for a network, to see what one is given: "brain" wherever the
    normalised intensity (mean 0 inside the head) is above average.

    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> config = PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none")
    >>> bright = BrainModel("bright", config, run=lambda x: (x > 0).astype("float32"))
    >>> bright.looks(np.ones((24, 32, 24), "float32")).shape  # one look, no mirror
    (1, 24, 32, 24)

    :func:`load_model` makes real ones, from an ONNX or Keras file.
    """

    name: str
    config: PreprocessConfig
    run: Callable[[np.ndarray], np.ndarray]
    threshold: float = 0.5
    meta: dict = field(default_factory=dict)
    flip_lr: bool = False

    path: Path | None = None

    @property
    def source(self) -> str:
        """How messages name the model: its weights file, else its name."""
        return str(self.path) if self.path is not None else self.name

    def looks(self, image: np.ndarray) -> np.ndarray:
        """The network's brain probabilities for each look at one volume on the model grid.

        One look, or two with :attr:`flip_lr` (the volume and its mirror along
        axis 0, R-L on the RAS model grid, sent as one batch of two; the
        mirror's output is mirrored back).

        Returns
        -------
        numpy.ndarray of float32
            Shape ``(looks, *config.shape)``, values in [0, 1].

        Raises
        ------
        InvalidInputError
            The network's output, naming the model: not of the input's shape,
            or not probabilities (NaN, inf, or values outside [0, 1]).
        """
        volume = np.ascontiguousarray(image, dtype=np.float32)
        batch = volume[None] if not self.flip_lr else np.stack([volume, volume[::-1]])
        out = np.asarray(self.run(batch[..., None]), dtype=np.float32)
        if out.shape != (*batch.shape, 1):
            raise InvalidInputError(self.source, f"the network returned an array of shape "
                                                 f"{out.shape} for an input of shape "
                                                 f"{(*batch.shape, 1)}")
        out = out[..., 0]
        if not out.flags.writeable:  # a TensorFlow tensor's view: written below
            out = out.copy()
        if self.flip_lr:
            out[1] = out[1][::-1].copy()  # the mirror's answer, mirrored back
        check_probabilities(out, self.source)
        return np.clip(out, 0.0, 1.0, out=out)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Brain probability for one volume on the model grid, shape ``config.shape``.

        The mean of :meth:`looks`: with :attr:`flip_lr`, of the volume's and
        its mirror's.
        """
        looks = self.looks(image)
        return looks[0] if len(looks) == 1 else 0.5 * (looks[0] + looks[1])


PROBABILITY_ROUNDING = 1e-5
"""How far beyond [0, 1] a network's output may stray by float32 rounding (then clipped)."""


def check_probabilities(probability: np.ndarray, where: str) -> None:
    """Refuse a network output that is not a probability map: NaN, inf, or outside [0, 1].

    Values within :data:`PROBABILITY_ROUNDING` of [0, 1] are float32 rounding
    of a sigmoid and pass.

    A broken network (a NaN weight, a missing sigmoid) would otherwise give an
    empty mask or one of the whole field of view, which a disabled volume
    check would let through.

    Examples
    --------
    >>> check_probabilities(np.array([0.0, 0.5, 1.0]), "model.onnx")
    >>> check_probabilities(np.array([0.2, 1.7]), "model.onnx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.InvalidInputError: model.onnx: the network's output spans 0.2 to 1.7, ...
    """
    bad = probability.size - int(np.count_nonzero(np.isfinite(probability)))
    if bad:
        raise InvalidInputError(where, f"the network's output holds {bad} non-finite values "
                                       "(NaN or inf): not a probability map; nothing written")
    lo, hi = float(probability.min()), float(probability.max())
    # A float32 sigmoid can round to a hair beyond 1 (or 0): that is rounding, not a fault.
    if lo < -PROBABILITY_ROUNDING or hi > 1.0 + PROBABILITY_ROUNDING:
        raise InvalidInputError(where, f"the network's output spans {lo:.6g} to {hi:.6g}, "
                                       "outside [0, 1]: not a probability map (a missing "
                                       "sigmoid?); nothing written")


def bundled_models() -> dict[str, Path]:
    """The models shipped inside the package: name -> folder.

    Returns
    -------
    dict of str to pathlib.Path
        Each folder holds ``model.onnx`` and ``model.json``; sorted by name.

    Examples
    --------
    >>> models = bundled_models()
    >>> list(models), (models["default"] / "model.onnx").is_file()
    (['default'], True)
    """
    root = resources.files("skullstrip_lib") / "models"
    found = {}
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and (entry / MODEL_FILE).is_file():
                found[entry.name] = Path(str(entry))
    return dict(sorted(found.items()))


def _number(meta: dict, key: str, where: Path, lo: float, hi: float, default: float) -> float:
    value = meta.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not lo < value < hi):
        raise InvalidInputError(where, f"{key!r} must be a number between {lo:g} and {hi:g} "
                                       f"(exclusive), got {value!r}")
    return float(value)


def _config_from_meta(meta: object, where: Path) -> PreprocessConfig:
    """The preprocessing of a model's JSON, checked: every bad value names model.json."""
    if not isinstance(meta, dict):
        raise InvalidInputError(where, "not a model description (a JSON object is expected)")
    raw = meta.get("preprocess")
    if not isinstance(raw, dict):
        raise InvalidInputError(where, "model description lacks valid 'preprocess' (a JSON "
                                       "object of preprocessing parameters)")
    shape = raw.get("shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise InvalidInputError(where, f"'preprocess.shape' must be 3 positive whole numbers, "
                                       f"got {shape!r}")
    spacing = raw.get("spacing")
    if (isinstance(spacing, bool) or not isinstance(spacing, (int, float))
            or not 0 < spacing < 100):
        raise InvalidInputError(where, f"'preprocess.spacing' must be a voxel size in mm "
                                       f"(0 to 100), got {spacing!r}")
    clip = raw.get("clip_percentiles", [0.5, 99.5])
    if clip is not None and not (
            isinstance(clip, list) and len(clip) == 2
            and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in clip)
            and 0 <= clip[0] < clip[1] <= 100):
        raise InvalidInputError(where, f"'preprocess.clip_percentiles' must be two "
                                       f"percentiles 0 <= low < high <= 100, got {clip!r}")
    try:
        return PreprocessConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError, SkullstripError) as exc:
        raise InvalidInputError(where, f"model description lacks valid 'preprocess' ({exc})") \
            from None


def _onnx_runner(path: Path, shape: tuple[int, ...],
                 meta_path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0][:200]
        raise InvalidInputError(path, f"not an ONNX model ({first})") from None
    [model_input] = session.get_inputs()[:1] or [None]
    if model_input is None:
        raise InvalidInputError(path, "an ONNX model without inputs")
    # The network's fixed axes (the batch axis is a name or None) against model.json's grid.
    declared = list(model_input.shape)
    spatial = [d if isinstance(d, int) else None for d in declared[1:4]]
    if len(declared) != 5 or any(d is not None and d != n
                                 for d, n in zip(spatial, shape, strict=True)):
        dims = "x".join(str(d) for d in declared[1:4])
        raise InvalidInputError(meta_path, f"its grid {'x'.join(map(str, shape))} "
                                           f"('preprocess.shape') differs from the input of "
                                           f"{path.name} ({dims}, {len(declared)} axes)")
    name = model_input.name

    def run(batch: np.ndarray) -> np.ndarray:
        try:
            return session.run(None, {name: batch})[0]
        except Exception as exc:  # onnxruntime's own types (InvalidArgument, Fail, ...)
            first = str(exc).strip().splitlines()[0][:200]
            raise InvalidInputError(path, f"ONNX Runtime could not run it ({first})") from None

    return run


def _keras_runner(path: Path, device: str) -> Callable[[np.ndarray], np.ndarray]:
    from .io import check_keras_file  # Keras calls any file it cannot read "File not found"

    check_keras_file(path)
    import keras

    from . import losses  # noqa: F401  (registers the custom losses and metrics)

    # A device scope, not CUDA_VISIBLE_DEVICES: that would hide the GPUs from the whole
    # process (and every later model in it) for good.
    where = "cpu:0" if device == "cpu" else "gpu:0"
    try:
        with keras.device(where):
            model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        first = str(exc).strip().splitlines()[0][:200]
        raise InvalidInputError(path, f"not a Keras model ({first})") from None

    def run(batch: np.ndarray) -> np.ndarray:
        with keras.device(where):
            return model.predict(batch, verbose=0)

    return run


def load_model(model: str | os.PathLike = "default", *, device: str = "cpu") -> BrainModel:
    """Load a model by bundled name, folder or file.

    Parameters
    ----------
    model : str or path-like
        A bundled name (see :func:`bundled_models`), a folder holding
        ``model.onnx`` (or ``model.keras``) and ``model.json`` (a training run's
        ``export/`` folder, say), or a ``.onnx`` / ``.keras`` file with a
        ``.json`` of the same stem or a ``model.json`` beside it.
    device : {"cpu", "gpu"}
        Keras models only: hide GPUs unless ``"gpu"``. ONNX models run on the CPU.

    Returns
    -------
    BrainModel

    Raises
    ------
    MissingFileError
        No such model.
    InvalidInputError
        The file is not a model, or its description is missing or invalid
        (a bad value names ``model.json``: a threshold outside (0, 1), a grid
        that differs from the network's input, ...).

    Examples
    --------
    >>> model = load_model("default")
    >>> model.name, model.threshold, model.config.shape, model.config.spacing
    ('default', 0.45, (48, 64, 80), 4.0)
    >>> load_model("no-such-model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.MissingFileError: no-such-model: no such model file or folder ...
    """
    bundled = bundled_models()
    path = bundled.get(str(model), Path(model))
    if path.is_dir():
        weights = next((path / n for n in (MODEL_FILE, "model.keras") if (path / n).is_file()),
                       None)
        meta_path = path / META_FILE
        if weights is None:
            raise MissingFileError(f"{path}: no {MODEL_FILE} or model.keras in this folder")
    elif path.is_file():
        weights = path
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            meta_path = path.parent / META_FILE
    else:
        names = ", ".join(bundled) or "none"
        raise MissingFileError(f"{model}: no such model file or folder (bundled models: {names})")
    if not meta_path.is_file():
        raise MissingFileError(f"{weights}: its description {meta_path.name} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise InvalidInputError(meta_path, f"not valid JSON ({exc})") from None
    config = _config_from_meta(meta, meta_path)
    threshold = _number(meta, "threshold", meta_path, 0.0, 1.0, 0.5)
    tta = meta.get("tta", "none")
    if not isinstance(tta, str) or tta not in TTA_MODES:
        raise InvalidInputError(meta_path, f"unknown test-time augmentation {tta!r} "
                                f"(expected one of {', '.join(TTA_MODES)})")
    if weights.suffix == ".onnx":
        run = _onnx_runner(weights, config.shape, meta_path)
    elif weights.suffix == ".keras":
        run = _keras_runner(weights, device)
    else:
        raise InvalidInputError(weights, "expected a .onnx or .keras model file")
    return BrainModel(name=str(model), config=config, run=run, threshold=threshold, meta=meta,
                      flip_lr=tta == "flip_lr", path=weights)


def as_model(model: str | os.PathLike | BrainModel) -> BrainModel:
    """A loaded model as it is, anything else through :func:`load_model`.

    What every function taking ``model`` does first, so that a chapter can pass
    a name or a folder, or a model it loaded once for many calls.

    Parameters
    ----------
    model : str, path-like or BrainModel
        A :class:`BrainModel`, or what :func:`load_model` takes.

    Returns
    -------
    BrainModel
        ``model`` itself when it is one (not copied).

    Examples
    --------
    >>> m = as_model("default")
    >>> m.name, as_model(m) is m
    ('default', True)
    """
    return model if isinstance(model, BrainModel) else load_model(model)


def postprocess_mask(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected component and fill its holes.

    A brain is one piece without holes: a stray blob in the neck or a dark
    ventricle left out are prediction errors, removed here.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        3D mask.

    Returns
    -------
    numpy.ndarray of bool
        Same shape; empty if the input is empty.

    Examples
    --------
    A 5x5x5 cube with a hole in its middle and a stray voxel in a corner:

    >>> mask = np.zeros((7, 7, 7), bool)
    >>> mask[1:6, 1:6, 1:6] = True
    >>> mask[3, 3, 3] = False
    >>> mask[0, 0, 6] = True
    >>> clean = postprocess_mask(mask)
    >>> int(clean.sum()), bool(clean[3, 3, 3]), bool(clean[0, 0, 6])
    (125, True, False)
    """
    if not mask.any():
        return mask.copy()
    # Work inside the bounding box: labelling and filling cost a fraction of the volume.
    first, last = bounding_box(mask)
    lo, hi = np.maximum(first - 1, 0), last + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    labels, n = ndimage.label(mask[box])
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        part = labels == sizes.argmax()
    else:
        part = labels > 0
    out = np.zeros_like(mask, dtype=bool)
    out[box] = ndimage.binary_fill_holes(part)
    return out


@dataclass
class Prediction:
    """What the network said about one scan.

    Attributes
    ----------
    mask : numpy.ndarray of bool
        The brain mask on the scan's RAS grid, shape ``scan.image.shape``.
    probability : numpy.ndarray of float32
        The mean of ``looks``, on the model grid.
    looks : numpy.ndarray of float32
        Each look's probabilities on the model grid, ``(looks, *grid.shape)``
        (two with a model's flip test-time augmentation).
    grid : ModelGrid
        The model grid placed on the scan.
    """

    mask: np.ndarray
    probability: np.ndarray
    looks: np.ndarray
    grid: ModelGrid


def predict(scan: Scan, model: BrainModel) -> Prediction:
    """Run the model on a scan: the mask and the probabilities it came from.

    :func:`predict_mask` with the network's looks kept, for :func:`assess`.
    """
    image, grid = prepare_input(scan, model.config)
    looks = model.looks(image)
    probability = looks[0] if len(looks) == 1 else 0.5 * (looks[0] + looks[1])
    mask = probability_to_mask(probability, grid, model.threshold)
    return Prediction(mask=mask, probability=probability, looks=looks, grid=grid)


@fill_doc
def predict_mask(scan: Scan, model: BrainModel, *,
                 return_prob: bool = False) -> np.ndarray | Prediction:
    """The brain mask of a scan, on the scan's RAS grid.

    Parameters
    ----------
    %(scan_model)s
    return_prob : bool
        Also return what the mask came from: the network's probabilities on the
        model grid and the grid itself (as DIPY's ``predict(..., return_prob=True)``).

    Returns
    -------
    numpy.ndarray of bool, or Prediction
        The mask, shape ``scan.image.shape`` (RAS order;
        :func:`skullstrip_lib.io.save_like` writes it in the file's own order).
        With ``return_prob``, a :class:`Prediction`: ``.mask``, ``.probability``
        (shape ``model.config.shape``), ``.looks`` and ``.grid``.

    Raises
    ------
    InvalidInputError
        The network's output is not a probability map (see
        :func:`check_probabilities`).

    Examples
    --------
    A bright ball, and a stand-in network (:class:`BrainModel`) that calls brain
    whatever is brighter than the head's mean: the mask comes back on the
    scan's own grid and finds the ball.

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.io import load_scan
    >>> from skullstrip_lib.metrics import dice
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> x, y, z = np.ogrid[:20, :24, :20]  # voxels of 4 mm
    >>> ball = 16 * ((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2) <= 28.0 ** 2  # radius 28 mm
    >>> path = Path(tempfile.mkdtemp()) / "ball.nii.gz"
    >>> nib.save(nib.Nifti1Image(np.where(ball, 100.0, 5.0).astype("float32"),
    ...                          np.diag([4.0, 4.0, 4.0, 1.0])), path)
    >>> scan = load_scan(path)
    >>> config = PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none")
    >>> bright = BrainModel("bright", config, run=lambda x: (x > 0).astype("float32"))
    >>> mask = predict_mask(scan, bright)
    >>> mask.shape, mask.dtype, round(dice(mask, ball), 3)
    ((20, 24, 20), dtype('bool'), 0.978)
    >>> result = predict_mask(scan, bright, return_prob=True)
    >>> result.probability.shape, bool((result.mask == mask).all())
    ((24, 32, 24), True)
    """
    result = predict(scan, model)
    return result if return_prob else result.mask


def probability_to_mask(probability: np.ndarray, grid: ModelGrid,
                        threshold: float = 0.5) -> np.ndarray:
    """The network's output on the model grid as a clean brain mask on the scan's grid.

    Linear interpolation back onto the scan's RAS grid (computed only inside
    the box where the probability reaches ``threshold``), the threshold, then
    :func:`postprocess_mask`. The last step of :func:`predict_mask`.

    Parameters
    ----------
    probability : numpy.ndarray of float32
        Shape ``grid.shape``, values in [0, 1].
    grid : ModelGrid
        The model grid placed on the scan.
    threshold : float
        Probability above which a voxel is brain.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``grid.source_shape`` (the scan's RAS grid).

    Examples
    --------
    A perfect network's output for a 3x3x3 box (the box taken to the model
    grid as fractions) comes back inside the box, less a layer that the two
    interpolations blur below 0.5:

    >>> from skullstrip_lib.preprocess import fit_model_grid, to_model_grid
    >>> box = np.zeros((9, 9, 9), bool)
    >>> box[3:6, 3:6, 3:6] = True
    >>> grid = fit_model_grid(np.eye(4), box.shape, box, shape=(8, 8, 8), spacing=1.0)
    >>> fractions = to_model_grid(box.astype("float32"), grid, order=1)
    >>> mask = probability_to_mask(fractions, grid)
    >>> int(box.sum()), int(mask.sum()), int((mask & box).sum())
    (27, 18, 18)
    """
    native = from_model_grid(probability, grid, order=1, support=threshold)
    return postprocess_mask(native >= threshold)


def scan_name(path: str | os.PathLike) -> str:
    """A scan's file name without its image ending.

    The endings are :data:`skullstrip_lib.io.SCAN_SUFFIXES`: ``.nii.gz``,
    ``.nii``, ``.mgz``, ``.mgh``, ``.hdr``, ``.img`` and ``.mnc``.

    Examples
    --------
    >>> scan_name("/data/sub-01_T1w.nii.gz"), scan_name("T1.mgz"), scan_name("brain.hdr")
    ('sub-01_T1w', 'T1', 'brain')
    """
    name = Path(path).name
    for suffix in SCAN_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


BRAIN_VOLUME_ML = (600.0, 2600.0)
"""Brain mask volumes an adult scan can give, in mL.

Adult brain masks (brain and the CSF around it, as NFBS's) measure about
1000-1800 mL; the bounds leave room for small or atrophied brains and for
large heads or a generous mask. A mask outside them is a failed prediction (a
wrong contrast, a scan that is not a head, a grid placed on the neck), not a
result; ``strip(..., check_volume=False)`` accepts it for children or animals.
"""
MIN_FIELD_OF_VIEW_MM = 80.0
"""A scan narrower than this along any voxel axis, in mm, cannot hold a whole head
(a newborn's is about 90 mm wide)."""
MIN_VOXELS_PER_AXIS = 16
"""Fewer voxels than this along an axis cannot show a head (16 at 8 mm: 128 mm)."""


MIN_HEAD_CONTRAST = 0.1
"""How much brighter than the air the brain must be, as a fraction of the scan's range.

The contrast is ``(median in the mask - median of the air) / (99th - 1st
percentile of the scan)``, the air being the voxels on the scan's border
outside the mask. Air is the darkest thing in every MR contrast the model was
trained on (T1, T2 and random remappings of them): synthetic heads measure
0.3-0.8, heads with negated intensities -0.22 to 0
(``benchmarks/bench_confidence.py``). Below this the scan is refused: the
model cannot read it. (An empty mask, or one that covers the
whole border, has no contrast to measure: the volume check judges it.)"""
UNCERTAIN_BAND = (0.1, 0.9)
"""Probabilities between these are *uncertain* voxels (see :func:`assess`)."""
CONFIDENCE_FLOOR = 0.7
"""A confidence below this flags the mask as a likely failure (see :func:`assess`)."""


def head_contrast(data: np.ndarray, mask: np.ndarray) -> float:
    """How much brighter the masked brain is than the air, as a fraction of the scan's range.

    Parameters
    ----------
    data : numpy.ndarray
        The scan, shape ``(X, Y, Z)``; NaN and inf are left out.
    mask : numpy.ndarray of bool
        The brain mask, same shape.

    Returns
    -------
    float
        ``(median in the mask - median of the border outside it) / (p99 - p1)``;
        NaN when the mask or the border is empty, 0 for a constant scan.

    Examples
    --------
    >>> head = np.zeros((40, 40, 40), np.float32); head[10:30, 10:30, 10:30] = 100
    >>> brain = head > 0
    >>> round(head_contrast(head, brain), 2), round(head_contrast(-head, brain), 2)
    (1.0, -1.0)
    """
    border = np.ones(data.shape, bool)
    border[2:-2, 2:-2, 2:-2] = False
    air = data[border & ~mask]
    brain = data[mask]
    air, brain = air[np.isfinite(air)], brain[np.isfinite(brain)]
    if not air.size or not brain.size:
        return float("nan")
    step = max(1, round((data.size / 2e6) ** (1 / 3)))
    sample = data[::step, ::step, ::step]
    lo, hi = np.percentile(sample[np.isfinite(sample)], [1, 99])
    if hi <= lo:
        return 0.0
    return float((np.median(brain) - np.median(air)) / (hi - lo))


def assess(scan: Scan, prediction: Prediction, threshold: float) -> dict:
    """How far a prediction can be trusted: the head check and a confidence, per scan.

    * ``contrast``: :func:`head_contrast`. Below :data:`MIN_HEAD_CONTRAST` the
      scan is not a head the model can read (inverted intensities, not MRI).
    * ``certainty``: ``1 - U / M``, where ``M`` is the mask's volume on the
      model grid (probability >= ``threshold``) and ``U`` the volume where the
      probability is in :data:`UNCERTAIN_BAND` (0.1-0.9); 0 at worst. A sure
      network is uncertain only in a thin shell at the brain's edge.
    * ``flip_dice``: the Dice overlap of the masks of the two looks (the scan
      and its mirror image), with a model's flip test-time augmentation, else
      None. A network that reads the head agrees with itself on a mirrored copy.
    * ``confidence``: the lower of the two (``certainty`` alone without
      flip); ``low_confidence`` when under :data:`CONFIDENCE_FLOOR` (0.7).

    The 45 benchmark family heads, which the bundled model segments with Dice
    0.94-0.98, score 0.82-0.93; negated heads 0.28-0.65
    (``benchmarks/bench_confidence.py``).

    Returns
    -------
    dict
        ``contrast``, ``certainty``, ``flip_dice`` (float or None),
        ``confidence`` (floats), ``low_confidence`` (bool).
    """
    p = prediction.probability
    core = int(np.count_nonzero(p >= threshold))
    lo, hi = UNCERTAIN_BAND
    uncertain = int(np.count_nonzero((p > lo) & (p < hi)))
    certainty = max(0.0, 1.0 - uncertain / core) if core else 0.0
    flip_dice = None
    if len(prediction.looks) == 2:
        a, b = prediction.looks[0] >= threshold, prediction.looks[1] >= threshold
        total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
        flip_dice = float(2.0 * np.count_nonzero(a & b) / total) if total else 0.0
    confidence = certainty if flip_dice is None else min(certainty, flip_dice)
    return {"contrast": head_contrast(scan.data, prediction.mask), "certainty": certainty,
            "flip_dice": flip_dice, "confidence": float(confidence),
            "low_confidence": bool(confidence < CONFIDENCE_FLOOR)}


def _check_head(path: Path, contrast: float) -> None:
    # NaN: nothing to compare (an empty mask, or one over the whole border), which the
    # volume check judges; a measured contrast below the floor is not a head it can read.
    if contrast < MIN_HEAD_CONTRAST:
        raise InvalidInputError(
            path, f"does not look like a head the model can read: the brain is not brighter "
                  f"than the air around the head (contrast {contrast:.2f}, at least "
                  f"{MIN_HEAD_CONTRAST:g} expected; inverted or negated intensities?); "
                  "nothing written (--no-head-check accepts it)")


def _output_dtype(scan: Scan) -> np.dtype:
    # Scaled integer files (scl_slope != 1) hold non-integer values: write floats then.
    # So do MINC files (integers scaled slice by slice), which go out as NIfTI anyway.
    if not scan.writes_own_format:
        return np.dtype(np.float32)
    slope, inter = scan.original_header.get_slope_inter()
    scaled = (slope is not None and slope != 1) or (inter is not None and inter != 0)
    return np.dtype(np.float32) if scaled else np.dtype(scan.original_header.get_data_dtype())


def _check_field_of_view(scan: Scan) -> None:
    """Refuse a scan too small, in mm or in voxels, to hold a head (one line naming it)."""
    shape = scan.image.shape
    extent = [n * z for n, z in zip(shape, scan.zooms, strict=True)]
    if min(extent) < MIN_FIELD_OF_VIEW_MM or min(shape) < MIN_VOXELS_PER_AXIS:
        size = " x ".join(f"{e:.0f}" for e in extent)
        voxels = "x".join(str(n) for n in shape)
        raise InvalidInputError(
            scan.path, f"cannot be a head: its field of view is {size} mm ({voxels} voxels), "
                       f"smaller than any head (at least {MIN_FIELD_OF_VIEW_MM:g} mm and "
                       f"{MIN_VOXELS_PER_AXIS} voxels along each axis)")


def _check_volume(path: Path, volume_ml: float) -> None:
    lo, hi = BRAIN_VOLUME_ML
    if volume_ml == 0:
        raise ImplausibleMaskError(path, volume_ml, "the mask is empty: no brain was found")
    if not lo <= volume_ml <= hi:
        side = "below" if volume_ml < lo else "above"
        raise ImplausibleMaskError(path, volume_ml, f"{side} the adult range of "
                                                    f"{lo:.0f}-{hi:.0f} mL")


def _brain(scan: Scan, mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # The scan's voxels inside the mask, 0 outside, built in the on-disk type: no
    # full-size float32 copy (or two, with rounding) on the way to the file.
    brain = np.zeros(scan.image.shape, dtype.newbyteorder("="))
    np.copyto(brain, scan.data, where=mask, casting="unsafe")
    return brain


OUTPUT_ENDINGS = ("_brainmask", "_brain", "_desc-brain_mask", "_desc-brain_T1w")
"""Name endings (before the image ending) of what ``strip`` writes, and of NFBS's masks:
a folder's files with these names are never taken for scans."""


def is_output_name(path: str | os.PathLike) -> bool:
    """True for a file named like a result of :func:`strip` (or an NFBS mask), not a scan.

    Examples
    --------
    >>> is_output_name("head_brainmask.nii.gz"), is_output_name("head_brain.mgz")
    (True, True)
    >>> is_output_name("head.nii.gz"), is_output_name("sub-1_desc-brain_mask.nii.gz")
    (False, True)
    """
    return scan_name(path).endswith(OUTPUT_ENDINGS)


def _expand(scans: Iterable[str | os.PathLike]) -> list[Path | BidsScan]:
    """The scans to process (BIDS scans as :class:`~skullstrip_lib.bids.BidsScan`)."""
    return _collect(scans)[0]


def _collect(scans: Iterable[str | os.PathLike]) -> tuple[list[Path | BidsScan], list[Path]]:
    """The scans to process (BIDS scans as :class:`BidsScan`), and the folders' skipped outputs."""
    out: list[Path | BidsScan] = []
    skipped: list[Path] = []
    for s in scans:
        p = Path(s)
        if p.is_dir() and is_bids_dataset(p):
            out.extend(find_t1w(p))
        elif p.is_dir():
            # An Analyze pair is one scan: list its header, not its .img as well.
            found = sorted(q for q in p.iterdir()
                           if q.name.endswith(SCAN_SUFFIXES) and not q.name.startswith(".")
                           and not (q.suffix == ".img" and q.with_suffix(".hdr").exists()))
            skipped.extend(q for q in found if is_output_name(q))
            found = [q for q in found if not is_output_name(q)]
            if not found:
                endings = ", ".join(SCAN_SUFFIXES)
                raise MissingFileError(f"{p}: no scans in this folder (no files ending in "
                                       f"{endings} that are not outputs, *_brainmask or "
                                       "*_brain; a BIDS dataset needs its "
                                       "dataset_description.json)")
            out.extend(found)
        else:
            out.append(p)
    roots = [x.root for x in out if isinstance(x, BidsScan)]
    if roots and len(roots) < len(out):
        raise SkullstripError(f"{roots[0]}: a BIDS dataset cannot be mixed with other scans "
                              "in one run (its results form a BIDS-derivatives dataset of "
                              "their own)")
    return out, skipped


def _plan(items: list[Path | BidsScan], out_dir: Path, *, qc: bool,
          overwrite: bool) -> list[dict]:
    """Every output path of the run, checked before any work (see :func:`strip`)."""
    bids_roots = sorted({x.root for x in items if isinstance(x, BidsScan)})
    if bids_roots:
        check_output_root(out_dir, bids_roots)
    targets = []
    for item in items:
        if isinstance(item, BidsScan):
            paths = derivative_paths(item, out_dir)
            t = {"scan": item.path, **{k: paths[k] for k in ("brainmask", "brain", "sidecar")},
                 "qc": paths["qc"] if qc else None, "bids": item}
        else:
            name = scan_name(item)
            # MINC (and whatever else nibabel only reads) gets NIfTI results: known from the
            # name, so existing outputs are found before any work.
            ext = image_suffix(item) if image_suffix(item) in WRITABLE_SUFFIXES else ".nii.gz"
            t = {"scan": item, "brainmask": out_dir / f"{name}_brainmask{ext}",
                 "brain": out_dir / f"{name}_brain{ext}",
                 "sidecar": out_dir / f"{name}_brainmask.json",
                 "qc": out_dir / f"{name}_qc.png" if qc else None, "bids": None}
        targets.append(t)
    # An output is never an input, nor another scan's output, whatever the flags.
    inputs = {file_key(f): t["scan"] for t in targets for f in image_files(t["scan"])}
    seen: dict[tuple, Path] = {}
    for t in targets:
        for key in OUTPUT_KEYS:
            for f in image_files(t[key]) if t[key] is not None else ():
                k = file_key(f)
                if k in inputs:
                    raise InvalidInputError(inputs[k], f"is also where the result {f.name} of "
                                                       f"{t['scan']} would be written; nothing "
                                                       "written (choose another output folder)")
                if k in seen:
                    raise SkullstripError(f"{f}: the results of {seen[k]} and {t['scan']} "
                                          "would both be written here; nothing written")
                seen[k] = t["scan"]
                if not overwrite and f.exists():
                    raise OutputExistsError(f"{f}: already exists (--overwrite, or "
                                            "overwrite=True, replaces it)")
    return targets


OUTPUT_KEYS = ("brainmask", "brain", "sidecar", "qc")


def _check_writable(out_dir: Path) -> None:
    """Refuse an output folder that cannot be written, before any prediction; make it."""
    check_writable(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SkullstripError(f"{out_dir}: cannot write results there "
                              f"({exc.strerror or exc})") from None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a job killed by a scheduler, ``kill``) raised as KeyboardInterrupt meanwhile.

    The default SIGTERM ends the process on the spot, between a scan's two
    outputs; as an exception it goes through the same clean-up as Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (delivered on leaving) while a scan's outputs are renamed."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _staging_name(final: Path) -> Path:
    suffix = image_suffix(final)
    stem = final.name[: -len(suffix)] if suffix else final.name
    return final.parent / f".{stem}.{uuid.uuid4().hex[:8]}.part{suffix}"


def _commit(staged: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Rename staged files to their final names, all or none, with signals held."""
    done: list[Path] = []
    with _signals_held():
        try:
            for tmp, final in staged:
                if not tmp.exists():  # an Analyze image without a .mat
                    if overwrite:
                        final.unlink(missing_ok=True)  # a stale .mat would override the affine
                    continue
                try:
                    move_into_place(tmp, final, overwrite=overwrite)
                except OSError as exc:
                    if isinstance(exc, SkullstripError):
                        raise
                    raise SkullstripError(f"{final}: cannot write it ({exc.strerror or exc}); "
                                          "nothing written for this scan") from None
                done.append(final)
        except BaseException:
            for f in done:
                f.unlink(missing_ok=True)
            raise


def _sidecar(t: dict, model: BrainModel, volume: float, quality: dict, scan: Scan) -> str:
    data = {
        "Type": "Brain",
        "Source": str(t["scan"]),
        "Model": model.name,
        "ModelFile": model.source,
        "Threshold": model.threshold,
        "TestTimeAugmentation": "flip_lr" if model.flip_lr else "none",
        "BrainVolume_mL": round(volume, 1),
        "Confidence": round(quality["confidence"], 4),
        "Certainty": round(quality["certainty"], 4),
        "FlipDice": None if quality["flip_dice"] is None else round(quality["flip_dice"], 4),
        "HeadContrast": None if np.isnan(quality["contrast"]) else round(quality["contrast"], 4),
        "LowConfidence": quality["low_confidence"],
        "NonFiniteVoxels": scan.n_nonfinite,
        "GeneratedBy": {"Name": "skullstrip", "Version": __version__},
    }
    return json.dumps(data, indent=1) + "\n"


def _write(t: dict, scan: Scan, mask: np.ndarray, qc: Callable[..., Path] | None,
           sidecar: str, overwrite: bool) -> None:
    """Write a scan's outputs: each to a hidden file beside it, then all renamed at once."""
    staged: list[tuple[Path, Path]] = []

    def stage(final: Path) -> Path:
        tmp = _staging_name(final)
        staged.extend(zip(image_files(tmp), image_files(final), strict=True))
        return tmp

    current = t["brainmask"]
    try:
        save_like(mask, scan, stage(t["brainmask"]), dtype=np.uint8)
        current = t["brain"]
        dtype = _output_dtype(scan)
        save_like(_brain(scan, mask, dtype), scan, stage(t["brain"]), dtype=dtype)
        if qc is not None:
            current = t["qc"]
            qc(scan.data, mask, stage(t["qc"]), zooms=scan.zooms, title=t["scan"].name)
        current = t["sidecar"]
        tmp = stage(t["sidecar"])
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(sidecar, encoding="utf-8")
        _commit(staged, overwrite)
    except OSError as exc:
        if isinstance(exc, SkullstripError):
            raise
        # The user's file, not the hidden one being written.
        raise SkullstripError(f"{current}: cannot write it ({exc.strerror or exc}); "
                              "nothing written for this scan") from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


@fill_doc
def strip(
    scans: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | BrainModel = "default",
    *,
    qc: Callable[..., Path] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    check_volume: bool = True,
    check_head: bool = True,
) -> list[dict]:
    """Skull-strip scans and write the mask and the brain in each scan's own space and format.

    Scans are read with :func:`skullstrip_lib.io.load_scan`: NIfTI, FreeSurfer
    MGH/MGZ, Analyze and MINC. Outputs are written in the input's format, on
    its grid (same shape, affine, orientation, header): ``T1.mgz`` gives
    ``T1_brainmask.mgz`` and ``T1_brain.mgz``, ``T1.hdr`` an Analyze pair, and
    ``T1_brainmask.json`` holds the model, threshold, volume and confidence
    (:func:`assess`). nibabel cannot write MINC, so a ``.mnc`` scan gets NIfTI
    outputs (``T1_brainmask.nii.gz``; the result's ``format_note`` says so).
    NaN or infinite voxels (at most half of the scan) count as background,
    with an :class:`~skullstrip_lib.errors.InputWarning`. Intensity offsets do
    not matter (see :func:`skullstrip_lib.preprocess.prepare_input`).

    A BIDS dataset (a folder with ``dataset_description.json``) gives a
    BIDS-derivatives dataset in ``out_dir``: for each
    ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``, ``..._desc-brain_mask.nii.gz``,
    ``..._desc-brain_T1w.nii.gz`` and the ``..._desc-brain_mask.json``
    sidecar (see :mod:`skullstrip_lib.bids`).

    Every output path is planned before any work: an output that would be an
    input (``a.nii.gz`` and ``a_brain.nii.gz`` given together), two scans'
    outputs on one file, an output folder inside a BIDS input, or an existing
    output without ``overwrite`` is refused, and the output folder is checked
    writable, before the model is loaded. A folder's files named like outputs
    (``*_brainmask``, ``*_brain``, ``*_desc-brain_*``) are not scans: they are
    skipped, with an :class:`~skullstrip_lib.errors.InputWarning`. A scan's
    outputs are written under hidden names and renamed together: an error,
    Ctrl-C or SIGTERM leaves all of them or none, and no hidden file.

    Parameters
    ----------
    scans : path-like or iterable of path-like
        Scan files, folders whose scans (files ending in
        :data:`skullstrip_lib.io.SCAN_SUFFIXES`) are all processed, or a BIDS
        dataset.
    out_dir : path-like
        Where ``<name>_brainmask<ext>`` (uint8), ``<name>_brain<ext>`` (the
        scan's data type, zero outside the brain) and ``<name>_brainmask.json``
        go, ``<ext>`` being the scan's own ending; with ``qc`` also
        ``<name>_qc.png``. For a BIDS dataset, the derivatives dataset.
    %(model)s
    qc : callable, optional
        Draws a quality-control figure per scan, called as
        ``qc(image, mask, path, zooms=..., title=...)`` with the RAS image and
        mask; :func:`skullstrip_lib.viz.qc_overlay` writes a three-plane
        overlay PNG (what ``skullstrip predict --qc`` uses).
    overwrite : bool
        Replace existing outputs (otherwise an error, before any work).
    %(progress)s
    check_volume : bool
        Refuse a mask that cannot be an adult brain: empty, or outside
        :data:`BRAIN_VOLUME_ML` (600-2600 mL). Pass False for children,
        animals or partial brains.
    check_head : bool
        Refuse a scan whose masked brain is not brighter than the air
        (:data:`MIN_HEAD_CONTRAST`): not a head the model can read.

    Returns
    -------
    list of dict
        Per scan: ``scan``, ``brainmask``, ``brain``, ``sidecar``, ``qc``
        (paths), ``volume_ml`` (brain volume), ``nonfinite`` (NaN/inf voxels
        counted as background), ``format_note`` (why the outputs are not in
        the scan's format, or None), and :func:`assess`'s ``contrast``,
        ``certainty``, ``flip_dice``, ``confidence`` and ``low_confidence``.

    Raises
    ------
    InvalidInputError
        A scan cannot be used (see :func:`skullstrip_lib.io.load_scan`), is
        too small to hold a head (:data:`MIN_FIELD_OF_VIEW_MM`,
        :data:`MIN_VOXELS_PER_AXIS`), is not a head the model can read, or is
        also an output; the network's output is not probabilities.
    ImplausibleMaskError
        With ``check_volume``, a mask that cannot be a brain. Nothing is
        written for that scan; earlier scans' outputs stay.
    SkullstripError
        Outputs that collide or exist, an output folder that cannot be written.

    Examples
    --------
    >>> strip("sub-01_T1w.nii.gz", "out/")  # doctest: +SKIP
    [{'scan': 'sub-01_T1w.nii.gz', 'brainmask': 'out/sub-01_T1w_brainmask.nii.gz', ...}]
    """
    import warnings


    items, skipped = _collect([scans] if isinstance(scans, (str, os.PathLike)) else scans)
    out_dir = Path(out_dir)
    targets = _plan(items, out_dir, qc=qc is not None, overwrite=overwrite)
    if skipped:
        names = ", ".join(p.name for p in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        warnings.warn(f"{skipped[0].parent}: skipped {len(skipped)} files named like results "
                      f"of skullstrip, not scans ({names})", InputWarning, stacklevel=2)
    # The folders this call makes: taken away again if it ends with nothing written in them.
    made = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    _check_writable(out_dir)
    try:
        return _strip_planned(targets, out_dir, model, qc=qc, overwrite=overwrite,
                              progress=progress, check_volume=check_volume,
                              check_head=check_head)
    except BaseException:
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


def _strip_planned(targets: list[dict], out_dir: Path, model: str | os.PathLike | BrainModel,
                   *, qc: Callable[..., Path] | None, overwrite: bool, progress: bool,
                   check_volume: bool, check_head: bool) -> list[dict]:
    """:func:`strip`'s prediction loop over outputs already planned and checked."""
    from tqdm.auto import tqdm

    model = as_model(model)

    results = []
    with _terminate_as_interrupt():
        for t in tqdm(targets, desc="strip", unit="scan",
                      disable=not progress or len(targets) < 2):
            # int16 stays int16 (half the memory); NaN outside the field of view is background.
            scan = load_scan(t["scan"], keep_dtype=True, allow_nonfinite=True)
            if t["bids"] is None and scan.output_suffix != image_suffix(t["brainmask"]):
                raise SkullstripError(f"{t['scan']}: cannot write "
                                      f"{image_suffix(t['brainmask'])} for a "
                                      f"{scan.original_class.__name__} scan")
            _check_field_of_view(scan)
            prediction = predict(scan, model)
            mask = prediction.mask
            volume = float(np.count_nonzero(mask) * np.prod(scan.zooms) / 1000.0)
            quality = assess(scan, prediction, model.threshold)
            # The volume first: a mask over (nearly) the whole volume leaves no air to
            # compare the brain with, so its head contrast means nothing.
            if check_volume:
                _check_volume(t["scan"], volume)
            if check_head:
                _check_head(t["scan"], quality["contrast"])
            if t["bids"] is not None and not (out_dir / DESCRIPTION).exists():
                description = dataset_description(model.name, model.threshold)
                atomic_write_text(out_dir / DESCRIPTION, json.dumps(description, indent=1) + "\n",
                                  overwrite=False)
            _write(t, scan, mask, qc, _sidecar(t, model, volume, quality, scan), overwrite)
            note = None if scan.writes_own_format or t["bids"] is not None else (
                f"{scan.original_class.__name__} cannot be written by nibabel: outputs are NIfTI")
            results.append({**{k: None if t[k] is None else str(t[k])
                               for k in ("scan", *OUTPUT_KEYS)},
                            "volume_ml": volume, "nonfinite": scan.n_nonfinite,
                            "format_note": note, **quality})
    return results
