"""Data preparation, the step before the fit: heads or scans → preprocessing → TFRecords.

:func:`training_index` lists the subjects a configuration trains from (its
synthetic heads, written if they are not there yet, or the scans of
``config.data``) with their split; :func:`prepare_data` preprocesses them with
the nipype workflow and packs them into TFRecords. Everything is cached under
``<data dir>/cache/``, in folders named by a hash of everything that made them,
so a second run reuses them and a changed parameter never reuses stale data.
:func:`~skullstrip_lib.train.train` calls it; a notebook or the command line
may call it first, and the fit then finds the data made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import SkullstripError
from ..io import settings_key
from .config import TrainConfig

if TYPE_CHECKING:  # pandas is imported when it is used
    import pandas as pd

__all__ = ["prepare_data", "training_index"]


def _synthetic_index(config: TrainConfig, cache: Path, progress: bool) -> pd.DataFrame:
    import pandas as pd

    from ..datasets import index_dataset, split_subjects
    from ..synth import write_nfbs_dataset

    frames = []
    for g, group in enumerate(config.synth):
        folder = cache / f"synth-{settings_key(group, config.synth_seed, g)}"
        write_nfbs_dataset(folder, int(group["n"]), seed=config.synth_seed + g,
                           progress=progress, **config.head_kwargs(g))
        frames.append(index_dataset(folder, seed=config.split_seed))
    index = pd.concat(frames, ignore_index=True)
    # One split over all groups, so that every group is in train, val and test.
    split = split_subjects(index["subject"], seed=config.split_seed)
    return index.assign(split=index["subject"].map(split))


def training_index(config: TrainConfig, *, progress: bool = True) -> pd.DataFrame:
    """The index (subjects, files, split) a configuration trains from.

    ``config.data`` read (an index CSV) or indexed with ``config.split_seed``
    (a data folder); or, without data, its synthetic heads, written under
    ``<data dir>/cache/`` if they are not there yet and split over all groups.
    The same index the TFRecords of :func:`prepare_data` are made from, so
    its ``val`` and ``test`` subjects are the run's.
    """
    from ..datasets import get_data_dir, index_dataset, read_index

    if config.data is None:
        return _synthetic_index(config, get_data_dir() / "cache", progress)
    src = Path(config.data)
    return index_dataset(src, seed=config.split_seed) if src.is_dir() else read_index(src)


def prepare_data(config: TrainConfig, *, progress: bool = True) -> Path:
    """Make (or reuse) the TFRecords a configuration trains on.

    Synthetic heads (or the index in ``config.data``) are preprocessed with the
    nipype workflow and packed into TFRecords, all under
    ``<data dir>/cache/``, in folders keyed by a hash of their inputs.

    Returns
    -------
    pathlib.Path
        The folder with ``train.tfrecord``, ``val.tfrecord``, ``test.tfrecord``.

    Examples
    --------
    Not run as a doctest: it writes its cache under the user's data folder
    (``$SKULLSTRIP_DATA``, else ``~/skullstrip_data``), which an example may not
    touch; ``tests/test_train.py`` runs it on a temporary data folder.

    >>> from skullstrip_lib.train import resolve_config
    >>> tf_dir = prepare_data(resolve_config("sample"), progress=False)  # doctest: +SKIP
    >>> sorted(p.name for p in tf_dir.iterdir())  # doctest: +SKIP
    ['manifest.json', 'test.tfrecord', 'train.tfrecord', 'val.tfrecord']
    """

    from ..data import write_tfrecords
    from ..datasets import get_data_dir
    from ..workflow import run_preprocessing

    cache = get_data_dir() / "cache"
    index = training_index(config, progress=progress)
    key = settings_key(sorted(index[["subject", "t1w", "split"]].astype(str).values.tolist()),
                       config.preprocess, __version__)
    tf_dir = cache / f"tfrecords-{key}"
    if (tf_dir / "manifest.json").exists():
        return tf_dir
    prep_dir = cache / f"prep-{key}"
    report = run_preprocessing(index, prep_dir, config.preprocess,
                               plugin="MultiProc" if config.workers > 1 else "Linear",
                               workers=config.workers, progress=progress)
    failed = report[report["status"] == "failed"]
    if len(failed):
        raise SkullstripError(f"preprocessing failed for {len(failed)} subjects, e.g. "
                              f"{failed.iloc[0]['subject']}: {failed.iloc[0]['error']}")
    write_tfrecords(report, tf_dir, overwrite=True, progress=progress)
    return tf_dir


def _check_data(config: TrainConfig) -> None:
    """Read the index (or index the folder) a run trains on: before its folder is made."""
    if config.data is not None:
        training_index(config, progress=False)
