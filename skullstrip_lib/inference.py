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
checking that the scan can hold a head and that the mask can be a brain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import ImplausibleMaskError, InvalidInputError, MissingFileError, SkullstripError
from .io import (
    SCAN_SUFFIXES,
    WRITABLE_SUFFIXES,
    Scan,
    image_files,
    image_suffix,
    load_scan,
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
    "MIN_FIELD_OF_VIEW_MM",
    "MIN_VOXELS_PER_AXIS",
    "BrainModel",
    "bundled_models",
    "load_model",
    "postprocess_mask",
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
    """

    name: str
    config: PreprocessConfig
    run: Callable[[np.ndarray], np.ndarray]
    threshold: float = 0.5
    meta: dict = field(default_factory=dict)
    flip_lr: bool = False

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Brain probability for one volume on the model grid, shape ``config.shape``.

        With :attr:`flip_lr`, the volume and its mirror (axis 0, R-L on the
        RAS model grid) go through the network as one batch of two.
        """
        volume = np.ascontiguousarray(image, dtype=np.float32)
        if not self.flip_lr:
            return np.asarray(self.run(volume[None, ..., None]), dtype=np.float32)[0, ..., 0]
        batch = np.stack([volume, volume[::-1]])[..., None]
        out = np.asarray(self.run(batch), dtype=np.float32)[..., 0]
        return 0.5 * (out[0] + out[1][::-1])


def bundled_models() -> dict[str, Path]:
    """The models shipped inside the package: name -> folder."""
    root = resources.files("skullstrip_lib") / "models"
    found = {}
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and (entry / MODEL_FILE).is_file():
                found[entry.name] = Path(str(entry))
    return dict(sorted(found.items()))


def _config_from_meta(meta: dict, where: Path) -> PreprocessConfig:
    try:
        raw = meta["preprocess"]
        return PreprocessConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError, SkullstripError) as exc:
        raise InvalidInputError(where, f"model description lacks valid 'preprocess' ({exc})") \
            from None


def _onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0][:200]
        raise InvalidInputError(path, f"not an ONNX model ({first})") from None
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


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
        The file is not a model, or its description is missing or invalid.
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
    if weights.suffix == ".onnx":
        run = _onnx_runner(weights)
    elif weights.suffix == ".keras":
        run = _keras_runner(weights, device)
    else:
        raise InvalidInputError(weights, "expected a .onnx or .keras model file")
    tta = meta.get("tta", "none")
    if tta not in TTA_MODES:
        raise InvalidInputError(meta_path, f"unknown test-time augmentation {tta!r} "
                                f"(expected one of {', '.join(TTA_MODES)})")
    return BrainModel(name=str(model), config=config, run=run,
                      threshold=float(meta.get("threshold", 0.5)), meta=meta,
                      flip_lr=tta == "flip_lr")


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


def predict_mask(scan: Scan, model: BrainModel) -> tuple[np.ndarray, np.ndarray, ModelGrid]:
    """The brain mask of a scan, on the scan's RAS grid.

    Parameters
    ----------
    scan : Scan
        From :func:`skullstrip_lib.io.load_scan`.
    model : BrainModel
        From :func:`load_model`.

    Returns
    -------
    mask : numpy.ndarray of bool
        Shape ``scan.image.shape`` (RAS order; :func:`skullstrip_lib.io.save_like`
        writes it in the file's own order).
    probability : numpy.ndarray of float32
        The network's output on the model grid, shape ``model.config.shape``.
    grid : ModelGrid
        The model grid placed on this scan.
    """
    image, grid = prepare_input(scan, model.config)
    probability = model.probabilities(image)
    return probability_to_mask(probability, grid, model.threshold), probability, grid


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


def _expand(scans: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for s in scans:
        p = Path(s)
        if p.is_dir():
            # An Analyze pair is one scan: list its header, not its .img as well.
            found = sorted(q for q in p.iterdir()
                           if q.name.endswith(SCAN_SUFFIXES) and not q.name.startswith(".")
                           and not (q.suffix == ".img" and q.with_suffix(".hdr").exists()))
            if not found:
                endings = ", ".join(SCAN_SUFFIXES)
                raise MissingFileError(f"{p}: no scans in this folder (no files ending in "
                                       f"{endings})")
            out.extend(found)
        else:
            out.append(p)
    return out


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


def strip(
    scans: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | BrainModel = "default",
    *,
    qc: Callable[..., Path] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    check_volume: bool = True,
) -> list[dict]:
    """Skull-strip scans and write the mask and the brain in each scan's own space and format.

    Scans are read with :func:`skullstrip_lib.io.load_scan`: NIfTI, FreeSurfer
    MGH/MGZ, Analyze and MINC. Outputs are written in the input's format, on
    its grid (same shape, affine, orientation, header): ``T1.mgz`` gives
    ``T1_brainmask.mgz`` and ``T1_brain.mgz``, ``T1.hdr`` an Analyze pair.
    nibabel cannot write MINC, so a ``.mnc`` scan gets NIfTI outputs
    (``T1_brainmask.nii.gz``; the result's ``format_note`` says so). NaN or
    infinite voxels (at most half of the scan) count as background, with an
    :class:`~skullstrip_lib.errors.InputWarning`. Intensity offsets do not
    matter (see :func:`skullstrip_lib.preprocess.prepare_input`).

    Parameters
    ----------
    scans : path-like or iterable of path-like
        Scan files, or folders whose scans (files ending in
        :data:`skullstrip_lib.io.SCAN_SUFFIXES`) are all processed.
    out_dir : path-like
        Where ``<name>_brainmask<ext>`` (uint8) and ``<name>_brain<ext>`` (the
        scan's data type, zero outside the brain) go, ``<ext>`` being the
        scan's own ending; with ``qc`` also ``<name>_qc.png``.
    model : str, path-like or BrainModel
        See :func:`load_model`; the bundled default by default.
    qc : callable, optional
        Draws a quality-control figure per scan, called as
        ``qc(image, mask, path, zooms=..., title=...)`` with the RAS image and
        mask; :func:`skullstrip_lib.viz.qc_overlay` writes a three-plane
        overlay PNG (what ``skullstrip predict --qc`` uses).
    overwrite : bool
        Replace existing outputs (otherwise an error, before any work).
    progress : bool
        Show a progress bar.
    check_volume : bool
        Refuse a mask that cannot be an adult brain: empty, or outside
        :data:`BRAIN_VOLUME_ML` (600-2600 mL). Pass False for children,
        animals or partial brains.

    Returns
    -------
    list of dict
        Per scan: ``scan``, ``brainmask``, ``brain``, ``qc`` (paths),
        ``volume_ml`` (brain volume), ``nonfinite`` (NaN/inf voxels counted as
        background) and ``format_note`` (why the outputs are not in the scan's
        format, or None).

    Raises
    ------
    InvalidInputError
        A scan cannot be used (see :func:`skullstrip_lib.io.load_scan`), or is
        too small to hold a head (:data:`MIN_FIELD_OF_VIEW_MM`,
        :data:`MIN_VOXELS_PER_AXIS`).
    ImplausibleMaskError
        With ``check_volume``, a mask that cannot be a brain. Nothing is
        written for that scan; earlier scans' outputs stay.

    Examples
    --------
    >>> strip("sub-01_T1w.nii.gz", "out/")  # doctest: +SKIP
    [{'scan': 'sub-01_T1w.nii.gz', 'brainmask': 'out/sub-01_T1w_brainmask.nii.gz', ...}]
    """
    from tqdm.auto import tqdm

    paths = _expand([scans] if isinstance(scans, (str, os.PathLike)) else scans)
    out_dir = Path(out_dir)
    targets = []
    for p in paths:
        name = scan_name(p)
        # MINC (and whatever else nibabel only reads) gets NIfTI results: known from the
        # name, so existing outputs are found before any work.
        ext = image_suffix(p) if image_suffix(p) in WRITABLE_SUFFIXES else ".nii.gz"
        t = {"scan": p, "brainmask": out_dir / f"{name}_brainmask{ext}",
             "brain": out_dir / f"{name}_brain{ext}",
             "qc": out_dir / f"{name}_qc.png" if qc is not None else None}
        if not overwrite:
            for key in ("brainmask", "brain", "qc"):
                for f in image_files(t[key]) if t[key] is not None else ():
                    if f.exists():
                        raise SkullstripError(f"{f}: already exists (use overwrite to replace it)")
        targets.append(t)
    names = [scan_name(t["brainmask"]) for t in targets]
    if len(set(names)) != len(names):
        raise SkullstripError("two scans have the same file name; their outputs would collide")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)

    results = []
    for t in tqdm(targets, desc="strip", unit="scan", disable=not progress or len(targets) < 2):
        # int16 stays int16 (half the memory); NaN outside the field of view is background.
        scan = load_scan(t["scan"], keep_dtype=True, allow_nonfinite=True)
        if scan.output_suffix != image_suffix(t["brainmask"]):  # a format nibabel cannot write
            raise SkullstripError(f"{t['scan']}: cannot write {image_suffix(t['brainmask'])} "
                                  f"for a {scan.original_class.__name__} scan")
        _check_field_of_view(scan)
        mask, _, _ = predict_mask(scan, model)
        volume = float(np.count_nonzero(mask) * np.prod(scan.zooms) / 1000.0)
        if check_volume:
            _check_volume(t["scan"], volume)
        written = []
        try:
            written.extend(image_files(save_like(mask, scan, t["brainmask"], dtype=np.uint8,
                                                 overwrite=overwrite)))
            dtype = _output_dtype(scan)
            written.extend(image_files(save_like(_brain(scan, mask, dtype), scan, t["brain"],
                                                 dtype=dtype, overwrite=overwrite)))
            if qc is not None:
                written.append(qc(scan.data, mask, t["qc"], zooms=scan.zooms,
                                  title=t["scan"].name))
        except BaseException:
            for w in written:  # all of a scan's outputs, or none
                w.unlink(missing_ok=True)
            raise
        note = None if scan.writes_own_format else (
            f"{scan.original_class.__name__} cannot be written by nibabel: outputs are NIfTI")
        results.append({**{k: None if v is None else str(v) for k, v in t.items()},
                        "volume_ml": volume, "nonfinite": scan.n_nonfinite,
                        "format_note": note})
    return results
