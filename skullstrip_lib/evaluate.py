"""Evaluation on held-out subjects, in each scan's native space.

Scores are computed where they matter: on the scan's own voxel grid, against
the original expert mask — not on the 2 mm model grid, where resampling would
flatter (or blur) the result. Each subject goes through exactly what
``skullstrip predict`` does (:func:`skullstrip_lib.inference.predict_mask`),
in one loop, :func:`predict_subjects`, that every score and figure shares.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._docs import fill_doc
from .errors import SkullstripError
from .inference import META_FILE, BrainModel, as_model, predict_mask, probability_to_mask
from .io import Scan, atomic_write_text, load_mask, load_scan
from .metrics import dice, evaluate_masks
from .preprocess import ModelGrid

__all__ = [
    "CALIBRATION_THRESHOLDS",
    "SubjectPrediction",
    "calibrate_threshold",
    "evaluate",
    "predict_subjects",
    "select_split",
    "summarize",
    "training_config",
    "training_split",
    "unseen_subjects",
    "worst_cases",
]


def select_split(index: pd.DataFrame | str | os.PathLike, split: str | None) -> pd.DataFrame:
    """The rows of an index (or its CSV) in one split; all rows for ``split=None``.

    Raises
    ------
    SkullstripError
        No subject of the index is in that split.

    Examples
    --------
    >>> index = pd.DataFrame({"subject": ["a", "b", "c"], "split": ["train", "test", "test"]})
    >>> list(select_split(index, "test")["subject"])
    ['b', 'c']
    >>> select_split(index, "val")
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.SkullstripError: the index has no subject in split 'val'
    """
    from .datasets import read_index

    if not isinstance(index, pd.DataFrame):
        index = read_index(index)
    if split is not None:
        index = index[index["split"] == split]
        if index.empty:
            raise SkullstripError(f"the index has no subject in split {split!r}")
    return index


class SubjectPrediction(NamedTuple):
    """One subject as :func:`predict_subjects` yields it."""

    subject: str
    scan: Scan
    reference: np.ndarray
    """Expert mask on the scan's RAS grid (bool)."""
    mask: np.ndarray
    """Predicted mask on the scan's RAS grid (bool), as ``skullstrip predict`` writes it."""
    probability: np.ndarray
    """The network's output on the model grid (float32, shape ``grid.shape``)."""
    grid: ModelGrid


@fill_doc
def predict_subjects(model: str | os.PathLike | BrainModel, index: pd.DataFrame | str | os.PathLike,
                     *, split: str | None = "test", progress: bool = True
                     ) -> Iterator[SubjectPrediction]:
    """Load and predict the subjects of an index one at a time.

    Parameters
    ----------
    %(subjects)s

    Yields
    ------
    SubjectPrediction
        In the index's order; one subject's volumes in memory at a time.
    """
    from tqdm.auto import tqdm

    index = select_split(index, split)
    model = as_model(model)
    for row in tqdm(list(index.itertuples(index=False)), desc="evaluate", unit="subject",
                    disable=not progress):
        scan = load_scan(row.t1w)
        reference = load_mask(row.brainmask, scan)
        result = predict_mask(scan, model, return_prob=True)
        yield SubjectPrediction(row.subject, scan, reference, result.mask, result.probability,
                                result.grid)


@fill_doc
def evaluate(model: str | os.PathLike | BrainModel, index: pd.DataFrame | str | os.PathLike, *,
             split: str | None = "test", progress: bool = True) -> pd.DataFrame:
    """Score a model on the subjects of an index, in native space.

    Each subject is predicted as :func:`predict_subjects` does it.

    Parameters
    ----------
    %(subjects)s

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject``, ``dice``, ``iou``, ``hd95_mm``,
        ``volume_diff_ml``, ``volume_ref_ml``, ``volume_diff_pct``.

    Examples
    --------
    Two bright balls with their masks, and a stand-in network (see
    :class:`~skullstrip_lib.inference.BrainModel`) that calls brain whatever is
    brighter than the head's mean:

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.inference import BrainModel
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> x, y, z = np.ogrid[:20, :24, :20]  # voxels of 4 mm
    >>> tmp, rows = Path(tempfile.mkdtemp()), []
    >>> for i, radius in enumerate((28.0, 24.0)):  # mm
    ...     ball = 16 * ((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2) <= radius ** 2
    ...     files = {"t1w": tmp / f"s{i}.nii.gz", "brainmask": tmp / f"m{i}.nii.gz"}
    ...     for path, data in zip(files.values(), (np.where(ball, 100.0, 5.0), ball * 1.0)):
    ...         nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), path)
    ...     rows.append({"subject": f"s{i}", "split": "test", **files})
    >>> bright = BrainModel("bright", PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none"),
    ...                     run=lambda x: (x > 0).astype("float32"))
    >>> scores = evaluate(bright, pd.DataFrame(rows), progress=False)
    >>> scores[["subject", "dice", "hd95_mm"]].round(3)
      subject   dice  hd95_mm
    0      s0  0.978      4.0
    1      s1  0.927      4.0
    """
    return pd.DataFrame([
        {"subject": p.subject, **evaluate_masks(p.mask, p.reference, spacing=p.scan.zooms)}
        for p in predict_subjects(model, index, split=split, progress=progress)])


@fill_doc
def worst_cases(
    model: str | os.PathLike | BrainModel,
    index: pd.DataFrame | str | os.PathLike,
    scores: pd.DataFrame,
    *,
    n: int = 3,
) -> list[SubjectPrediction]:
    """The ``n`` lowest-Dice subjects of a scoring, predicted again, lowest first.

    :func:`evaluate` keeps only the numbers; to see *where* the worst masks
    go wrong (:func:`skullstrip_lib.viz.worst_cases_figure`) their volumes are
    needed again. Only these ``n`` subjects are loaded and predicted, all of
    them kept in memory.

    Parameters
    ----------
    %(model)s
    index : pandas.DataFrame or path-like
        The index (or its CSV) the scores were computed on.
    scores : pandas.DataFrame
        From :func:`evaluate` (``subject`` and ``dice`` are used).
    n : int
        How many subjects (>= 1); fewer when there are fewer scores.

    Returns
    -------
    list of SubjectPrediction
        In increasing order of Dice.

    Examples
    --------
    The scores of two subjects, of which only the worse, a bright ball, is on
    disk: it alone is loaded and predicted, here by a stand-in network (as in
    :func:`evaluate`).

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> x, y, z = np.ogrid[:20, :24, :20]  # voxels of 4 mm
    >>> ball = 16 * ((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2) <= 24.0 ** 2
    >>> scan, mask = Path(tempfile.mkdtemp()) / "t1w.nii", Path(tempfile.mkdtemp()) / "mask.nii"
    >>> nib.save(nib.Nifti1Image(np.where(ball, 100.0, 5.0), np.diag([4.0, 4.0, 4.0, 1.0])), scan)
    >>> nib.save(nib.Nifti1Image(ball * 1.0, np.diag([4.0, 4.0, 4.0, 1.0])), mask)
    >>> index = pd.DataFrame({"subject": ["s0", "s1"], "t1w": ["gone.nii", scan],
    ...                       "brainmask": ["gone.nii", mask]})
    >>> scores = pd.DataFrame({"subject": ["s0", "s1"], "dice": [0.978, 0.927]})
    >>> bright = BrainModel("bright", PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none"),
    ...                     run=lambda x: (x > 0).astype("float32"))
    >>> [case] = worst_cases(bright, index, scores, n=1)
    >>> case.subject, round(dice(case.mask, case.reference), 3)
    ('s1', 0.927)
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    worst = scores.nsmallest(n, "dice")["subject"].astype(str)
    index = select_split(index, None)
    rows = index.set_index(index["subject"].astype(str)).loc[worst]
    return list(predict_subjects(model, rows.reset_index(drop=True), split=None, progress=False))


CALIBRATION_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.20, 0.751, 0.05))
"""Thresholds :func:`calibrate_threshold` tries."""


@fill_doc
def calibrate_threshold(
    model: str | os.PathLike | BrainModel,
    index: pd.DataFrame | str | os.PathLike,
    *,
    split: str = "val",
    thresholds: tuple[float, ...] = CALIBRATION_THRESHOLDS,
    write: bool = False,
    progress: bool = True,
) -> tuple[float, pd.DataFrame]:
    """The probability threshold that gives the best native-space Dice on held-out heads.

    A network trained with a Dice loss is not calibrated: its 0.5 contour need
    not be where the reference surface is. Each subject of ``split`` is
    predicted once; its probability map is then taken back to the scan's grid
    and cut at every threshold, exactly as :func:`~skullstrip_lib.inference.predict_mask`
    does, and scored against the reference. Calibrate on the validation
    split, never on the test heads or on a benchmark that reports the model.

    Parameters
    ----------
    model : str, path-like or BrainModel
        See :func:`skullstrip_lib.inference.load_model`; a folder when ``write``.
    index : pandas.DataFrame or path-like
        The index the model was trained from (its ``split`` column is used).
    split : str
        Subjects to calibrate on.
    thresholds : tuple of float
        Candidates, in (0, 1).
    write : bool
        Store the chosen threshold (and this table) in the model folder's
        ``model.json``.
    %(progress)s

    Returns
    -------
    threshold : float
        The candidate with the highest mean Dice (ties: the one closest to 0.5).
    table : pandas.DataFrame
        One row per threshold: ``threshold``, ``dice_mean``, ``dice_min``.

    Examples
    --------
    One validation head, a bright ball, and a soft stand-in network: the
    logistic function of the normalised intensity.

    >>> import tempfile
    >>> import nibabel as nib
    >>> from skullstrip_lib.inference import BrainModel
    >>> from skullstrip_lib.preprocess import PreprocessConfig
    >>> x, y, z = np.ogrid[:20, :24, :20]  # voxels of 4 mm
    >>> ball = 16 * ((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2) <= 28.0 ** 2  # mm
    >>> scan, mask = Path(tempfile.mkdtemp()) / "t1w.nii", Path(tempfile.mkdtemp()) / "mask.nii"
    >>> nib.save(nib.Nifti1Image(np.where(ball, 100.0, 5.0), np.diag([4.0, 4.0, 4.0, 1.0])), scan)
    >>> nib.save(nib.Nifti1Image(ball.astype("uint8"), np.diag([4.0, 4.0, 4.0, 1.0])), mask)
    >>> index = pd.DataFrame({"subject": ["s0"], "t1w": [scan], "brainmask": [mask],
    ...                       "split": ["val"]})
    >>> soft = BrainModel("soft", PreprocessConfig(shape=(24, 32, 24), spacing=4.0, n4="none"),
    ...                   run=lambda x: 1.0 / (1.0 + np.exp(-x)))
    >>> threshold, table = calibrate_threshold(soft, index, thresholds=(0.25, 0.5, 0.75),
    ...                                        progress=False)
    >>> threshold
    0.5
    >>> table.round(3)  # mean and lowest Dice at each candidate
       threshold  dice_mean  dice_min
    0       0.25      0.884     0.884
    1       0.50      0.922     0.922
    2       0.75      0.000     0.000
    """
    import json

    model = as_model(model)
    if not all(0.0 < t < 1.0 for t in thresholds):
        raise ValueError(f"thresholds must lie in (0, 1), got {thresholds}")
    scores = []
    for p in predict_subjects(model, index, split=split, progress=progress):
        scores.append([dice(probability_to_mask(p.probability, p.grid, t), p.reference)
                       for t in thresholds])
    table = pd.DataFrame({"threshold": thresholds,
                          "dice_mean": np.mean(scores, axis=0),
                          "dice_min": np.min(scores, axis=0)})
    best = table.assign(gap=(table["threshold"] - 0.5).abs()).sort_values(
        ["dice_mean", "gap"], ascending=[False, True]).iloc[0]
    threshold = float(best["threshold"])
    if write:
        _, folder = _model_folder(model)
        meta_path = folder / META_FILE
        meta = json.loads(meta_path.read_text())
        meta["threshold"] = threshold
        meta["calibration"] = {"split": split, "subjects": len(scores),
                               "table": table.round(4).to_dict(orient="list")}
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
    return threshold, table


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean, median and worst of each score.

    Worst is the smallest Dice and IoU, the largest HD95 and the largest
    absolute volume difference.

    Parameters
    ----------
    scores : pandas.DataFrame
        One row per subject with columns ``dice``, ``iou``, ``hd95_mm`` and
        ``volume_diff_ml`` (as returned by :func:`evaluate`).

    Returns
    -------
    pandas.DataFrame
        Rows ``dice``, ``iou``, ``hd95_mm``, ``volume_diff_ml``; columns
        ``mean``, ``median``, ``worst``.

    Examples
    --------
    >>> scores = pd.DataFrame({"dice": [0.9, 0.95, 0.8], "iou": [0.82, 0.9, 0.67],
    ...                        "hd95_mm": [3.0, 2.0, 6.0], "volume_diff_ml": [10.0, -40.0, 5.0]})
    >>> summarize(scores).round(2)
                    mean  median  worst
    dice            0.88    0.90   0.80
    iou             0.80    0.82   0.67
    hd95_mm         3.67    3.00   6.00
    volume_diff_ml -8.33    5.00  40.00
    """
    cols = ["dice", "iou", "hd95_mm", "volume_diff_ml"]
    worst = {"dice": scores["dice"].min(), "iou": scores["iou"].min(),
             "hd95_mm": scores["hd95_mm"].max(),
             "volume_diff_ml": scores["volume_diff_ml"].abs().max()}
    return pd.DataFrame({"mean": scores[cols].mean(), "median": scores[cols].median(),
                         "worst": pd.Series(worst)})


# --------------------------------------------------------------------------- where to score


# --------------------------------------------------------------------------- seen vs unseen


def _model_folder(model: str | os.PathLike | BrainModel) -> tuple[str, Path]:
    """(name, folder holding the model's files) of a bundled name, folder, file or run."""
    from .inference import bundled_models

    name = model.name if isinstance(model, BrainModel) else str(model)
    path = bundled_models().get(name, Path(name))
    folder = path if path.is_dir() else path.parent
    if (folder / "export" / "config.yaml").is_file() and not (folder / "config.yaml").is_file():
        folder = folder / "export"
    return name, folder


def training_config(model: str | os.PathLike | BrainModel):
    """How a model was trained: the ``config.yaml`` exported beside it.

    Parameters
    ----------
    model : str, path-like or BrainModel
        A bundled name, a model folder or file, or a loaded model (its ``name``
        says where it came from).

    Returns
    -------
    TrainConfig
        See :class:`skullstrip_lib.train.TrainConfig`.

    Raises
    ------
    MissingFileError
        No ``config.yaml`` beside the model (e.g. a model made elsewhere).

    Examples
    --------
    The bundled model was trained on synthetic heads with the ``default`` profile:

    >>> config = training_config("default")
    >>> config.profile, config.epochs
    ('default', 100)
    """
    from .errors import MissingFileError
    from .train import read_config

    name, folder = _model_folder(model)
    config = folder / "config.yaml"
    if not config.is_file():
        raise MissingFileError(f"{name}: no config.yaml beside the model, so how it was trained "
                               "is unknown")
    return read_config(config)  # safe YAML; a bad file is one line naming it


def training_split(model: str | os.PathLike | BrainModel) -> pd.Series:
    """The subject-level split a model was trained with: subject -> "train", "val" or "test".

    Read from what was stored with the model's training data: the
    ``split.csv`` exported beside the model (a training run writes it from
    the data it trained on), else the index its ``config.yaml`` names (an
    index CSV keeps its ``split`` column; a data folder is split again with
    the run's ``split_seed``, as training did).

    Raises
    ------
    MissingFileError
        Nothing beside the model records its split (e.g. a model trained on
        synthetic heads without its ``split.csv``, or made elsewhere), or its
        training index is gone.

    Examples
    --------
    The bundled model keeps the split of its 104 synthetic training heads:

    >>> split = training_split("default")
    >>> split.value_counts().to_dict()
    {'train': 73, 'val': 16, 'test': 15}
    >>> split.index[0], split.iloc[0]  # subject A91 + seed 100's group 0, head 0
    ('A91000000', 'train')
    """
    from .datasets import index_dataset, read_index
    from .errors import MissingFileError

    name, folder = _model_folder(model)
    if (folder / "split.csv").is_file():
        table = pd.read_csv(folder / "split.csv", dtype=str)
    else:
        config = training_config(model)
        if config.data is None:
            raise MissingFileError(f"{name}: trained on synthetic heads, not on an index: "
                                   "no subject split to keep")
        source = Path(config.data)
        if not source.exists():
            raise MissingFileError(f"{source}: the index {name} was trained on is not here, so "
                                   "its split is unknown")
        table = (index_dataset(source, seed=config.split_seed) if source.is_dir()
                 else read_index(source))
    return pd.Series(table["split"].to_numpy(), index=table["subject"].astype(str),
                     name="split")


def unseen_subjects(index: pd.DataFrame, model: str | os.PathLike | BrainModel,
                    *, include_val: bool = False) -> pd.DataFrame:
    """The subjects of an index that a model never trained on, all marked ``"test"``.

    The split that counts is the model's own (:func:`training_split`), not a
    split computed again from ``index``: a split of another number of
    subjects puts other subjects in the test set, some of them ones the model
    was trained on. Kept: the model's test subjects and subjects it never saw
    at all (not in its training index); with ``include_val`` its validation
    subjects too (they chose the checkpoint, so they flatter it a little).

    Parameters
    ----------
    index : pandas.DataFrame
        An index (:func:`skullstrip_lib.datasets.index_dataset`).
    model : str, path-like or BrainModel
        The model to be evaluated.
    include_val : bool
        Also keep the model's validation subjects.

    Returns
    -------
    pandas.DataFrame
        The rows of ``index`` the model never trained on, in their order,
        with ``split`` set to ``"test"``.
    """
    split = training_split(model)
    seen = split.index[split.isin(["train"] if include_val else ["train", "val"])]
    kept = index[~index["subject"].astype(str).isin(seen)]
    return kept.assign(split="test").reset_index(drop=True)


# --------------------------------------------------------------------------- data drift


