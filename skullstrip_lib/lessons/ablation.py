"""The source article's defects, measured one at a time (``book/source_article.md``, chapter 8).

An ablation: the book's pipeline in the ``sample`` profile, then the same
pipeline with exactly one of the source article's defects put back
(:data:`DEFECTS`), each trained on the same heads, with the same seeds and the
same budget (epochs, steps, batch), and scored the same way: on held-out heads,
in the scan's native space, through the last steps of the real prediction path
(:meth:`~skullstrip_lib.inference.BrainModel.probabilities` with its
left-right flip, :func:`~skullstrip_lib.inference.probability_to_mask`).

The seventh defect, *no held-out test split*, needs no run of its own: the
source reported its validation score, the score of the heads that chose the
checkpoint. :func:`summarize` reports the fixed runs' validation heads next to
their held-out heads.

:func:`run_ablation` does the work (about a minute a run on 2 CPU cores);
``make ablation`` (``benchmarks/ablation.py``) runs it and records the result
in :data:`RECORDED` (read by :func:`recorded`), which the book shows instead of
training two dozen networks at every build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._docs import fill_doc
from ..io import atomic_save, atomic_write_text, load_mask, load_scan, settings_key
from ..preprocess import prepare_input, to_model_grid
from .intensity import rescale_0_255

__all__ = [
    "DEFECTS",
    "NO_TEST_SPLIT",
    "RECORDED",
    "Defect",
    "ablation_index",
    "build_model",
    "markdown_table",
    "plot_ablation",
    "prepare",
    "prepare_data",
    "recorded",
    "run_ablation",
    "score_heads",
    "source_block",
    "summarize",
]


@dataclass(frozen=True)
class Defect:
    """One of the source article's defects, as a change to the book's pipeline.

    Attributes
    ----------
    label : str
        Its name in the tables.
    change : str
        What the source's code does instead of the book's pipeline.
    preprocess : dict
        :class:`~skullstrip_lib.preprocess.PreprocessConfig` fields to change.
    rescale_0_255 : bool
        Rescale the model-grid image to 0-255 over the whole volume
        (:func:`~skullstrip_lib.lessons.intensity.rescale_0_255`) instead of
        the z-score in the head.
    source_block : bool
        Build the network with :func:`source_block`.
    output_kernel : tuple of 3 int
        The output convolution's kernel
        (:func:`~skullstrip_lib.lessons.unet_anatomy.with_output_kernel`).
    focal : bool
        Train with a focal loss instead of soft Dice + cross-entropy.
    learning_rate : float or None
        Adam's (initial) learning rate, if not the profile's.
    """

    label: str
    change: str
    preprocess: dict = field(default_factory=dict)
    rescale_0_255: bool = False
    source_block: bool = False
    output_kernel: tuple[int, int, int] = (1, 1, 1)
    focal: bool = False
    learning_rate: float | None = None


DEFECTS: dict[str, Defect] = {
    "none": Defect("the book's pipeline", "nothing: the sample profile as it is"),
    "block": Defect("its block", "the second convolution of each block reads the block's "
                    "input, not the first convolution's output", source_block=True),
    "nearest": Defect("nearest-neighbour resampling", "the image goes onto the model grid by "
                      "nearest neighbour, without anti-aliasing",
                      preprocess={"interpolation": "nearest"}),
    "rescale": Defect("0-255 rescale", "a min-max rescale of the whole volume to 0-255 "
                      "instead of a z-score in the head",
                      preprocess={"normalization": "none"}, rescale_0_255=True),
    "focal": Defect("focal loss", "a focal loss (gamma 2) instead of soft Dice + "
                    "cross-entropy", focal=True),
    "adam": Defect("Adam at 0.1", "Adam's learning rate starts at 0.1 instead of the "
                   "profile's", learning_rate=0.1),
    "kernel": Defect("1x1x2 output kernel", "the output convolution is 1x1x2, not 1x1x1",
                     output_kernel=(1, 1, 2)),
}
"""The runs of the ablation: ``"none"`` (the book's pipeline), then one defect each."""

NO_TEST_SPLIT = "no held-out split"
"""The row of :func:`summarize` for the seventh defect (from the ``"none"`` runs)."""

HELDOUT_SEED = 8200
"""Seeds of the extra held-out heads: ``HELDOUT_SEED + group`` (no other use of the book's)."""

RECORDED = Path(__file__).parent / "results" / "ablation.csv"
"""The recorded ablation (``make ablation``); its provenance is in ``ablation.json`` beside it."""


# --------------------------------------------------------------------------- the defects
def source_block(x, filters: int, norm: str | None, prefix: str):
    """:func:`~skullstrip_lib.model.residual_block` wired as the source article's block.

    The same layers, but the second convolution reads the block's input
    ``x`` instead of the first convolution's output
    (:func:`~skullstrip_lib.lessons.unet_anatomy.miswired_convs`, the miswiring
    chapter 6's rebuilt network has too), so the first convolution (and its
    norm) is computed for nothing: Keras leaves it out of the graph, and each
    block is one convolution deep.

    Examples
    --------
    >>> from skullstrip_lib.model import build_unet
    >>> model = build_unet((16, 16, 16, 1), base_filters=4, depth=2, block=source_block)
    >>> [layer.name for layer in model.layers if layer.name.startswith("enc0_conv")]
    ['enc0_conv2']
    """
    from ..model import residual_sum
    from .unet_anatomy import miswired_convs

    return residual_sum(miswired_convs(x, filters, norm, prefix), x, prefix)


def build_model(config, defect: Defect):
    """The network of a run: the profile's U-Net, with the defect's block or output kernel.

    Parameters
    ----------
    config : skullstrip_lib.train.TrainConfig
        Grid, filters, depth, dropout and norm.
    defect : Defect
        The run's defect.

    Returns
    -------
    keras.Model
        Not compiled.
    """
    from ..train import build_network

    model = build_network(config, block=source_block if defect.source_block else None)
    if tuple(defect.output_kernel) != (1, 1, 1):
        from .unet_anatomy import with_output_kernel

        model = with_output_kernel(model, defect.output_kernel)
    return model


def prepare(scan, config, defect: Defect) -> tuple[np.ndarray, Any]:
    """A scan as a run's network sees it: the pipeline's input, or the defect's.

    :func:`~skullstrip_lib.preprocess.prepare_input` with the defect's
    preprocessing, then the source's 0-255 rescale if the defect asks for it.

    Returns
    -------
    image : numpy.ndarray of float32
        Shape ``config.preprocess.shape``.
    grid : skullstrip_lib.preprocess.ModelGrid
        The model grid on the scan.
    """
    image, grid = prepare_input(scan, dataclasses.replace(config.preprocess, **defect.preprocess))
    return (rescale_0_255(image) if defect.rescale_0_255 else image), grid


# --------------------------------------------------------------------------- data
def ablation_index(config, *, extra_per_group: int = 4, progress: bool = True) -> pd.DataFrame:
    """The heads of the ablation: the profile's own, and more held-out ones.

    Parameters
    ----------
    config : skullstrip_lib.train.TrainConfig
        The profile (``resolve_config("sample")``): its synthetic groups,
        seeds and split (:func:`skullstrip_lib.train.training_index`).
    extra_per_group : int
        Held-out heads added per synthetic group, drawn with the group's
        settings and seed ``HELDOUT_SEED + group``: the profile's 2 test heads
        alone would make a noisy score.
    progress : bool
        Progress bars while heads are written.

    Returns
    -------
    pandas.DataFrame
        ``subject``, ``t1w``, ``brainmask`` and ``split`` (``train``, ``val``,
        ``test``; the extra heads are ``test``).
    """
    from ..datasets import get_data_dir, index_dataset
    from ..synth import write_nfbs_dataset
    from ..train import training_index

    if config.data is not None:
        raise ValueError("the ablation runs on a profile's synthetic heads (config.data is None)")
    frames = [training_index(config, progress=progress)]
    for g, group in enumerate(config.synth):
        if extra_per_group < 1:
            break
        seed = HELDOUT_SEED + g
        folder = get_data_dir() / "cache" / f"ablation-heldout-{settings_key(group, seed)}"
        write_nfbs_dataset(folder, extra_per_group, seed=seed, progress=progress,
                           **config.head_kwargs(g))
        frames.append(index_dataset(folder).assign(split="test"))
    columns = ["subject", "t1w", "brainmask", "split"]
    return pd.concat(frames, ignore_index=True)[columns]


def prepare_data(index: pd.DataFrame, config, defect: Defect, work_dir: str | os.PathLike, *,
                 progress: bool = True) -> Path:
    """TFRecords of a run's training and validation heads, prepared the defect's way.

    Runs that prepare alike (all but ``nearest`` and ``rescale``) share one
    folder, named by a hash of the heads and the preparation.

    Returns
    -------
    pathlib.Path
        The folder :func:`skullstrip_lib.data.make_dataset` reads.
    """
    import nibabel as nib
    from tqdm.auto import tqdm

    from .. import __version__
    from ..data import write_tfrecords

    rows = index[index["split"].isin(["train", "val"])]
    key = settings_key(sorted(rows[["subject", "t1w", "split"]].astype(str).values.tolist()),
                       config.preprocess, defect.preprocess, defect.rescale_0_255, __version__)
    out = Path(work_dir) / f"data-{key}"
    if (out / "tfrecords" / "manifest.json").exists():
        return out / "tfrecords"
    table = []
    for row in tqdm(rows.itertuples(index=False), total=len(rows), desc="prepare",
                    unit="head", disable=not progress):
        scan = load_scan(row.t1w)
        image, grid = prepare(scan, config, defect)
        mask = to_model_grid(load_mask(row.brainmask, scan).astype(np.float32), grid) >= 0.5
        paths = {k: out / "heads" / f"{row.subject}_{k}.nii.gz" for k in ("t1w", "brainmask")}
        atomic_save(nib.Nifti1Image(image, grid.affine), paths["t1w"])
        atomic_save(nib.Nifti1Image(mask.astype(np.uint8), grid.affine), paths["brainmask"])
        table.append({"subject": row.subject, "split": row.split,
                      **{k: str(p) for k, p in paths.items()}})
    write_tfrecords(pd.DataFrame(table), out / "tfrecords", overwrite=True, progress=False)
    return out / "tfrecords"


# --------------------------------------------------------------------------- one run
def _fit(config, defect: Defect, seed: int, tf_dir: Path, run_dir: Path):
    """Train one run as :func:`skullstrip_lib.train.train` would; return the best checkpoint."""
    import keras

    from ..data import make_dataset
    from ..train import compile_for_training

    keras.utils.set_random_seed(seed)  # initialisation, dropout, data order
    model = build_model(config, defect)
    fit = dataclasses.replace(config, learning_rate=defect.learning_rate or config.learning_rate)
    loss = keras.losses.BinaryFocalCrossentropy(gamma=2.0) if defect.focal else None
    compile_for_training(model, fit, loss=loss)
    train_ds = make_dataset(tf_dir, "train", batch_size=config.batch_size, shuffle=True,
                            augment_config=config.augment, seed=seed, repeat=True)
    val_ds = make_dataset(tf_dir, "val", batch_size=1, shuffle=False)
    best = run_dir / "best.keras"
    history = model.fit(train_ds, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
                        validation_data=val_ds, verbose=0, callbacks=[
                            keras.callbacks.ModelCheckpoint(str(best), monitor="val_dice",
                                                            mode="max", save_best_only=True)])
    val_dice = history.history["val_dice"]
    if best.exists():  # absent when no epoch scored a number (NaN val_dice throughout)
        model = keras.saving.load_model(best, compile=False)
    finite = [d for d in val_dice if np.isfinite(d)]
    epoch = int(np.nanargmax(val_dice)) + 1 if finite else len(val_dice)
    return model, {"best_epoch": epoch, "best_val_dice": max(finite) if finite else float("nan")}


def score_heads(model, heads: pd.DataFrame, config, defect: Defect, *,
                progress: bool = False) -> pd.DataFrame:
    """Score a run's network on heads, in each scan's native space.

    Each scan is prepared the run's way (:func:`prepare`), goes through the
    network with the left-right flip, and back onto its own grid with the
    pipeline's threshold (0.5), largest component and hole filling
    (:func:`~skullstrip_lib.inference.probability_to_mask`), then is compared
    with its reference mask (:func:`~skullstrip_lib.metrics.evaluate_masks`).

    Parameters
    ----------
    model : keras.Model
        The run's network.
    heads : pandas.DataFrame
        Rows of :func:`ablation_index`.
    config : skullstrip_lib.train.TrainConfig
        The profile.
    defect : Defect
        The run's defect.
    progress : bool
        A progress bar.

    Returns
    -------
    pandas.DataFrame
        One row a head: ``subject``, ``split``, ``dice``, ``iou``,
        ``hd95_mm``, ``volume_diff_ml``.
    """
    from tqdm.auto import tqdm

    from ..inference import BrainModel, probability_to_mask
    from ..metrics import evaluate_masks

    net = BrainModel("ablation", config.preprocess,
                     run=lambda batch: model(batch, training=False), flip_lr=True)
    rows = []
    for row in tqdm(heads.itertuples(index=False), total=len(heads), desc="score",
                    unit="head", disable=not progress):
        scan = load_scan(row.t1w)
        image, grid = prepare(scan, config, defect)
        mask = probability_to_mask(net.probabilities(image), grid, net.threshold)
        scores = evaluate_masks(mask, load_mask(row.brainmask, scan), scan.zooms)
        rows.append({"subject": row.subject, "split": row.split,
                     **{k: scores[k] for k in ("dice", "iou", "hd95_mm", "volume_diff_ml")}})
    return pd.DataFrame(rows)


def run_ablation(
    defects: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    config=None,
    work_dir: str | os.PathLike | None = None,
    extra_per_group: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """Train and score the book's pipeline and each defect, for each seed.

    Parameters
    ----------
    defects : sequence of str, optional
        Keys of :data:`DEFECTS` (all by default; ``"none"`` is always run
        first, as the reference).
    seeds : sequence of int
        Each seed fixes initialisation, dropout, data order and augmentation,
        the same for every defect.
    config : skullstrip_lib.train.TrainConfig, optional
        ``resolve_config("sample")`` by default: its heads, grid, network and
        budget (epochs x steps x batch) for every run.
    work_dir : path-like, optional
        Prepared data and finished runs (``<defect>-seed<k>/scores.csv``),
        reused when the same ablation is run again: an interrupted ablation
        continues where it stopped. ``<data dir>/cache/ablation-<key>`` by
        default, keyed by ``config`` and the library version.
    extra_per_group : int
        See :func:`ablation_index`.
    progress : bool
        Progress bars and a line per finished run.

    Returns
    -------
    pandas.DataFrame
        One row per run and scored head (the held-out heads, and the
        validation heads that chose the checkpoint): ``defect``, ``seed``,
        ``subject``, ``split``, ``dice``, ``iou``, ``hd95_mm``,
        ``volume_diff_ml``, ``best_epoch``, ``best_val_dice`` (on the model
        grid, as Keras logs it), ``train_seconds``.
    """
    from .. import __version__
    from ..datasets import get_data_dir
    from ..train import resolve_config

    config = config or resolve_config("sample")
    names = ["none", *[d for d in (defects or DEFECTS) if d != "none"]]
    unknown = [d for d in names if d not in DEFECTS]
    if unknown:
        raise ValueError(f"unknown defect {unknown[0]!r} (choose from {', '.join(DEFECTS)})")
    work = Path(work_dir) if work_dir is not None else (
        get_data_dir() / "cache" / f"ablation-{settings_key(config.to_dict(), __version__)}")
    index = ablation_index(config, extra_per_group=extra_per_group, progress=progress)
    scored = index[index["split"].isin(["val", "test"])]
    frames = []
    for name in names:
        defect = DEFECTS[name]
        tf_dir = prepare_data(index, config, defect, work, progress=progress)
        for seed in seeds:
            done = work / f"{name}-seed{seed}" / "scores.csv"
            if not done.exists():
                start = time.perf_counter()
                model, best = _fit(config, defect, seed, tf_dir, done.parent)
                seconds = time.perf_counter() - start
                scores = score_heads(model, scored, config, defect).assign(
                    defect=name, seed=seed, **best, train_seconds=round(seconds, 1))
                atomic_write_text(done, scores.to_csv(index=False))
            scores = pd.read_csv(done, dtype={"subject": str})
            frames.append(scores)
            if progress:
                held = scores[scores["split"] == "test"]["dice"]
                print(f"{name:>8} seed {seed}: held-out Dice {held.mean():.3f} "
                      f"(worst {held.min():.3f}), {scores['train_seconds'].iloc[0]:.0f} s")
    columns = ["defect", "seed", "subject", "split", "dice", "iou", "hd95_mm", "volume_diff_ml",
               "best_epoch", "best_val_dice", "train_seconds"]
    return pd.concat(frames, ignore_index=True)[columns]


# --------------------------------------------------------------------------- the table
def _runs(scores: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, scored rows) for each row of the table: the defects' held-out heads in
    :data:`DEFECTS` order, then the pipeline's validation heads (:data:`NO_TEST_SPLIT`)."""
    held = scores[scores["split"] == "test"]
    runs = [(DEFECTS[name].label, held[held["defect"] == name])
            for name in DEFECTS if name in set(held["defect"])]
    val = scores[(scores["defect"] == "none") & (scores["split"] == "val")]
    return [*runs, (NO_TEST_SPLIT, val)] if len(val) else runs


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per defect: its held-out scores, their spread over seeds, its cost.

    Each seed's score is the mean over the held-out heads; the table gives the
    mean and standard deviation of those over seeds, their range, and the
    change from the book's pipeline (``"none"``, same seeds). The last row,
    :data:`NO_TEST_SPLIT`, is the book's pipeline scored on the validation
    heads that chose its checkpoints, the number the source reported.

    Parameters
    ----------
    scores : pandas.DataFrame
        From :func:`run_ablation` (or :func:`recorded`).

    Returns
    -------
    pandas.DataFrame
        Index: the defects' labels. Columns ``dice``, ``dice_sd``,
        ``dice_min``, ``dice_max`` (over seeds), ``delta_dice``, ``hd95_mm``
        (median over heads and seeds), ``worst_dice`` (the worst head of any
        seed), ``failed`` (masks with a Dice under 0.5) of ``masks``,
        ``seeds``, ``heads``.

    Examples
    --------
    The recorded ablation, the book's pipeline first:

    >>> table = summarize(recorded()[0])
    >>> len(table), table.index[0], round(float(table["delta_dice"].iloc[0]), 3)
    (8, "the book's pipeline", 0.0)
    """
    def one(rows: pd.DataFrame) -> dict:
        per_seed = rows.groupby("seed")["dice"].mean()
        return {"dice": per_seed.mean(), "dice_sd": per_seed.std(ddof=1),
                "dice_min": per_seed.min(), "dice_max": per_seed.max(),
                # The median: an empty mask's HD95 is infinite, which no mean survives.
                "hd95_mm": rows["hd95_mm"].median(), "worst_dice": rows["dice"].min(),
                "failed": int((rows["dice"] < 0.5).sum()), "masks": len(rows),
                "seeds": len(per_seed), "heads": rows["subject"].nunique()}

    table = {label: one(rows) for label, rows in _runs(scores)}
    reference = table[DEFECTS["none"].label]["dice"]
    for row in table.values():
        row["delta_dice"] = row["dice"] - reference
    columns = ["dice", "dice_sd", "dice_min", "dice_max", "delta_dice", "hd95_mm",
               "worst_dice", "failed", "masks", "seeds", "heads"]
    return pd.DataFrame.from_dict(table, orient="index")[columns]


@fill_doc
def plot_ablation(scores: pd.DataFrame, *, ax=None, title: str | None = None):
    """Each run's held-out Dice, one row per defect, one dot per seed.

    The dots are the seeds' means over the held-out heads, the bar their mean,
    the dashed line the book's pipeline: a defect whose dots overlap the line's
    own spread is not told apart from it by this many seeds. The last row is the
    book's pipeline scored on its validation heads (:data:`NO_TEST_SPLIT`).

    Parameters
    ----------
    scores : pandas.DataFrame
        From :func:`run_ablation` or :func:`recorded`.
    %(plot_ax)s

    %(figure_returns)s

    Examples
    --------
    >>> fig = plot_ablation(recorded()[0], title="What each defect costs")
    >>> len(fig.axes), len(fig.axes[0].get_yticklabels())  # one bar per row of summarize
    (1, 8)
    """
    from ..viz import pyplot

    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * (len(DEFECTS) + 1) + 1.2))
    rows = _runs(scores)
    reference = rows[0][1].groupby("seed")["dice"].mean().mean()
    for y, (label, group) in enumerate(rows):
        per_seed = group.groupby("seed")["dice"].mean()
        colour = "tab:blue" if y == 0 else "tab:grey" if label == NO_TEST_SPLIT else "tab:red"
        ax.scatter(per_seed, np.full(len(per_seed), y), color=colour, alpha=0.7, zorder=3)
        ax.plot([per_seed.mean()] * 2, [y - 0.3, y + 0.3], color=colour, lw=2.5, zorder=2)
    ax.axvline(reference, color="tab:blue", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("held-out Dice, native space (dot: one seed, mean over heads; bar: mean)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def recorded() -> tuple[pd.DataFrame, dict]:
    """The ablation recorded by ``make ablation``: its scores and how it was made.

    Returns
    -------
    scores : pandas.DataFrame
        As :func:`run_ablation` returned them.
    provenance : dict
        ``command``, ``machine``, ``date``, ``minutes``, versions and settings.

    Raises
    ------
    FileNotFoundError
        Nothing recorded yet (run ``make ablation``).

    Examples
    --------
    >>> scores, provenance = recorded()
    >>> len(scores), scores["defect"].nunique(), provenance["seeds"]
    (420, 7, 5)
    """
    provenance = json.loads(RECORDED.with_suffix(".json").read_text())
    return pd.read_csv(RECORDED, dtype={"subject": str}), provenance


def markdown_table(summary: pd.DataFrame, provenance: dict) -> str:
    """The ablation as the book prints it: a Markdown table, then how it was made.

    Parameters
    ----------
    summary : pandas.DataFrame
        From :func:`summarize`.
    provenance : dict
        ``command``, ``machine``, ``date``, ``minutes`` (see :func:`recorded`).

    Returns
    -------
    str
        Markdown: one row per defect (Dice as mean ± standard deviation over
        seeds, its range and its change from the book's pipeline; HD95; the
        worst head; the failed masks), and a line with the command, machine
        and date.
    """
    lines = ["| run | held-out Dice (mean ± sd over seeds) | range over seeds | change | "
             "HD95 mm (median) | worst head | masks with Dice < 0.5 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, row in summary.iterrows():
        change = "reference" if label == DEFECTS["none"].label else f"{row.delta_dice:+.3f}"
        lines.append(f"| {label} | {row.dice:.3f} ± {row.dice_sd:.3f} | "
                     f"{row.dice_min:.3f} to {row.dice_max:.3f} | {change} | "
                     f"{row.hd95_mm:.1f} | {row.worst_dice:.3f} | "
                     f"{int(row.failed)} of {int(row.masks)} |")
    first = summary.iloc[0]
    lines += ["", f"{int(first.seeds)} seeds, {int(first.heads)} held-out heads"
              f" (validation heads for the last row); made by `{provenance['command']}` on "
              f"{provenance['machine']}, {provenance['date']}, in {provenance['minutes']:.0f} "
              "minutes."]
    return "\n".join(lines) + "\n"
