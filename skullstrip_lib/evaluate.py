"""Evaluation on held-out subjects, in each scan's native space.

Scores are computed where they matter: on the scan's own voxel grid, against
the original expert mask — not on the 2 mm model grid, where resampling would
flatter (or blur) the result. Each subject goes through exactly what
``skullstrip predict`` does (:func:`skullstrip_lib.inference.predict_mask`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SkullstripError
from .inference import BrainModel, load_model, predict_mask
from .io import load_mask, load_scan
from .metrics import evaluate_masks

__all__ = [
    "DRIFT_CONDITIONS",
    "drift_sweep",
    "evaluate",
    "evaluate_spaces",
    "seen_subjects",
    "summarize",
    "training_config",
    "training_heads",
    "worst_cases_figure",
]


def evaluate(
    model: str | os.PathLike | BrainModel,
    index: pd.DataFrame | str | os.PathLike,
    *,
    split: str | None = "test",
    progress: bool = True,
) -> pd.DataFrame:
    """Score a model on the subjects of an index, in native space.

    Parameters
    ----------
    model : str, path-like or BrainModel
        See :func:`skullstrip_lib.inference.load_model`.
    index : pandas.DataFrame or path-like
        An index (:func:`skullstrip_lib.datasets.index_dataset`) or its CSV.
    split : str or None
        Only the subjects of this split; None for all.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject``, ``dice``, ``iou``, ``hd95_mm``,
        ``volume_diff_ml``, ``volume_ref_ml``, ``volume_diff_pct``.
    """
    from tqdm.auto import tqdm

    from .datasets import read_index

    if not isinstance(index, pd.DataFrame):
        index = read_index(index)
    if split is not None:
        index = index[index["split"] == split]
        if index.empty:
            raise SkullstripError(f"the index has no subject in split {split!r}")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    rows = []
    for row in tqdm(list(index.itertuples(index=False)), desc="evaluate", unit="subject",
                    disable=not progress):
        scan = load_scan(row.t1w)
        reference = load_mask(row.brainmask, scan)
        predicted, _, _ = predict_mask(scan, model)
        rows.append({"subject": row.subject,
                     **evaluate_masks(predicted, reference, spacing=scan.zooms)})
    return pd.DataFrame(rows)


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
    """
    cols = ["dice", "iou", "hd95_mm", "volume_diff_ml"]
    worst = {"dice": scores["dice"].min(), "iou": scores["iou"].min(),
             "hd95_mm": scores["hd95_mm"].max(),
             "volume_diff_ml": scores["volume_diff_ml"].abs().max()}
    return pd.DataFrame({"mean": scores[cols].mean(), "median": scores[cols].median(),
                         "worst": pd.Series(worst)})


def worst_cases_figure(model: str | os.PathLike | BrainModel, index: pd.DataFrame,
                       scores: pd.DataFrame, path: str | os.PathLike | None = None, *,
                       n: int = 3):
    """Three planes through the ``n`` lowest-Dice subjects: reference and prediction.

    The reference mask is outlined in green, the prediction in red.

    Returns
    -------
    matplotlib.figure.Figure
        Also saved to ``path`` when given.
    """
    from .viz import _pyplot, show_planes

    plt = _pyplot()
    if not isinstance(model, BrainModel):
        model = load_model(model)
    worst = scores.nsmallest(n, "dice")
    fig, axes = plt.subplots(len(worst), 3, figsize=(12, 4 * len(worst)), squeeze=False)
    paths = index.set_index("subject")
    for ax_row, row in zip(axes, worst.itertuples(index=False), strict=True):
        scan = load_scan(paths.loc[row.subject, "t1w"])
        reference = load_mask(paths.loc[row.subject, "brainmask"], scan)
        predicted, _, _ = predict_mask(scan, model)
        show_planes(scan.data, reference, zooms=scan.zooms, axes=ax_row, mask_color="tab:green",
                    title=f"{row.subject}: Dice {row.dice:.3f}")
        cut = tuple(round(c) for c in np.argwhere(reference).mean(axis=0))
        for ax, sl in zip(ax_row, (predicted[cut[0]], predicted[:, cut[1]],
                                   predicted[:, :, cut[2]]), strict=True):
            if sl.any():
                ax.contour(sl.T.astype(float), levels=[0.5], colors="tab:red", linewidths=1.0)
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=80)
    return fig


# --------------------------------------------------------------------------- where to score
def evaluate_spaces(
    model: str | os.PathLike | BrainModel,
    index: pd.DataFrame | str | os.PathLike,
    *,
    split: str | None = "test",
    progress: bool = True,
) -> pd.DataFrame:
    """Score each subject three ways: in native space, on the model grid, and the grid's ceiling.

    One prediction per subject gives

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
    model : str, path-like or BrainModel
        See :func:`skullstrip_lib.inference.load_model`.
    index : pandas.DataFrame or path-like
        An index (:func:`skullstrip_lib.datasets.index_dataset`) or its CSV.
    split : str or None
        Only the subjects of this split; None for all.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        Three rows per subject: ``subject``, ``space`` and the columns of
        :func:`evaluate` (``dice``, ``iou``, ``hd95_mm``, ``volume_diff_ml``,
        ``volume_ref_ml``, ``volume_diff_pct``); distances and volumes in mm
        and mL on each space's own voxel size.
    """
    from tqdm.auto import tqdm

    from .datasets import read_index
    from .inference import postprocess_mask
    from .preprocess import from_model_grid, prepare_input, to_model_grid

    if not isinstance(index, pd.DataFrame):
        index = read_index(index)
    if split is not None:
        index = index[index["split"] == split]
        if index.empty:
            raise SkullstripError(f"the index has no subject in split {split!r}")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    rows = []
    for row in tqdm(list(index.itertuples(index=False)), desc="evaluate", unit="subject",
                    disable=not progress):
        scan = load_scan(row.t1w)
        reference = load_mask(row.brainmask, scan)
        image, grid = prepare_input(scan, model.config)
        probability = model.probabilities(image)
        native = from_model_grid(probability, grid, order=1, support=model.threshold)
        predicted = postprocess_mask(native >= model.threshold)
        fraction = to_model_grid(reference.astype(np.float32), grid, order=1)
        on_grid = postprocess_mask(probability >= model.threshold)
        round_trip = from_model_grid(fraction, grid, order=1, support=0.5) >= 0.5
        for space, pred, ref, spacing in (
            ("native", predicted, reference, scan.zooms),
            ("model grid", on_grid, fraction >= 0.5, grid.spacing),
            ("reference round trip", round_trip, reference, scan.zooms),
        ):
            rows.append({"subject": row.subject, "space": space,
                         **evaluate_masks(pred, ref, spacing=spacing)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- seen vs unseen
def training_heads(config="default", n: int = 2, *, split: str = "train", group: int = 0,
                   data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Write the very synthetic heads a training profile used, to score a model on them.

    A training profile that trains on synthetic heads
    (:data:`skullstrip_lib.train.PROFILES`) makes its heads from fixed seeds
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
    import hashlib
    import json

    from .datasets import get_data_dir, split_subjects
    from .io import atomic_save
    from .synth import _nfbs_filenames, make_head, subject_id
    from .train import TrainConfig, resolve_config

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
    kwargs = {k: tuple(v) if isinstance(v, list) else v
              for k, v in cfg.synth[group].items() if k != "n"}
    seed = cfg.synth_seed + group
    key = hashlib.sha256(json.dumps([seed, kwargs], sort_keys=True,
                                    default=str).encode()).hexdigest()[:10]
    root = get_data_dir(data_dir) / "sample" / f"seen-{key}" / "NFBS_Dataset"
    rows = []
    for i, sid in chosen:
        paths = {k: root / sid / name for k, name in _nfbs_filenames(sid).items()}
        if not all(p.is_file() for p in paths.values()):
            head = make_head(seed, i, **kwargs)
            for k, p in paths.items():
                atomic_save(getattr(head, k), p, overwrite=True)
        rows.append({"subject": sid, **{k: str(p) for k, p in paths.items()}, "split": split})
    return pd.DataFrame(rows, columns=["subject", "t1w", "brainmask", "brain", "split"])


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
    """
    import yaml

    from .errors import MissingFileError
    from .inference import bundled_models
    from .train import TrainConfig

    name = model.name if isinstance(model, BrainModel) else str(model)
    path = bundled_models().get(name, Path(name))
    folder = path if path.is_dir() else path.parent
    if (folder / "export" / "config.yaml").is_file() and not (folder / "config.yaml").is_file():
        folder = folder / "export"
    config = folder / "config.yaml"
    if not config.is_file():
        raise MissingFileError(f"{name}: no config.yaml beside the model, so how it was trained "
                               "is unknown")
    return TrainConfig.from_dict(yaml.safe_load(config.read_text()))


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
    """
    from .datasets import index_dataset, read_index

    config = training_config(model)
    if config.data is None:
        return training_heads(config, n, split="train", data_dir=data_dir)
    source = Path(config.data)
    if not source.exists():
        raise SkullstripError(f"{source}: the model's training data is not here")
    index = (index_dataset(source, seed=config.split_seed) if source.is_dir()
             else read_index(source))
    return index[index["split"] == "train"].head(n).reset_index(drop=True)


# --------------------------------------------------------------------------- data drift
DRIFT_CONDITIONS: dict[str, dict] = {
    "T1 (as trained)": {},
    "T2 contrast": {"contrast": "t2"},
    "random contrast": {"contrast": "random"},
    "bias x4": {"bias_strength": 3.0},
    "noise 20%": {"noise_level": 0.20},
    "noise 40%": {"noise_level": 0.40},
    "4 mm slices": {"voxel_size": (1.0, 1.0, 4.0), "shape": (256, 256, 48)},
    "LPS, 20° oblique": {"orientation": "LPS", "oblique_deg": (20.0, 0.0, 10.0)},
    "top half only": {"shape": (256, 256, 80), "center_mm": (0.0, -18.0, 40.0)},
}
"""Scanner and protocol changes for :func:`drift_sweep`.

Condition name -> :func:`~skullstrip_lib.synth.make_head` arguments.

Each changes one thing from the first (a T1-weighted head on the NFBS grid,
256x256x192 at 1 mm, with the generator's usual random bias and noise):
contrast (T2-like, or a random monotone remap of the T1 intensities); a bias
field of peak gain 4 (``bias_strength`` 3.0: gains from 1/4 to 4; by default
a head's peak gain is drawn in 1.1-1.4); Rician noise of 20 % and 40 % of the white-matter
intensity (drawn in 1-4 %); 4 mm thick axial slices; LPS voxel order on a grid
tilted 20° and 10°; a field of view that keeps only the top 80 mm of the head.
"""


def drift_sweep(
    model: str | os.PathLike | BrainModel,
    conditions: dict[str, dict] | None = None,
    *,
    n_heads: int = 1,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Score a model in native space on synthetic heads under controlled drift.

    For every condition the same ``n_heads`` subjects are made (a subject's
    anatomy, tissue draws and noise do not depend on the head arguments, see
    :func:`skullstrip_lib.synth.make_head`), so the conditions differ only in
    what the condition changes. Heads are written once under the data folder
    (:func:`skullstrip_lib.notebook.load_subjects`) and reused.

    Parameters
    ----------
    model : str, path-like or BrainModel
        See :func:`skullstrip_lib.inference.load_model`.
    conditions : dict, optional
        Condition name -> :func:`~skullstrip_lib.synth.make_head` arguments;
        :data:`DRIFT_CONDITIONS` by default.
    n_heads : int
        Subjects per condition (each about 5 s to make and 3 s to score on a
        256x256x192 grid, on a CPU).
    seed : int
        Seed of the heads. The bundled model was trained on seeds 100-107
        (``synth_seed`` 100 plus the group number), so the default, 0, gives
        heads it never saw.
    data_dir : path-like, optional
        See :func:`skullstrip_lib.datasets.get_data_dir`.
    progress : bool
        Show a progress bar over conditions.

    Returns
    -------
    pandas.DataFrame
        One row per condition and subject: ``condition``, ``subject``, the
        columns of :func:`evaluate`, and the paths ``t1w`` and ``brainmask``.
    """
    from tqdm.auto import tqdm

    from .notebook import load_subjects

    conditions = DRIFT_CONDITIONS if conditions is None else conditions
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")
    if not isinstance(model, BrainModel):
        model = load_model(model)
    frames = []
    for name, kwargs in tqdm(list(conditions.items()), desc="drift", unit="condition",
                             disable=not progress):
        index = load_subjects("sample", n_heads, data_dir=data_dir, seed=seed, progress=False,
                              **kwargs)
        scores = evaluate(model, index, split=None, progress=False)
        scores.insert(0, "condition", name)
        frames.append(scores.assign(t1w=index["t1w"].to_numpy(),
                                    brainmask=index["brainmask"].to_numpy()))
    return pd.concat(frames, ignore_index=True)
