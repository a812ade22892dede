"""Where and on what to score: test balls, three spaces, seen subjects, probability maps.

For chapters 8 and 9.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._docs import fill_doc
from ..errors import SkullstripError
from ..evaluate import predict_subjects, training_config, training_split, unseen_subjects
from ..inference import BrainModel, as_model, postprocess_mask, predict_mask
from ..io import Scan
from ..metrics import evaluate_masks
from ..preprocess import ModelGrid, from_model_grid, to_model_grid


def sphere(shape: Sequence[int], center: Sequence[float], radius: float,
           spacing: float | Sequence[float] = 1.0) -> np.ndarray:
    """A ball-shaped mask: the voxels whose centre lies within ``radius`` of ``center``.

    Toy masks with known sizes and positions, to see what each metric of
    :mod:`skullstrip_lib.metrics` reacts to (chapter 8) and to check a
    student's version of one (:mod:`~skullstrip_lib.lessons.checks`).

    Parameters
    ----------
    shape : sequence of int
        Array shape in voxels (any number of dimensions; 2D gives a disc).
    center : sequence of float
        Centre in voxel coordinates (one per axis; may fall between voxels).
    radius : float
        Radius in mm.
    spacing : float or sequence of float
        Voxel size in mm along each axis.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``shape``.

    Examples
    --------
    >>> int(sphere((5, 5), (2, 2), 1.0).sum())  # the centre and its 4 neighbours
    5
    >>> ball = sphere((64, 64, 64), (32, 32, 32), 20.0)
    >>> round(float(ball.sum()) / (4 / 3 * np.pi * 20**3), 2)  # close to the true volume
    1.0
    """
    shape = tuple(int(n) for n in shape)
    spacing = np.broadcast_to(np.asarray(spacing, dtype=float), (len(shape),))
    if np.any(spacing <= 0):
        raise ValueError(f"voxel spacing must be positive, got {tuple(spacing)}")
    center = np.broadcast_to(np.asarray(center, dtype=float), (len(shape),))
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, center, spacing, strict=True))
    return np.asarray(dist2 <= float(radius) ** 2)


@fill_doc
def evaluate_spaces(model: str | os.PathLike | BrainModel,
                    index: pd.DataFrame | str | os.PathLike, *,
                    split: str | None = "test", progress: bool = True) -> pd.DataFrame:
    """Score each subject three ways: in native space, on the model grid, and the grid's ceiling.

    One prediction per subject (:func:`skullstrip_lib.evaluate.predict_subjects`) gives

    * ``"native"``: the mask :func:`skullstrip_lib.inference.predict_mask`
      writes, against the original mask on the scan's own grid (what
      :func:`evaluate` reports);
    * ``"model grid"``: the network's output thresholded (and cleaned) on the
      model grid, against the reference mask resampled onto that grid (the
      fraction of each model voxel inside the mask, thresholded at 0.5, as
      training labels are made), with the model's voxel size;
    * ``"reference round trip"``: no network at all; the reference mask taken
      to the model grid as fractions and back by linear interpolation,
      thresholded at 0.5, against itself on the scan's grid. A network whose
      output were exactly those fractions would score this: what the grid
      alone costs.

    Parameters
    ----------
    %(subjects)s

    Returns
    -------
    scores : pandas.DataFrame
        The scores of :func:`skullstrip_lib.evaluate.evaluate` (``dice``, ``iou``,
        ``hd95_mm``, ...) with a ``space`` column: three rows per subject;
        distances and volumes in mm and mL on each space's own voxel size.

    Examples
    --------
    One bright ball and its mask, scored with a stand-in network that calls
    brain whatever is brighter than the head's mean:

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> ball, folder = sphere((20, 24, 20), (10, 12, 10), 28.0, 4.0), Path(tempfile.mkdtemp())
    >>> for name, data in {"t1w": np.where(ball, 90.0, 10.0), "brainmask": ball * 1.0}.items():
    ...     nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), folder / f"{name}.nii")
    >>> index = pd.DataFrame({"subject": ["s0"], "split": ["test"], "t1w": [folder / "t1w.nii"],
    ...                       "brainmask": [folder / "brainmask.nii"]})
    >>> config = PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none")
    >>> bright = BrainModel("bright", config, run=lambda x: (x > 0).astype("float32"))
    >>> evaluate_spaces(bright, index, progress=False)[["space", "dice"]].round(3)
                      space   dice
    0                native  0.978
    1            model grid  0.895
    2  reference round trip  0.995
    """
    model = as_model(model)
    rows = []
    for p in predict_subjects(model, index, split=split, progress=progress):
        fraction = to_model_grid(p.reference.astype(np.float32), p.grid, order=1)
        on_grid = postprocess_mask(p.probability >= model.threshold)
        round_trip = from_model_grid(fraction, p.grid, order=1, support=0.5) >= 0.5
        for space, pred, ref, spacing in (
            ("native", p.mask, p.reference, p.scan.zooms),
            ("model grid", on_grid, fraction >= 0.5, p.grid.spacing),
            ("reference round trip", round_trip, p.reference, p.scan.zooms),
        ):
            rows.append({"subject": p.subject, "space": space,
                         **evaluate_masks(pred, ref, spacing=spacing)})
    return pd.DataFrame(rows)


def training_heads(config="default", n: int = 2, *, split: str = "train", group: int = 0,
                   data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Write the very synthetic heads a training profile used, to score a model on them.

    A training profile that trains on synthetic heads
    (:data:`skullstrip_lib.train.TRAINING_PROFILES`) makes its heads from fixed seeds
    and splits them with a fixed seed, so they can be made again byte for
    byte. Scoring a model on its own training heads (``split="train"``) and
    on heads it never saw shows how much a score on seen data flatters.

    Parameters
    ----------
    config : str or TrainConfig
        A training profile name (``"default"`` made the bundled model) or a
        configuration.
    n : int
        How many heads (the first ``n`` of that split in that group).
    split : {"train", "val", "test"}
        Which split of the profile's subject-level split.
    group : int
        Which synthetic group (``config.synth[group]``: its geometry and contrast).
    data_dir : path-like, optional
        Heads go under ``<data dir>/sample/seen-<key>/NFBS_Dataset/`` (kept,
        reused on the next call); see :func:`skullstrip_lib.datasets.get_data_dir`.

    Returns
    -------
    pandas.DataFrame
        An index like :func:`skullstrip_lib.datasets.index_dataset`'s:
        ``subject``, ``t1w``, ``brainmask``, ``brain`` (str paths) and ``split``.

    Raises
    ------
    SkullstripError
        The configuration trains on an index (use that index's own split), the
        group does not exist, or the group has fewer than ``n`` heads in that split.
    """
    from ..datasets import get_data_dir, nfbs_filenames, split_subjects
    from ..io import atomic_save, settings_key
    from ..synth import make_head, subject_id
    from ..train import TrainConfig, resolve_config

    cfg = config if isinstance(config, TrainConfig) else resolve_config(config)
    if cfg.data is not None:
        raise SkullstripError("this configuration trains on an index, not on synthetic heads: "
                              "take the subjects of that index's own split")
    if not 0 <= group < len(cfg.synth):
        raise SkullstripError(f"no synthetic group {group} (the profile has {len(cfg.synth)})")
    ids = {g: [subject_id(i, cfg.synth_seed + g) for i in range(int(grp["n"]))]
           for g, grp in enumerate(cfg.synth)}
    # The same subject-level split as the training run's (one split over all groups).
    assigned = split_subjects([s for group_ids in ids.values() for s in group_ids],
                              seed=cfg.split_seed)
    chosen = [(i, s) for i, s in enumerate(ids[group]) if assigned[s] == split][:n]
    if len(chosen) < n:
        raise SkullstripError(f"group {group} has only {len(chosen)} heads in split {split!r}")
    kwargs = cfg.head_kwargs(group)
    seed = cfg.synth_seed + group
    key = settings_key(seed, kwargs)
    root = get_data_dir(data_dir) / "sample" / f"seen-{key}" / "NFBS_Dataset"
    rows = []
    for i, sid in chosen:
        paths = {k: root / sid / name for k, name in nfbs_filenames(sid).items()}
        if not all(p.is_file() for p in paths.values()):
            head = make_head(seed, i, **kwargs)
            for k, p in paths.items():
                atomic_save(getattr(head, k), p, overwrite=True)
        rows.append({"subject": sid, **{k: str(p) for k, p in paths.items()}, "split": split})
    return pd.DataFrame(rows, columns=["subject", "t1w", "brainmask", "brain", "split"])


def seen_subjects(model: str | os.PathLike | BrainModel, n: int = 2, *,
                  data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Subjects a model was trained on, as an index, to score it on data it has seen.

    Parameters
    ----------
    model : str, path-like or BrainModel
        See :func:`training_config`.
    n : int
        How many subjects.
    data_dir : path-like, optional
        Where synthetic training heads are written again (see :func:`training_heads`).

    Returns
    -------
    pandas.DataFrame
        An index (``subject``, ``t1w``, ``brainmask``, ``brain``, ``split``) of
        ``n`` subjects of the training split: from the model's own index when it
        was trained on one (e.g. NFBS), otherwise its synthetic heads made again
        byte for byte (:func:`training_heads`, first group).

    Examples
    --------
    The bundled model was trained on synthetic heads: the first of them, made
    again (one full-size head, seconds):

    >>> import tempfile
    >>> seen_subjects("default", 1, data_dir=tempfile.mkdtemp())[["subject", "split"]]
         subject  split
    0  A91000000  train
    """
    from ..datasets import index_dataset, read_index

    config = training_config(model)
    if config.data is None:
        return training_heads(config, n, split="train", data_dir=data_dir)
    source = Path(config.data)
    if not source.exists():
        raise SkullstripError(f"{source}: the model's training data is not here")
    index = (index_dataset(source, seed=config.split_seed) if source.is_dir()
             else read_index(source))
    split = training_split(model)  # the split stored with the model, not one made again
    trained = index["subject"].astype(str).map(split) == "train"
    return index[trained].head(n).assign(split="train").reset_index(drop=True)


@fill_doc
def held_out_subjects(model: str | os.PathLike | BrainModel, profile: str = "sample",
                      n: int | None = None, *, data_dir: str | os.PathLike | None = None,
                      progress: bool = False) -> pd.DataFrame:
    """Subjects a chapter may score a model on: ones it never trained on, all marked ``"test"``.

    * Sample profile: the sample heads (:data:`~skullstrip_lib.lessons.notebook.SAMPLE_SEED`,
      a seed no training profile uses), ``n`` of them (4 by default).
    * Full profile, a model trained on an NFBS index (chapter 7): the
      subjects of NFBS outside its own stored split's training and validation
      sets (:func:`skullstrip_lib.evaluate.unseen_subjects`). The subjects it
      was trained with are looked at first (chapter 7 fetched them: nothing
      new is downloaded); the rest of NFBS only when they are not enough.
    * Full profile, a model with no stored split (the bundled model, trained
      on synthetic heads): every NFBS subject is unseen; the first ``n``.

    Parameters
    ----------
    model : str, path-like or BrainModel
        The model to be scored.
    profile : {"sample", "full"}
        See :func:`~skullstrip_lib.lessons.notebook.resolve_profile`.
    n : int or None
        How many subjects; None for all there are (4 sample heads).
    %(data_dir)s
    progress : bool
        Progress bars for downloads and synthetic heads.

    Returns
    -------
    pandas.DataFrame
        An index (``subject``, ``t1w``, ``brainmask``, ``brain``, ``split``).

    Examples
    --------
    The sample profile: one sample head (full size, a few seconds), a seed the
    bundled model never trained on:

    >>> import tempfile
    >>> held_out_subjects("default", "sample", 1, data_dir=tempfile.mkdtemp())[["subject", "split"]]
         subject split
    0  A90000000  test
    """
    from ..errors import MissingFileError
    from .notebook import load_subjects, resolve_profile

    if resolve_profile(profile) == "sample":
        index = load_subjects("sample", n or 4, data_dir=data_dir, progress=progress)
        return index.assign(split="test")
    try:
        # A model trained on synthetic heads (the bundled one) never saw an NFBS subject:
        # its split names synthetic heads.
        split = None if training_config(model).data is None else training_split(model)
    except MissingFileError:  # no split stored with the model: every NFBS subject is unseen
        split = None
    if split is None:
        return load_subjects("full", n, data_dir=data_dir, progress=progress).assign(split="test")
    held = unseen_subjects(load_subjects("full", len(split), data_dir=data_dir,
                                         progress=progress), model)
    if n is None or len(held) < n:
        held = unseen_subjects(load_subjects("full", None, data_dir=data_dir,
                                             progress=progress), model)
    return held if n is None else held.head(n).reset_index(drop=True)


@fill_doc
def probability_map(scan: Scan, model: BrainModel) -> tuple[np.ndarray, ModelGrid]:
    """The network's brain probability brought back onto the scan's grid, before any cleaning.

    :func:`predict_mask` thresholds this map at ``model.threshold`` and then
    cleans it with :func:`postprocess_mask`; looking at the map itself shows
    where the network hesitates (values near 0.5) and what the cleaning removes.

    Parameters
    ----------
    %(scan_model)s

    Returns
    -------
    probability : numpy.ndarray of float32
        Shape ``scan.image.shape`` (RAS order), values in [0, 1]; linear
        interpolation of the model-grid output, 0 outside the model grid.
    grid : ModelGrid
        The model grid placed on this scan.

    Examples
    --------
    A network that answers 0.5 everywhere, on a scan its grid covers whole:

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.io import load_scan
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> path = Path(tempfile.mkdtemp()) / "box.nii"
    >>> box = np.pad(np.full((8, 8, 8), 50.0), 4)  # 16^3 voxels of 3 mm
    >>> nib.save(nib.Nifti1Image(box, np.diag([3.0, 3.0, 3.0, 1.0])), path)
    >>> unsure = BrainModel("unsure", PreprocessConfig(shape=(16, 16, 16), spacing=3.0, n4="none"),
    ...                     run=lambda x: np.full_like(x, 0.5))
    >>> probability, grid = probability_map(load_scan(path), unsure)
    >>> probability.shape, float(probability.min()), float(probability.max())
    ((16, 16, 16), 0.5, 0.5)
    """
    result = predict_mask(scan, model, return_prob=True)
    return from_model_grid(result.probability, result.grid, order=1), result.grid
