"""Preprocess many subjects as a nipype workflow.

nipype describes a pipeline as a graph of nodes and runs it with a *plugin*:
``Linear`` (one subject after another, in this process), ``MultiProc`` (several
at once on this machine) or a cluster scheduler (``SLURM``, ``SGE``, ...) that
submits one job per node. The same workflow runs everywhere; only the plugin
changes. By default it is ``MultiProc`` with one process per core (``Linear`` on
a single core). Here every subject is one node running
:func:`skullstrip_lib.preprocess.preprocess_subject`.

Re-running is cheap: a subject whose outputs were made from the same inputs and
parameters is skipped before the workflow is built. A subject that fails is
reported with its error while the others go on.

Stopping is clean: Ctrl-C (SIGINT) or SIGTERM while the workflow runs starts no
further subject, ends the worker processes with the parent (the ones busy in a
long C call within seconds, else they are killed), removes their half-written
temporaries and nipype's working folder, writes ``preprocessed.csv`` for the
subjects that finished, and raises :class:`Interrupted` (a
:class:`KeyboardInterrupt`) that says so in one line. A rerun goes on from there.

On a SLURM cluster, put ``out_dir`` on a shared file system and run, e.g.::

    skullstrip preprocess index.csv -o /shared/prep --plugin SLURM \\
        --plugin-args '{"sbatch_args": "--time=00:20:00 --mem=4G"}'
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ._docs import fill_doc
from ._nipype import nipype_offline
from .errors import Interrupted, InvalidArgumentError, SkullstripError
from .io import atomic_write_text, check_not_an_input, current_voxel_limit
from .preprocess import PreprocessConfig, cache_key, is_complete, output_paths
from .validate import check_int

__all__ = ["Interrupted", "default_workers", "run_one", "run_preprocessing"]


class _Stop(BaseException):
    """Raised by the signal handler in the main thread: not an ``Exception``, so that
    nipype's ``except Exception`` around a node does not take it for a failed subject."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """Which signal stopped the run (``signum``), once one has."""

    signum: int | None = None

    def check(self) -> None:
        """Raise :class:`_Stop` if a signal came: called before each subject starts."""
        if self.signum is not None:
            raise _Stop(self.signum)


_NIPYPE_LOGGERS = ("nipype.workflow", "nipype.interface", "nipype.utils")


@contextlib.contextmanager
def _stopped_by_signals(state: _Signals) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`_Stop` in this process.

    The signal is remembered (``state.signum``), since nipype
    takes what a node raises, even a ``BaseException``, for that node's failure
    and would go on with the next subject: the status callback checks it before
    each subject starts. nipype's logs of the interrupted node (a crash report
    with its traceback) are muted from then on: an interruption is not a crash.

    ``MultiProc``'s workers are forked inside the block and inherit the handler;
    in them it does what the parent needs instead: SIGINT (Ctrl-C reaches the
    whole process group) is ignored, since the parent decides; SIGTERM (the
    parent ending them) ends the worker as the default action would, without
    a traceback. Outside the main thread (where Python cannot set handlers)
    nothing changes.
    """
    import logging

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    loggers = [logging.getLogger(name) for name in _NIPYPE_LOGGERS]
    muted = [log.disabled for log in loggers]

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker
            if signum == signal.SIGTERM:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            return
        state.signum = signum
        for log in loggers:
            log.disabled = True
        raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for log, was in zip(loggers, muted, strict=True):
            log.disabled = was


def _plugin(name: str, plugin_args: dict):
    """The nipype plugin object ``Workflow.run(plugin=name)`` would make (we keep a hold on
    ``MultiProc``'s process pool, to end it on a signal)."""
    import nipype.pipeline.plugins as plugins

    try:
        cls = getattr(plugins, f"{name}Plugin")
    except AttributeError:
        raise InvalidArgumentError("plugin", f"must name a nipype plugin (Linear, MultiProc, "
                                             f"SLURM, SGE, ...), got {name!r}") from None
    return cls(plugin_args=plugin_args)


def _end_workers(pool=None, grace_s: float = 5.0) -> None:
    """End this process's worker processes (``MultiProc``'s pool): SIGTERM, then SIGKILL.

    A worker in the middle of a long C call (N4) runs its handler when the call
    returns; one still alive after ``grace_s`` seconds is killed. The pool is
    then shut down, its pending subjects cancelled; the futures of the ended
    workers fail with ``BrokenProcessPool``, which nipype's callback would log as
    a traceback: expected here, so that log is muted while the pool winds down.
    """
    import logging

    log = logging.getLogger("concurrent.futures")
    was = log.disabled
    log.disabled = True
    try:
        children = multiprocessing.active_children()
        for child in children:
            child.terminate()
        for child in children:
            child.join(grace_s)
            if child.is_alive():
                child.kill()
                child.join(grace_s)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        log.disabled = was


def _remove_temporaries(out_dir: Path, subjects: list[str]) -> None:
    """Remove the hidden temporaries (:func:`skullstrip_lib.io.atomic_path`) that workers
    ended mid-write left in these subjects' folders, and the folders left empty; finished
    files are untouched (a subject is complete once its JSON is written, last)."""
    for subject in subjects:
        folder = out_dir / subject
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder made for a write that never was
                folder.rmdir()


def default_workers() -> int:
    """Processes :func:`run_preprocessing` uses by default: one per available core.

    The cores this process may run on (``os.sched_getaffinity``, which respects
    ``taskset`` and a cluster job's CPU set) where the system tells, else
    ``os.cpu_count()``; at least 1.

    Examples
    --------
    >>> default_workers() >= 1
    True
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    return max(1, n)


def run_one(subject: str, t1w: str, brainmask: str, out_dir: str, config: dict,
            overwrite: bool, threads: int = 0, max_voxels: int | None = None) -> dict:
    """Preprocess one subject and report the outcome instead of raising.

    Used inside the workflow's nodes: a failure becomes ``status="failed"`` with
    a one-line ``error`` so that nipype carries on with the other subjects.
    ``threads`` > 0 sets SimpleITK's threads in this process (``MultiProc``'s
    workers share the cores; each one running N4 on every core only adds
    switching); 0 leaves SimpleITK's default, every core. ``max_voxels`` is the
    largest scan accepted (:func:`skullstrip_lib.io.voxel_limit`): passed in,
    because ``MultiProc``'s workers are other processes, which do not share the
    caller's setting; None keeps the default.
    """
    from .io import MAX_VOXELS, voxel_limit
    from .preprocess import PreprocessConfig, preprocess_subject

    cfg = PreprocessConfig.from_dict(config)
    if threads > 0 and cfg.n4 == "simpleitk":
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        with voxel_limit(max_voxels or MAX_VOXELS):
            result = preprocess_subject(subject, t1w, out_dir, brainmask or None, cfg,
                                        overwrite=overwrite)
    except Exception as exc:  # report every failure, keep the others running
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"subject": subject, "status": "failed", "error": line}
    return {**result, "error": ""}


def _node_function(subject, t1w, brainmask, out_dir, config_json, overwrite, threads,
                   max_voxels):
    # nipype runs this from its source text: it must import what it uses itself.
    import json

    from skullstrip_lib.workflow import run_one

    return json.dumps(run_one(subject, t1w, brainmask, out_dir, json.loads(config_json),
                              overwrite, threads, max_voxels))


def _build(todo: pd.DataFrame, out_dir: Path, config: PreprocessConfig, overwrite: bool,
           work_dir: Path, threads: int = 0):
    from nipype import Node, Workflow, logging
    from nipype.interfaces.utility import Function, IdentityInterface

    logging.getLogger("nipype.workflow").setLevel("WARNING")
    logging.getLogger("nipype.interface").setLevel("WARNING")

    source = Node(IdentityInterface(fields=["subject", "t1w", "brainmask"]), name="subjects")
    source.iterables = [
        ("subject", list(todo["subject"])),
        ("t1w", list(todo["t1w"])),
        ("brainmask", [m if isinstance(m, str) else "" for m in todo["brainmask"]]),
    ]
    source.synchronize = True  # one node per row, not every combination
    prep = Node(Function(input_names=["subject", "t1w", "brainmask", "out_dir", "config_json",
                                      "overwrite", "threads", "max_voxels"],
                         output_names=["result"], function=_node_function), name="preprocess")
    prep.inputs.out_dir = str(out_dir)
    prep.inputs.config_json = json.dumps(config.to_dict())
    prep.inputs.overwrite = overwrite
    prep.inputs.threads = int(threads)
    prep.inputs.max_voxels = current_voxel_limit()  # the workers are other processes
    wf = Workflow(name="skullstrip_preprocess", base_dir=str(work_dir))
    wf.connect(source, "subject", prep, "subject")
    wf.connect(source, "t1w", prep, "t1w")
    wf.connect(source, "brainmask", prep, "brainmask")
    wf.config["execution"].update({
        # MultiProc looks for finished nodes and starts new ones at each poll (2 s
        # by default): a core would sit idle for up to that long after each
        # subject, which takes a few seconds. Polling costs next to nothing.
        "poll_sleep_duration": "0.5",
        "stop_on_first_crash": "false",
        "crashdump_dir": str(work_dir / "crash"),
        "create_report": "false",
        "remove_unnecessary_outputs": "false",
    })
    wf.config["logging"] = {"log_to_file": "false", "workflow_level": "WARNING",
                            "interface_level": "WARNING"}
    return wf


@fill_doc
def run_preprocessing(
    index: pd.DataFrame,
    out_dir: str | os.PathLike,
    config: PreprocessConfig | None = None,
    *,
    plugin: str | None = None,
    workers: int | None = None,
    plugin_args: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Preprocess every subject of an index with a nipype workflow.

    Parameters
    ----------
    index : pandas.DataFrame
        One row per subject with columns ``subject``, ``t1w`` and optionally
        ``brainmask`` and ``split`` (see :func:`skullstrip_lib.datasets.index_dataset`).
    out_dir : path-like
        Output root; each subject gets ``out_dir/<subject>/``.
    config : PreprocessConfig, optional
        Preprocessing parameters.
    plugin : str, optional
        nipype execution plugin: ``"Linear"``, ``"MultiProc"``, ``"SLURM"``, ...
        By default ``"MultiProc"`` when ``workers`` is more than one, else
        ``"Linear"`` (one subject after another, in this process).
    workers : int, optional
        Processes for ``MultiProc``; by default one per core this process may
        use (:func:`default_workers`), so a two-core machine (Colab) preprocesses
        two subjects at a time and a one-core machine runs ``Linear``.
    plugin_args : dict, optional
        Extra plugin arguments (e.g. ``{"sbatch_args": "--mem=4G"}`` for SLURM).
    overwrite : bool
        Redo subjects whose outputs came from other inputs or parameters.
    %(progress)s

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject``, ``status`` (done, skipped or failed),
        ``error``, ``seconds``, output paths ``t1w``, ``brainmask``, ``json`` and
        ``split`` when the index had one. Also written to
        ``out_dir/preprocessed.csv``.

    Raises
    ------
    Interrupted
        SIGINT (Ctrl-C) or SIGTERM while the workflow ran: no further subject
        was started, the workers ended, ``preprocessed.csv`` lists the subjects
        that finished (and those skipped) and no other, nothing is left
        half-written; the message says so in one line.
    InvalidArgumentError
        ``workers`` not a positive integer, or ``plugin`` not a nipype plugin.
    InvalidInputError
        ``out_dir/preprocessed.csv`` would be one of the scans or masks the index
        lists (an output never replaces an input).
    """
    config = config or PreprocessConfig()
    workers = default_workers() if workers is None else check_int(workers, "workers", 1)
    if plugin is None:
        plugin = "MultiProc" if workers > 1 else "Linear"
    out_dir = Path(out_dir).absolute()
    check_not_an_input([out_dir / "preprocessed.csv"],
                       (p for column in ("t1w", "brainmask") if column in index
                        for p in index[column].dropna()))
    out_dir.mkdir(parents=True, exist_ok=True)
    if "brainmask" not in index:
        index = index.assign(brainmask=None)
    if index["subject"].duplicated().any():
        dup = index.loc[index["subject"].duplicated(), "subject"].iloc[0]
        raise SkullstripError(f"subject {dup} appears twice in the index")

    rows, todo = [], []
    for row in index.itertuples(index=False):
        mask = row.brainmask if isinstance(row.brainmask, str) and row.brainmask else None
        try:
            key = cache_key(row.t1w, mask, config)
        except OSError as exc:
            rows.append({"subject": row.subject, "status": "failed",
                         "error": f"{exc.filename}: {exc.strerror}"})
            continue
        if is_complete(out_dir, row.subject, key):
            paths = output_paths(out_dir, row.subject)
            rows.append({"subject": row.subject, "status": "skipped", "error": "",
                         "seconds": 0.0, **{k: str(p) for k, p in paths.items()}})
        else:
            todo.append({"subject": row.subject, "t1w": str(row.t1w), "brainmask": mask,
                         "key": key})

    interrupted = None
    if todo:
        todo_df = pd.DataFrame(todo).drop(columns="key")
        bar = tqdm(total=len(todo_df), desc="preprocess", unit="subject", disable=not progress)
        finished: list[dict] = []  # what each node returned, as it ended

        signals = _Signals()

        def status(node, event):  # nipype calls this as nodes start and end
            if event == "start":
                signals.check()  # no subject starts after a signal
            if node.name.startswith("preprocess") and event in ("end", "exception"):
                bar.update(1)
                with contextlib.suppress(Exception):  # only used after an interruption
                    finished.append(json.loads(node.result.outputs.result))

        args = {"status_callback": status, **(plugin_args or {})}
        threads = 0  # SimpleITK's default: every core
        if plugin == "MultiProc":
            args.setdefault("n_procs", workers)
            # The workers share the cores: N4 in each on its share of them.
            threads = max(1, default_workers() // int(args["n_procs"]))
        work_dir = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
        runner = None
        try:
            with _stopped_by_signals(signals), nipype_offline():
                runner = _plugin(plugin, args)
                graph = _build(todo_df, out_dir, config, overwrite, work_dir, threads).run(
                    plugin=runner)
            if signals.signum is None:
                for node in graph.nodes():
                    if node.name.startswith("preprocess"):
                        rows.append(json.loads(node.result.outputs.result))
        except BaseException:
            # After a signal nipype may raise anything (the interrupted node's error,
            # "did not execute cleanly"): an interruption. Before one, a real error.
            if signals.signum is None:
                raise
        finally:
            interrupted = signals.signum
            bar.close()
            if interrupted is not None:
                _end_workers(getattr(runner, "pool", None))
                _remove_temporaries(out_dir, list(todo_df["subject"]))
            shutil.rmtree(work_dir, ignore_errors=True)
        if interrupted is not None:
            # What the nodes that ended returned (failures too), and any subject whose
            # outputs are complete on disk although its end was not reported.
            ran = {r["subject"]: r for r in finished if isinstance(r, dict) and "subject" in r}
            for item in todo:
                if item["subject"] not in ran and is_complete(out_dir, item["subject"],
                                                              item["key"]):
                    paths = output_paths(out_dir, item["subject"])
                    ran[item["subject"]] = {"subject": item["subject"], "status": "done",
                                            "error": "", **{k: str(p) for k, p in paths.items()}}
            rows += list(ran.values())

    report = pd.DataFrame(rows, columns=None if rows else ["subject", "status", "error"])
    if "split" in index:
        report = report.merge(index[["subject", "split"]], on="subject", how="left")
    if len(report):
        report = report.sort_values("subject").reset_index(drop=True)
    atomic_write_text(out_dir / "preprocessed.csv", report.to_csv(index=False))
    if interrupted is not None:
        name = signal.Signals(interrupted).name
        ran = len(report) - (len(index) - len(todo))
        left = len(todo) - ran
        raise Interrupted(f"{name}: stopped after {ran} of {len(todo)} subjects to do; "
                          f"{out_dir / 'preprocessed.csv'} lists the {len(report)} finished "
                          f"or skipped, {left} not started or cut short were not processed "
                          "(nothing half-written); rerun to go on", interrupted)
    return report
