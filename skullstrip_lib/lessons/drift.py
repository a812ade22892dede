"""Data drift, controlled: one change at a time, and test-time remedies (chapter 10)."""

from __future__ import annotations

import os

import pandas as pd

from .._docs import fill_doc
from ..evaluate import evaluate
from ..inference import BrainModel, as_model
from ..preprocess import PreprocessConfig

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


@fill_doc
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
    (:func:`skullstrip_lib.lessons.notebook.load_subjects`) and reused.

    Parameters
    ----------
    %(model)s
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
    %(data_dir)s
    progress : bool
        Show a progress bar over conditions.

    Returns
    -------
    pandas.DataFrame
        One row per condition and subject: ``condition``, ``subject``, the
        columns of :func:`evaluate`, and the paths ``t1w`` and ``brainmask``.

    Examples
    --------
    The bundled model on one small head (64x64x48 voxels of 4 mm, its own
    grid's voxel size), clean and with noise of 40 % of the white matter:

    >>> import tempfile
    >>> small = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}
    >>> conditions = {"clean": small, "noise 40 %": {**small, "noise_level": 0.4}}
    >>> scores = drift_sweep("default", conditions, data_dir=tempfile.mkdtemp(), progress=False)
    >>> scores[["condition", "dice"]].round(2)
        condition  dice
    0       clean  0.98
    1  noise 40 %  0.69
    """
    from tqdm.auto import tqdm

    from .notebook import load_subjects

    conditions = DRIFT_CONDITIONS if conditions is None else conditions
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")
    model = as_model(model)
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


def with_preprocessing(model: BrainModel, **changes) -> BrainModel:
    """The same network with some preprocessing settings changed.

    For experiments only: a network expects the preprocessing it was trained
    with, so a change is itself a shift in its input (that is what such an
    experiment measures). Useful for test-time remedies, e.g. N4 bias-field
    correction before a model that was trained without it.

    Parameters
    ----------
    model : BrainModel
        From :func:`load_model`; not modified.
    **changes
        :class:`~skullstrip_lib.preprocess.PreprocessConfig` fields, e.g.
        ``n4="simpleitk"`` or ``normalization="minmax"``.

    Returns
    -------
    BrainModel
        Shares the network (no copy); its ``name`` records the changes.

    Examples
    --------
    >>> from skullstrip_lib.inference import load_model
    >>> m = with_preprocessing(load_model("default"), n4="simpleitk")
    >>> m.config.n4, m.name
    ('simpleitk', 'default [n4=simpleitk]')
    """
    import dataclasses

    fields = {f.name for f in dataclasses.fields(PreprocessConfig)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ValueError(f"not preprocessing settings: {', '.join(unknown)}")
    config = dataclasses.replace(model.config, **changes)
    label = ", ".join(f"{k}={v}" for k, v in changes.items())
    return dataclasses.replace(model, config=config, name=f"{model.name} [{label}]")
