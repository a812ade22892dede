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
:func:`strip` wraps it for files: for each scan it writes
``<name>_brainmask.nii.gz`` and ``<name>_brain.nii.gz`` with the scan's own
shape, affine, qform/sform and data type.
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

from .errors import InvalidInputError, MissingFileError, SkullstripError
from .io import Scan, load_scan, save_like
from .preprocess import (
    ModelGrid,
    PreprocessConfig,
    bounding_box,
    from_model_grid,
    prepare_input,
)

__all__ = [
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
    """

    name: str
    config: PreprocessConfig
    run: Callable[[np.ndarray], np.ndarray]
    threshold: float = 0.5
    meta: dict = field(default_factory=dict)

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Brain probability for one volume on the model grid, shape ``config.shape``."""
        batch = np.ascontiguousarray(image, dtype=np.float32)[None, ..., None]
        return np.asarray(self.run(batch), dtype=np.float32)[0, ..., 0]


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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    return BrainModel(name=str(model), config=config, run=run,
                      threshold=float(meta.get("threshold", 0.5)), meta=meta)


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
    """A scan's file name without ``.nii`` or ``.nii.gz``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _expand(scans: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for s in scans:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.name.endswith((".nii", ".nii.gz")) and not q.name.startswith("."))
            if not found:
                raise MissingFileError(f"{p}: no .nii or .nii.gz scans in this folder")
            out.extend(found)
        else:
            out.append(p)
    return out


def _output_dtype(scan: Scan) -> np.dtype:
    # Scaled integer files (scl_slope != 1) hold non-integer values: write floats then.
    slope, inter = scan.original_header.get_slope_inter()
    scaled = (slope is not None and slope != 1) or (inter is not None and inter != 0)
    return np.dtype(np.float32) if scaled else scan.original_header.get_data_dtype()


def strip(
    scans: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | BrainModel = "default",
    *,
    qc: Callable[..., Path] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Skull-strip scans and write the mask and the brain in each scan's own space.

    Parameters
    ----------
    scans : path-like or iterable of path-like
        NIfTI files, or folders whose ``.nii``/``.nii.gz`` files are all processed.
    out_dir : path-like
        Where ``<name>_brainmask.nii.gz`` (uint8) and ``<name>_brain.nii.gz``
        (the scan's data type, zero outside the brain) go; with ``qc`` also
        ``<name>_qc.png``.
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

    Returns
    -------
    list of dict
        Per scan: ``scan``, ``brainmask``, ``brain``, ``qc`` (paths), and
        ``volume_ml`` (brain volume).

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
        t = {"scan": p, "brainmask": out_dir / f"{name}_brainmask.nii.gz",
             "brain": out_dir / f"{name}_brain.nii.gz",
             "qc": out_dir / f"{name}_qc.png" if qc is not None else None}
        if not overwrite:
            for key in ("brainmask", "brain", "qc"):
                if t[key] is not None and t[key].exists():
                    raise SkullstripError(f"{t[key]}: already exists (use overwrite to replace it)")
        targets.append(t)
    names = [t["brainmask"] for t in targets]
    if len(set(names)) != len(names):
        raise SkullstripError("two scans have the same file name; their outputs would collide")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)

    results = []
    for t in tqdm(targets, desc="strip", unit="scan", disable=not progress or len(targets) < 2):
        scan = load_scan(t["scan"])
        mask, _, _ = predict_mask(scan, model)
        written = []
        try:
            written.append(save_like(mask, scan, t["brainmask"], dtype=np.uint8,
                                     overwrite=overwrite))
            written.append(save_like(np.where(mask, scan.data, 0), scan, t["brain"],
                                     dtype=_output_dtype(scan), overwrite=overwrite))
            if qc is not None:
                written.append(qc(scan.data, mask, t["qc"], zooms=scan.zooms,
                                  title=t["scan"].name))
        except BaseException:
            for w in written:  # all of a scan's outputs, or none
                w.unlink(missing_ok=True)
            raise
        volume = float(mask.sum() * np.prod(scan.zooms) / 1000.0)
        results.append({**{k: None if v is None else str(v) for k, v in t.items()},
                        "volume_ml": volume})
    return results


