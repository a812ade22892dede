"""The nipype batch workflow: plugins, skipping finished subjects, isolating failures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from skullstrip_lib.datasets import index_dataset
from skullstrip_lib.preprocess import PreprocessConfig
from skullstrip_lib.workflow import run_preprocessing

CONFIG = PreprocessConfig(shape=(40, 48, 56), spacing=4.0, n4_iterations=(10, 10))


@pytest.mark.parametrize("plugin", ["Linear", "MultiProc"])
def test_workflow_runs_skips_and_reports_failures(small_dataset, tmp_path, plugin):
    index = index_dataset(small_dataset)
    assert len(index) == 4
    # Break one subject: its T1w becomes a text file.
    broken = tmp_path / "broken.nii.gz"
    broken.write_text("not an image")
    original = index.loc[1, "t1w"]
    index.loc[1, "t1w"] = str(broken)
    bad_subject = index.loc[1, "subject"]

    out = tmp_path / "prep"
    report = run_preprocessing(index, out, CONFIG, plugin=plugin, workers=2, progress=False)
    status = dict(zip(report["subject"], report["status"], strict=True))
    assert status.pop(bad_subject) == "failed"
    assert set(status.values()) == {"done"}
    err = report.set_index("subject").loc[bad_subject, "error"]
    assert "broken.nii.gz: not a NIfTI, MGH/MGZ, Analyze or MINC image" in err
    assert not (out / bad_subject).exists()  # nothing half-written
    assert set(report["split"]) <= {"train", "val", "test"}
    assert not list(out.glob(".work-*"))  # nipype's working folder is cleaned up
    on_disk = pd.read_csv(out / "preprocessed.csv")
    assert list(on_disk["subject"]) == list(report["subject"])

    # A second run skips the finished subjects and retries only the failed one.
    index.loc[1, "t1w"] = original
    report2 = run_preprocessing(index, out, CONFIG, plugin=plugin, workers=2, progress=False)
    status2 = dict(zip(report2["subject"], report2["status"], strict=True))
    assert status2.pop(bad_subject) == "done"
    assert set(status2.values()) == {"skipped"}


def test_duplicate_subjects_are_refused(small_dataset, tmp_path):
    index = index_dataset(small_dataset)
    twice = pd.concat([index, index.iloc[:1]])
    with pytest.raises(Exception, match="appears twice"):
        run_preprocessing(twice, tmp_path, CONFIG, progress=False)


def test_missing_input_file_is_reported(small_dataset, tmp_path):
    index = index_dataset(small_dataset).iloc[:2].copy()
    copy = tmp_path / "copy.nii.gz"
    shutil.copy(index.loc[0, "t1w"], copy)
    index.loc[0, "t1w"] = str(copy)
    copy.unlink()
    report = run_preprocessing(index, tmp_path / "prep", CONFIG, progress=False)
    row = report.set_index("subject").loc[index.loc[0, "subject"]]
    assert row["status"] == "failed" and "copy.nii.gz" in row["error"]


class _FakeWorkflow:
    """Stands in for the nipype workflow: records how it was asked to run."""

    def __init__(self, todo, calls, threads):
        self.todo, self.calls, self.threads = todo, calls, threads

    def run(self, plugin, plugin_args=None):
        if not isinstance(plugin, str):  # a plugin object, as nipype's Workflow.run takes it
            plugin, plugin_args = type(plugin).__name__.removesuffix("Plugin"), plugin.plugin_args
        self.calls.append((plugin, plugin_args.get("n_procs"), self.threads))
        nodes = [SimpleNamespace(name=f"preprocess{i}", result=SimpleNamespace(
                     outputs=SimpleNamespace(result=json.dumps(
                         {"subject": s, "status": "done", "error": ""}))))
                 for i, s in enumerate(self.todo["subject"])]
        return SimpleNamespace(nodes=lambda: nodes)


@pytest.fixture
def run_calls(monkeypatch):
    """Plugin, processes and SimpleITK threads ``run_preprocessing`` chose, without nipype."""
    from skullstrip_lib import workflow

    calls = []
    monkeypatch.setattr(workflow, "_build",
                        lambda todo, *args: _FakeWorkflow(todo, calls, args[-1]))
    return calls


def _cores(monkeypatch, n):
    from skullstrip_lib import workflow

    monkeypatch.setattr(workflow.os, "sched_getaffinity", lambda pid: set(range(n)),
                        raising=False)
    monkeypatch.setattr(workflow.os, "cpu_count", lambda: n)


def test_default_plugin_is_multiproc_with_one_worker_per_core(small_dataset, tmp_path,
                                                              run_calls, monkeypatch):
    from skullstrip_lib.workflow import default_workers

    index = index_dataset(small_dataset).iloc[:2]
    # This machine: as many processes as cores.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == cores
    run_preprocessing(index, tmp_path / "here", CONFIG, progress=False)
    assert run_calls[-1] == (("MultiProc", cores, 1) if cores > 1 else ("Linear", None, 0))

    # Colab: two workers, each running N4 on one thread (0: SimpleITK's default, all cores).
    _cores(monkeypatch, 2)
    run_preprocessing(index, tmp_path / "two", CONFIG, progress=False)
    assert run_calls[-1] == ("MultiProc", 2, 1)
    _cores(monkeypatch, 1)  # one core: subjects one after another, in this process
    run_preprocessing(index, tmp_path / "one", CONFIG, progress=False)
    assert run_calls[-1] == ("Linear", None, 0)
    # Explicit choices win over the defaults.
    run_preprocessing(index, tmp_path / "three", CONFIG, workers=3, progress=False)
    assert run_calls[-1] == ("MultiProc", 3, 1)
    _cores(monkeypatch, 8)
    run_preprocessing(index, tmp_path / "linear", CONFIG, plugin="Linear", progress=False)
    assert run_calls[-1] == ("Linear", None, 0)
    run_preprocessing(index, tmp_path / "four", CONFIG, workers=4, progress=False)
    assert run_calls[-1] == ("MultiProc", 4, 2)  # 8 cores, 4 workers: 2 threads each


def test_default_workers_without_sched_getaffinity(monkeypatch):
    from skullstrip_lib import workflow

    monkeypatch.delattr(workflow.os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(workflow.os, "cpu_count", lambda: 6)
    assert workflow.default_workers() == 6
    monkeypatch.setattr(workflow.os, "cpu_count", lambda: None)  # unknown
    assert workflow.default_workers() == 1


# --------------------------------------------------------------------------- signals
def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux's /proc), its workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize(("signame", "plugin"), [("SIGTERM", "MultiProc"), ("SIGINT", "MultiProc"),
                                                 ("SIGTERM", "Linear"), ("SIGINT", "Linear")])
def test_signal_mid_run_stops_cleanly(small_dataset, tmp_path, signame, plugin):
    """SIGTERM, or Ctrl-C (SIGINT to the whole process group, as a terminal sends it), to
    ``skullstrip preprocess`` once its first subject is done: no further subject starts,
    the workers end with the parent, the .work folder goes, preprocessed.csv lists the
    finished subjects, and the command says so in one line, exit 128 + the signal."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    command = [sys.executable, "-m", "skullstrip_lib", "preprocess", str(small_dataset), "-o",
               str(out), "-q", "--plugin", plugin, "--workers", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, as in a terminal
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/*_preproc.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no subject finished in 2 minutes"
            time.sleep(0.02)
        workers = _children(proc.pid)
        sig = getattr(signal, signame)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skullstrip preprocess: interrupted: {signame}: stopped after ")
    assert "rerun to go on" in lines[0]
    assert (len(workers) == 2) == (plugin == "MultiProc")
    time.sleep(0.5)
    assert not [w for w in workers if _running(w)]  # ended with their parent
    assert not list(out.glob(".work-*"))
    assert not list(out.glob("*/.*"))  # no hidden temporary of a write cut short
    finished = sorted(p.parent.name for p in out.glob("*/*_preproc.json"))
    report = pd.read_csv(out / "preprocessed.csv")
    assert sorted(report["subject"]) == finished  # exactly the finished subjects
    assert set(report["status"]) == {"done"}
    assert len(finished) < 4  # the others were not processed after the signal
    time.sleep(2)  # and nothing goes on writing after the exit
    assert sorted(p.parent.name for p in out.glob("*/*_preproc.json")) == finished
    if (signame, plugin) != ("SIGTERM", "MultiProc"):
        return
    # A rerun goes on from there.
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    report = pd.read_csv(out / "preprocessed.csv")
    assert sorted(report["subject"]) == sorted(index_dataset(small_dataset)["subject"])
    assert set(report.loc[report["subject"].isin(finished), "status"]) == {"skipped"}


def test_the_voxel_limit_reaches_multiproc_workers(small_dataset, tmp_path):
    # MultiProc's workers are other processes: the caller's limit must travel with the node,
    # both ways (a small limit refuses the 64x64x48 heads there, the default accepts them).
    from skullstrip_lib.io import voxel_limit

    index = index_dataset(small_dataset).iloc[:2]
    with voxel_limit(1000):
        report = run_preprocessing(index, tmp_path / "small", CONFIG, plugin="MultiProc",
                                   workers=2, progress=False)
    assert set(report["status"]) == {"failed"}
    assert all("more than the 1,000 accepted" in e for e in report["error"])
    report = run_preprocessing(index, tmp_path / "default", CONFIG, plugin="MultiProc",
                               workers=2, progress=False)
    assert set(report["status"]) == {"done"}


def test_nipype_network_check_is_off_for_the_run_only(small_dataset, tmp_path, monkeypatch):
    # nipype's version check over the network is switched off while the workflow runs
    # (Linear runs the nodes in this process, so a node sees the variable) and the
    # environment is left as it was found.
    import skullstrip_lib.workflow as workflow

    monkeypatch.delenv("NIPYPE_NO_ET", raising=False)
    seen = []
    real = workflow.run_one

    def spy(*args):
        seen.append(os.environ.get("NIPYPE_NO_ET"))
        return real(*args)

    monkeypatch.setattr(workflow, "run_one", spy)
    index = index_dataset(small_dataset).iloc[:1]
    report = run_preprocessing(index, tmp_path / "prep", CONFIG, plugin="Linear", progress=False)
    assert list(report["status"]) == ["done"]
    assert seen == ["1"]
    assert "NIPYPE_NO_ET" not in os.environ

    # A user's own setting stands, and stays.
    monkeypatch.setenv("NIPYPE_NO_ET", "0")
    seen.clear()
    run_preprocessing(index, tmp_path / "prep2", CONFIG, plugin="Linear", progress=False)
    assert seen == ["0"]
    assert os.environ["NIPYPE_NO_ET"] == "0"


def test_a_bad_worker_count_is_named_before_anything_is_made(tmp_path):
    from skullstrip_lib.errors import InvalidArgumentError

    index = pd.DataFrame({"subject": ["A"], "t1w": [str(tmp_path / "A.nii.gz")]})
    for workers in (0, 1.5):
        with pytest.raises(InvalidArgumentError,
                           match=f"^workers must be an integer >= 1, got {workers}$"):
            run_preprocessing(index, tmp_path / "out", CONFIG, workers=workers, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_report_is_never_written_over_a_listed_file(small_dataset, tmp_path):
    from skullstrip_lib.errors import InvalidInputError

    index = index_dataset(small_dataset).iloc[:1]
    out = tmp_path / "out"
    out.mkdir()
    scan = out / "preprocessed.csv"  # a scan (or mask) that happens to be named so
    scan.write_bytes(Path(index["t1w"].iloc[0]).read_bytes())
    with pytest.raises(InvalidInputError, match=rf"^{scan}: is an input of this run"):
        run_preprocessing(index.assign(t1w=str(scan)), out, CONFIG, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["preprocessed.csv"]
    assert scan.read_bytes() == Path(index["t1w"].iloc[0]).read_bytes()
