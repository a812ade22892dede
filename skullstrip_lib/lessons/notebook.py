"""Helpers for the book's notebooks: where they run, which profile, which data.

Every chapter starts the same way: it asks whether it runs on Colab, picks the
*profile* (``"sample"``: synthetic heads on a CPU in minutes; ``"full"``: NFBS
on a GPU) and loads its subjects as an index table. Keeping that here means a
chapter's set-up is three lines, and an instructor's assignment can reuse it.

Only what a chapter calls while it runs lives here. The book-build tooling (the
student and Colab editions, the nbgrader assignments) is not shipped with the
package: it is ``tools/bookbuild/`` in the repository.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import __version__
from .._docs import fill_doc
from ..errors import InvalidArgumentError, MissingFileError, SkullstripError
from ..inference import MODEL_FILE, BrainModel, load_model
from ..io import settings_key
from ..validate import check_choice, check_optional_int

if TYPE_CHECKING:  # TensorFlow is imported when a training configuration is made
    from ..train import TrainConfig

__all__ = ["BOOK_PROFILES", "finished_run", "in_colab", "keep_data_on_drive", "keep_student_run",
           "load_subjects", "models_to_compare", "print_config", "resolve_model",
           "resolve_profile", "source", "student_model", "student_run", "student_run_dir"]

BOOK_PROFILES = ("sample", "full")

# The sample profile's heads: the NFBS grid (256x256x192 at 1 mm) so that every
# chapter works on real-sized volumes; the seed keeps them the same everywhere.
SAMPLE_SEED = 0


def in_colab() -> bool:
    """True when running inside Google Colab.

    Examples
    --------
    >>> in_colab()
    False
    """
    return "google.colab" in sys.modules


def resolve_profile(profile: str | None = None) -> str:
    """The profile a notebook runs in.

    Parameters
    ----------
    profile : {"sample", "full"} or None
        An explicit choice (a papermill parameter), else the environment
        variable ``SKULLSTRIP_PROFILE``, else ``"full"`` on Colab and
        ``"sample"`` everywhere else.

    Returns
    -------
    str

    Raises
    ------
    InvalidArgumentError
        Not a book profile (a :class:`ValueError`); the message names
        ``profile`` or ``SKULLSTRIP_PROFILE``, whichever gave it.

    Examples
    --------
    >>> resolve_profile("full")
    'full'
    """
    name = "profile" if profile else "SKULLSTRIP_PROFILE"  # where to look, in a bad one's message
    profile = profile or os.environ.get("SKULLSTRIP_PROFILE") or (
        "full" if in_colab() else "sample")
    return check_choice(profile, name, BOOK_PROFILES)


@fill_doc
def load_subjects(profile: str = "sample", n_subjects: int | None = None, *,
                  data_dir: str | os.PathLike | None = None, seed: int = SAMPLE_SEED,
                  split_seed: int = 0, progress: bool = True,
                  **head_kwargs: Any) -> pd.DataFrame:
    """The subjects a chapter works on, as an index table.

    Parameters
    ----------
    profile : {"sample", "full"}
        ``"full"`` downloads NFBS (:func:`skullstrip_lib.datasets.fetch_nfbs`,
        1.75 GB once); ``"sample"`` writes synthetic heads in the NFBS layout
        (:func:`skullstrip_lib.synth.write_nfbs_dataset`, about 4 s each).
    n_subjects : int or None
        How many subjects; None means all 125 of NFBS, or 6 synthetic heads.
    %(data_dir)s
    seed : int
        Seed of the synthetic heads.
    split_seed : int
        Seed of the subject-level train/val/test split.
    progress : bool
        Show progress bars.
    **head_kwargs
        Synthetic heads only: :func:`skullstrip_lib.synth.make_head` arguments
        (``contrast="t2"``, ``voxel_size=...``); each combination gets its own
        folder, so chapters never overwrite one another's data.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``t1w``, ``brainmask``, ``brain``, ``split``
        (see :func:`skullstrip_lib.datasets.index_dataset`).

    Raises
    ------
    InvalidArgumentError
        A profile that is not a book's, *n_subjects* neither None nor a
        positive integer, or head arguments with the full profile (a
        :class:`ValueError`), before anything is fetched or written.

    Examples
    --------
    >>> import tempfile
    >>> index = load_subjects("sample", 1, data_dir=tempfile.mkdtemp(), progress=False)
    >>> index.columns.tolist()
    ['subject', 't1w', 'brainmask', 'brain', 'split']
    """
    from ..datasets import fetch_nfbs, get_data_dir, index_dataset

    profile = resolve_profile(profile)
    n_subjects = check_optional_int(n_subjects, "n_subjects")
    if profile == "full":
        if head_kwargs:
            names = ", ".join(sorted(head_kwargs))
            raise InvalidArgumentError(names, f"{'applies' if len(head_kwargs) == 1 else 'apply'}"
                                              " to synthetic heads only (the sample profile)")
        root = fetch_nfbs(data_dir, n_subjects=n_subjects, progressbar=progress)
        return _first(index_dataset(root, seed=split_seed), n_subjects, split_seed)

    from ..synth import write_nfbs_dataset

    n = 6 if n_subjects is None else n_subjects
    key = settings_key(seed, head_kwargs)
    folder = get_data_dir(data_dir) / "sample" / f"synth-{key}"
    write_nfbs_dataset(folder, n, seed=seed, progress=progress, **head_kwargs)
    return _first(index_dataset(folder, seed=split_seed), n, split_seed)


def _first(index: pd.DataFrame, n: int | None, split_seed: int) -> pd.DataFrame:
    # A folder made earlier for more subjects holds them all: keep the first n,
    # and split those n again so that every split gets its share.
    from ..datasets import split_subjects

    if n is None or len(index) <= n:
        return index
    index = index.head(n).reset_index(drop=True)
    return index.assign(split=index["subject"].map(split_subjects(index["subject"],
                                                                  seed=split_seed)))


@fill_doc
def resolve_model(model: str | os.PathLike | BrainModel | None = None, profile: str = "sample",
                  *, data_dir: str | os.PathLike | None = None) -> BrainModel:
    """The model a book chapter works with.

    Parameters
    ----------
    model : str, path-like, BrainModel or None
        An explicit choice (a notebook parameter): a bundled name, a model
        folder or file (see :func:`load_model`), or a training run folder
        (its ``export/`` is used). None picks by profile.
    profile : {"sample", "full"}
        With no explicit model, ``"sample"`` uses the bundled ``"default"``
        model (trained on synthetic heads) and ``"full"`` the NFBS-trained run
        of chapter 7: the first with an ``export/`` of ``<data dir>/runs/full``,
        ``<data dir>/runs/ch07-full`` (chapter 7's own folder) and the newest
        ``<data dir>/runs/ch07-full-*`` (earlier editions'). There is no
        fallback from one to the other: a chapter that scores NFBS subjects
        with a model trained on synthetic heads would measure something else.
    %(data_dir)s

    Returns
    -------
    BrainModel
        The explicit choice, else the profile's model, loaded.

    Raises
    ------
    MissingFileError
        The full profile, no explicit model, and no NFBS-trained run in the
        data folder (the message says what to run, or which ``model=`` to pass).

    Examples
    --------
    >>> resolve_model(None, "sample").name
    'default'
    """
    if isinstance(model, BrainModel):
        return model
    if model is None and resolve_profile(profile) == "full":
        from ..datasets import get_data_dir

        runs = get_data_dir(data_dir) / "runs"
        # runs/full if it exists, else chapter 7's run (runs/ch07-full; runs/ch07-full-* from
        # earlier editions of the book, newest first).
        found = [runs / "full", runs / "ch07-full",
                 *sorted(runs.glob("ch07-full-*"), key=lambda p: p.stat().st_mtime,
                         reverse=True)]
        model = next((run for run in found if (run / "export" / MODEL_FILE).is_file()), None)
        if model is None:
            raise MissingFileError(f"{runs}: {no_model_message(runs)}")
    elif model is None:
        model = "default"
    path = Path(model)
    if path.is_dir() and not (path / MODEL_FILE).is_file() and (path / "export").is_dir():
        path = path / "export"  # a training run: its exported model
        model = path
    return load_model(model)


def no_model_message(runs: Path) -> str:
    """What to do when a full-profile chapter finds no NFBS-trained run in ``runs``.

    On Colab every chapter runs on a fresh machine, so chapter 7's run reaches
    chapters 8-10 only through Google Drive: the message says so when this
    session's data folder is not there.

    Examples
    --------
    >>> print(no_model_message(Path("/data/runs")))  # doctest: +NORMALIZE_WHITESPACE
    no model trained on NFBS here: run chapter 7 in the full profile first (its run lands in
    /data/runs/ch07-full), or pass model=<a model folder, file or run> (model="default" is the
    bundled synthetic-head model)
    """
    message = (f"no model trained on NFBS here: run chapter 7 in the full profile first (its run "
               f"lands in {runs / 'ch07-full'}), or pass model=<a model folder, file or run> "
               f"(model=\"default\" is the bundled synthetic-head model)")
    if in_colab() and not str(runs).startswith("/content/drive/"):
        message += (". On Colab each chapter starts on a fresh machine: tick keep_on_drive in the "
                    "set-up cell of chapter 7 and of this chapter, so that chapter 7's run is kept "
                    "on Google Drive and found here, then run chapter 7 (about an hour on a T4)")
    elif in_colab():
        message += (". The data folder is on Google Drive: open chapter 7 from its badge, keep "
                    "keep_on_drive ticked, and run it to the end (about an hour on a T4)")
    return message


# --------------------------------------------------------------- the student's run (chapter 7)
# Chapter 7 trains a model in the sample profile; chapters 8-10 score it beside the bundled one.
# Every chapter must also run alone (a fresh Colab VM, a test running one chapter), so the run
# is kept in the data folder under a name made from its configuration: a chapter asks for the
# run of a configuration, finds it if chapter 7 (or another chapter) made it, and trains it
# otherwise, once. A changed configuration, or another library version, gets another folder.


def student_run_dir(config: TrainConfig, *, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder where the run of *config* is kept: ``<data dir>/runs/ch07-<profile>-<key>``.

    The key is a hash of the whole configuration (``config.to_dict()``) and of
    the library's version: the same configuration always names the same folder,
    and a changed one (another seed, more epochs) never finds a run made for
    the old one.

    Examples
    --------
    >>> import tempfile
    >>> from skullstrip_lib.train import resolve_config
    >>> folder = student_run_dir(resolve_config("sample"), data_dir=tempfile.mkdtemp())
    >>> folder.parent.name, folder.name.startswith("ch07-sample-")
    ('runs', True)
    >>> folder == student_run_dir(resolve_config("sample", epochs=2), data_dir=folder.parents[1])
    False
    """
    from ..datasets import get_data_dir

    key = settings_key(config.to_dict(), __version__)
    return get_data_dir(data_dir) / "runs" / f"ch07-{config.profile}-{key}"


def finished_run(run_dir: str | os.PathLike) -> bool:
    """True when *run_dir* is a training run that finished: configuration, summary and export.

    A run stopped before its end has no ``summary.json`` and no ``export/``
    (:func:`skullstrip_lib.train.train` writes both last), so it is never taken
    for a finished one.

    Examples
    --------
    >>> import tempfile
    >>> finished_run(tempfile.mkdtemp())
    False
    """
    run_dir = Path(run_dir)
    return all((run_dir / name).is_file() for name in
               ("config.yaml", "summary.json", f"export/{MODEL_FILE}", "export/model.onnx"))


def _replace_folder(source: Path, target: Path) -> None:
    # Move a finished folder into place; an earlier one of that name is moved aside first and
    # then deleted, so that the name never holds half of a run.
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    source.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _data_dir_set(data_dir: str | os.PathLike | None) -> Iterator[None]:
    # train.train caches its data in $SKULLSTRIP_DATA: point it at data_dir while it runs.
    if data_dir is None:
        yield
        return
    before = os.environ.get("SKULLSTRIP_DATA")
    os.environ["SKULLSTRIP_DATA"] = str(data_dir)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SKULLSTRIP_DATA", None)
        else:
            os.environ["SKULLSTRIP_DATA"] = before


@fill_doc
def keep_student_run(run_dir: str | os.PathLike, *,
                     data_dir: str | os.PathLike | None = None) -> Path:
    """Move chapter 7's finished run to the folder of its configuration, for chapters 8-10.

    The run becomes :func:`student_run_dir` of its own ``config.yaml``; an
    earlier run of the same configuration there is replaced by this one.

    Parameters
    ----------
    run_dir : path-like
        A finished run (:func:`finished_run`).
    %(data_dir)s

    Returns
    -------
    pathlib.Path
        Where the run now is.

    Raises
    ------
    SkullstripError
        *run_dir* is not a finished run (nothing is moved).
    """
    from ..train import read_config

    run_dir = Path(run_dir)
    if not finished_run(run_dir):
        raise SkullstripError(f"{run_dir}: not a finished training run (no summary.json and "
                              f"export/): finish it first (train.train(..., resume=True))")
    target = student_run_dir(read_config(run_dir / "config.yaml"), data_dir=data_dir)
    if run_dir.resolve() != target.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        _replace_folder(run_dir, target)
    return target


@fill_doc
def student_run(config: TrainConfig | None = None, *, data_dir: str | os.PathLike | None = None,
                progress: bool = False) -> Path:
    """Chapter 7's run of *config*: the one kept in the data folder, else trained here, once.

    Chapters 8-10 call it to score the student's own model. When chapter 7 ran
    with the same configuration in the same data folder, its run is there
    (:func:`keep_student_run`); otherwise (a chapter run alone, a fresh Colab
    machine) the run is trained now, exactly as chapter 7 trains it, with a
    printed line saying so, into a temporary folder that is moved into place
    only when it has finished: a killed training leaves nothing that would be
    taken for a run.

    Parameters
    ----------
    config : TrainConfig or None
        None: chapter 7's sample-profile run, ``train.resolve_config("sample")``
        (its profile's own 8 epochs of 10 steps; about 2 minutes on 2 CPU cores).
    %(data_dir)s
    progress : bool
        Progress bars while training.

    Returns
    -------
    pathlib.Path
        The finished run folder (:func:`student_run_dir`).
    """
    from ..train import resolve_config, train

    config = config if config is not None else resolve_config("sample")
    target = student_run_dir(config, data_dir=data_dir)
    if finished_run(target):
        return target
    print(f"chapter 7's run of this configuration is not in {target.parent}: training it here, "
          f"as chapter 7 does ({config.epochs} epochs of {config.steps_per_epoch} steps, "
          f"{config.profile} profile)", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with _data_dir_set(data_dir), warnings.catch_warnings():
            # Keras's and tf2onnx's routine notes (the finite validation set ran out, as it
            # should; NumPy's np.object probe): chapter 7 silences the same ones.
            warnings.filterwarnings("ignore", message=".*ran out of data")
            warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed")
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            train(config, work, progress=progress)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _replace_folder(work, target)
    return target


@fill_doc
def student_model(profile: str = "sample", *, data_dir: str | os.PathLike | None = None,
                  progress: bool = False) -> BrainModel:
    """The model the student trained in chapter 7, loaded.

    Parameters
    ----------
    profile : {"sample", "full"}
        ``"sample"``: chapter 7's sample run (:func:`student_run`; trained here
        if it is not in the data folder). ``"full"``: chapter 7's NFBS run
        (:func:`resolve_model`, which stops if there is none).
    %(data_dir)s
    progress : bool
        Progress bars, if it has to be trained.

    Returns
    -------
    BrainModel
    """
    if resolve_profile(profile) == "full":
        return resolve_model(None, "full", data_dir=data_dir)
    return load_model(student_run(data_dir=data_dir, progress=progress) / "export")


@fill_doc
def models_to_compare(model: BrainModel, profile: str = "sample", *,
                      data_dir: str | os.PathLike | None = None,
                      progress: bool = False) -> dict[str, BrainModel]:
    """The bundled model and the student's chapter 7 model, for a chapter to score side by side.

    Parameters
    ----------
    model : BrainModel
        The chapter's model (:func:`resolve_model`): the bundled one in the
        sample profile, chapter 7's NFBS run in the full profile.
    profile : {"sample", "full"}
        In the sample profile the student's model is chapter 7's sample run
        (:func:`student_model`); in the full profile it is *model* itself, and
        the bundled ``"default"`` model is loaded beside it.
    %(data_dir)s
    progress : bool
        Progress bars, if the student's run has to be trained.

    Returns
    -------
    dict of str to BrainModel
        ``{"bundled": ..., "yours": ...}``.
    """
    if resolve_profile(profile) == "full":
        return {"bundled": load_model("default"), "yours": model}
    return {"bundled": model, "yours": student_model("sample", data_dir=data_dir,
                                                     progress=progress)}


def keep_data_on_drive(folder: str = "skullstrip_data", *,
                       mount_point: str = "/content/drive") -> Path:
    """On Colab, keep the data folder on Google Drive, so it outlives the session.

    Every chapter opened from its Colab badge starts on a fresh machine. With
    the data folder on Drive, downloads (NFBS), preprocessing caches and
    chapter 7's training run persist from one chapter (and one day) to the
    next. Drive asks for permission the first time. Call it in the set-up
    cell, before anything reads the data folder: it sets ``SKULLSTRIP_DATA``
    (see :func:`skullstrip_lib.datasets.get_data_dir`) for this session.

    Parameters
    ----------
    folder : str
        The folder inside "My Drive".
    mount_point : str
        Where Drive is mounted.

    Returns
    -------
    pathlib.Path
        The data folder, created if needed.

    Raises
    ------
    SkullstripError
        Not running on Colab.

    Examples
    --------
    >>> in_colab() or keep_data_on_drive()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skullstrip_lib.errors.SkullstripError: keep_data_on_drive works on Colab only; ...
    """
    if not in_colab():
        raise SkullstripError("keep_data_on_drive works on Colab only; elsewhere set "
                              "SKULLSTRIP_DATA or pass data_dir")
    from google.colab import drive  # only on Colab

    drive.mount(mount_point)
    path = Path(mount_point) / "MyDrive" / folder
    path.mkdir(parents=True, exist_ok=True)
    os.environ["SKULLSTRIP_DATA"] = str(path)
    return path


def print_config() -> None:
    """Print the versions this chapter runs with, and the device (as MONAI's ``print_config``).

    Worth including in a question about a failing chapter: most problems are
    a version or a missing GPU. TensorFlow is reported only if it is already
    imported or importable, and not imported here for the check.

    Examples
    --------
    >>> print_config()  # doctest: +ELLIPSIS
    skullstrip_lib ... | Python ...
    numpy ... | nibabel ... | onnxruntime ...
    GPU: ...
    """
    import importlib.metadata as md
    import platform

    from .. import __version__

    names = ["numpy", "scipy", "nibabel", "SimpleITK", "nilearn", "nipype", "pandas",
             "onnxruntime", "tensorflow", "keras", "matplotlib"]
    print(f"skullstrip_lib {__version__} | Python {platform.python_version()} "
          f"({platform.machine()}) | {os.cpu_count()} CPU cores"
          f"{' | Colab' if in_colab() else ''}")
    versions = []
    for name in names:
        try:
            versions.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            versions.append(f"{name} -")
    print(" | ".join(versions))
    if "tensorflow" in sys.modules:
        gpus = sys.modules["tensorflow"].config.list_physical_devices("GPU")
        print("GPU:", ", ".join(g.name for g in gpus) if gpus else "none (TensorFlow sees no GPU)")


def source(function, *, start: str | None = None, stop: str | None = None) -> str:
    """A library function's real source, as the installed package has it, docstring left out.

    What a chapter shows where it first uses a function (``display(Code(...))``): read
    with :func:`inspect.getsource`, never a copy that could drift from the code. The
    docstring is left out (the API page has it); *start* and *stop* cut out the core
    of a long function: from the first line containing *start* to the first line
    after it containing *stop*, both included.

    Parameters
    ----------
    function : callable
        A function of the library (or any Python function with a source file).
    start, stop : str, optional
        Text on the first and on the last line to show.

    Returns
    -------
    str
        The source, headed by a comment naming the module, the function and the
        lines shown.

    Raises
    ------
    ValueError
        *start* or *stop* is not in the function's source.

    Examples
    --------
    >>> from skullstrip_lib import inference
    >>> print(source(inference.predict))  # doctest: +ELLIPSIS
    # skullstrip_lib/inference.py, lines ...: predict
    def predict(scan: Scan, model: BrainModel) -> Prediction:
        image, grid = prepare_input(scan, model.config)
    ...
    """
    import ast
    import inspect
    import textwrap

    lines, first = inspect.getsourcelines(function)
    node = ast.parse(textwrap.dedent("".join(lines))).body[0]
    body = getattr(node, "body", [])
    drop: set[int] = set()  # 0-based line numbers of the docstring
    if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        drop = set(range(body[0].lineno - 1, body[0].end_lineno))
    numbered = [(first + i, line) for i, line in enumerate(lines) if i not in drop]
    if start is not None or stop is not None:
        begin = next((k for k, (_, line) in enumerate(numbered)
                      if start is None or start in line), None)
        if begin is None:
            raise ValueError(f"{function.__qualname__}: no line contains {start!r}")
        end = next((k for k, (_, line) in enumerate(numbered) if k >= begin
                    and (stop is None or stop in line)), None)
        if end is None:
            raise ValueError(f"{function.__qualname__}: no line after {start!r} contains {stop!r}")
        numbered = numbered[begin:end + 1]
    module = inspect.getsourcefile(function) or "?"
    package = Path(module).resolve()
    shown = next((package.relative_to(parent).as_posix() for parent in package.parents
                  if (parent / "skullstrip_lib").is_dir()), package.name)
    head = (f"# {shown}, lines {numbered[0][0]}-{numbered[-1][0]}: {function.__qualname__}"
            + (" (an excerpt)" if start or stop else "") + "\n")
    return head + textwrap.dedent("".join(line for _, line in numbered)).rstrip("\n")
