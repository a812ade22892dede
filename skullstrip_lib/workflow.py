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

On a SLURM cluster, put ``out_dir`` on a shared file system and run, e.g.::

    skullstrip preprocess index.csv -o /shared/prep --plugin SLURM \\
        --plugin-args '{"sbatch_args": "--time=00:20:00 --mem=4G"}'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .errors import SkullstripError
from .io import atomic_write_text
from .preprocess import PreprocessConfig, cache_key, is_complete, output_paths

__all__ = ["default_workers", "run_one", "run_preprocessing"]


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
            overwrite: bool, threads: int = 0) -> dict:
    """Preprocess one subject and report the outcome instead of raising.

    Used inside the workflow's nodes: a failure becomes ``status="failed"`` with
    a one-line ``error`` so that nipype carries on with the other subjects.
    ``threads`` > 0 sets SimpleITK's threads in this process (``MultiProc``'s
    workers share the cores; each one running N4 on every core only adds
    switching); 0 leaves SimpleITK's default, every core.
    """
    from .preprocess import PreprocessConfig, preprocess_subject

    cfg = PreprocessConfig.from_dict(config)
    if threads > 0 and cfg.n4 == "simpleitk":
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        result = preprocess_subject(subject, t1w, out_dir, brainmask or None, cfg,
                                    overwrite=overwrite)
    except Exception as exc:  # report every failure, keep the others running
        line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"subject": subject, "status": "failed", "error": line}
    return {**result, "error": ""}


def _node_function(subject, t1w, brainmask, out_dir, config_json, overwrite, threads):
    # nipype runs this from its source text: it must import what it uses itself.
    import json

    from skullstrip_lib.workflow import run_one

    return json.dumps(run_one(subject, t1w, brainmask, out_dir, json.loads(config_json),
                              overwrite, threads))


def _build(todo: pd.DataFrame, out_dir: Path, config: PreprocessConfig, overwrite: bool,
           work_dir: Path, threads: int = 0):
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no version check over the network
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
                                      "overwrite", "threads"],
                         output_names=["result"], function=_node_function), name="preprocess")
    prep.inputs.out_dir = str(out_dir)
    prep.inputs.config_json = json.dumps(config.to_dict())
    prep.inputs.overwrite = overwrite
    prep.inputs.threads = int(threads)
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
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per subject: ``subject``, ``status`` (done, skipped or failed),
        ``error``, ``seconds``, output paths ``t1w``, ``brainmask``, ``json`` and
        ``split`` when the index had one. Also written to
        ``out_dir/preprocessed.csv``.
    """
    config = config or PreprocessConfig()
    workers = default_workers() if workers is None else int(workers)
    if plugin is None:
        plugin = "MultiProc" if workers > 1 else "Linear"
    out_dir = Path(out_dir).absolute()
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
            todo.append({"subject": row.subject, "t1w": str(row.t1w), "brainmask": mask})

    if todo:
        todo_df = pd.DataFrame(todo)
        bar = tqdm(total=len(todo_df), desc="preprocess", unit="subject", disable=not progress)

        def status(node, event):  # nipype calls this as nodes start and end
            if node.name.startswith("preprocess") and event in ("end", "exception"):
                bar.update(1)

        args = {"status_callback": status, **(plugin_args or {})}
        threads = 0  # SimpleITK's default: every core
        if plugin == "MultiProc":
            args.setdefault("n_procs", workers)
            # The workers share the cores: N4 in each on its share of them.
            threads = max(1, default_workers() // int(args["n_procs"]))
        work_dir = Path(tempfile.mkdtemp(prefix=".work-", dir=out_dir))
        try:
            graph = _build(todo_df, out_dir, config, overwrite, work_dir, threads).run(
                plugin=plugin, plugin_args=args)
            for node in graph.nodes():
                if node.name.startswith("preprocess"):
                    rows.append(json.loads(node.result.outputs.result))
        finally:
            bar.close()
            shutil.rmtree(work_dir, ignore_errors=True)

    report = pd.DataFrame(rows)
    if "split" in index:
        report = report.merge(index[["subject", "split"]], on="subject", how="left")
    report = report.sort_values("subject").reset_index(drop=True)
    atomic_write_text(out_dir / "preprocessed.csv", report.to_csv(index=False))
    return report
