"""The skullstrip command: help, errors in one line with a non-zero exit, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from skullstrip_lib.cli import build_parser, main

COMMANDS = ["fetch", "index", "synth", "preprocess", "train", "export", "evaluate", "predict"]


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "skullstrip_lib", *args], capture_output=True,
                          text=True, **kwargs)


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys; from skullstrip_lib.cli import build_parser; build_parser(); "
            "import skullstrip_lib; heavy = [m for m in ('tensorflow', 'nipype', 'nilearn', "
            "'SimpleITK', 'pandas', 'pooch') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: skullstrip " + command in capsys.readouterr().out


def test_parser_lists_the_subcommands():
    text = build_parser().format_help()
    for command in COMMANDS:
        assert command in text


def test_bad_input_is_one_line_and_non_zero(tmp_path):
    res = run("index", str(tmp_path / "missing"), "-o", str(tmp_path / "i.csv"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip index: error: ")
    assert "missing" in lines[0]
    assert not (tmp_path / "i.csv").exists()

    res = run("preprocess", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "out"))
    assert res.returncode == 1 and "nope.csv" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

    res = run("synth", str(tmp_path), "--subjects", "0")
    assert res.returncode == 2  # argparse: usage error, in one line too
    assert res.stderr.strip().splitlines() == [
        "skullstrip synth: error: argument --subjects: must be at least 1, got 0 "
        "(see 'skullstrip synth --help')"]


def test_synth_index_preprocess_end_to_end(tmp_path):
    data = tmp_path / "data"
    res = run("synth", str(data), "--subjects", "3", "--seed", "1", "--shape", "64", "64", "48",
              "--voxel-size", "4", "4", "4", "-q")
    assert res.returncode == 0, res.stderr
    files = sorted(p.name for p in (data / "NFBS_Dataset").rglob("*.nii.gz"))
    assert len(files) == 9 and all(f.startswith("sub-A9") for f in files)

    index = tmp_path / "index.csv"
    res = run("index", str(data), "-o", str(index), "--fractions", "0.34", "0.33", "0.33")
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(index)
    assert len(df) == 3 and sorted(df["split"]) == ["test", "train", "val"]
    # An existing index is not silently overwritten.
    res = run("index", str(data), "-o", str(index))
    assert res.returncode == 1 and "already exists" in res.stderr

    out = tmp_path / "prep"
    res = run("preprocess", str(index), "-o", str(out), "--shape", "40", "48", "56",
              "--spacing", "4", "-q")
    assert res.returncode == 0, res.stderr
    assert "done 3" in res.stdout
    for subject in df["subject"]:
        img = nib.load(out / subject / f"{subject}_T1w.nii.gz")
        assert img.shape == (40, 48, 56)
        assert np.isfinite(np.asarray(img.dataobj)).all()
    res = run("preprocess", str(index), "-o", str(out), "--shape", "40", "48", "56",
              "--spacing", "4", "-q")
    assert res.returncode == 0 and "skipped 3" in res.stdout


def test_preprocess_failure_exits_non_zero(tmp_path, small_dataset):
    from skullstrip_lib.datasets import index_dataset, write_index

    df = index_dataset(small_dataset).iloc[:2].copy()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b truncated")
    df.loc[0, "t1w"] = str(bad)
    index = write_index(df, tmp_path / "index.csv")
    res = run("preprocess", str(index), "-o", str(tmp_path / "out"), "--shape", "40", "48", "56",
              "--spacing", "4", "-q")
    assert res.returncode == 1
    assert "failed 1" in res.stdout and "bad.nii.gz" in res.stderr


@pytest.fixture(scope="module")
def synth_archive(tmp_path_factory):
    """A small NFBS_Dataset.tar.gz (the stand-in, 2 synthetic subjects), and its MD5."""
    import hashlib

    from skullstrip_lib.synth import write_nfbs_archive

    archive = write_nfbs_archive(tmp_path_factory.mktemp("archive") / "NFBS_Dataset.tar.gz", 2,
                                 seed=5, progress=False, shape=(48, 48, 40),
                                 voxel_size=(4.0, 4.0, 4.0))
    data = archive.read_bytes()
    return data, hashlib.md5(data).hexdigest()


def test_fetch_from_a_local_server(tmp_path, server, synth_archive):
    data, digest = synth_archive
    url = server.serve("/data/Projects/RocklandSample/NFBS_Dataset.tar.gz", data)
    args = ("fetch", "--data-dir", str(tmp_path), "--url", url, "--known-hash", f"md5:{digest}",
            "-q")
    res = run(*args)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "NFBS_Dataset")
    subjects = sorted(p.name for p in (tmp_path / "NFBS_Dataset").iterdir() if p.is_dir())
    assert len(subjects) == 2
    # A second run does nothing: no new request reaches the server.
    assert run(*args).returncode == 0
    assert len(server.requests) == 1


def test_fetch_hash_mismatch_is_one_line_and_leaves_nothing(tmp_path, server, synth_archive):
    data, digest = synth_archive
    url = server.serve("/NFBS_Dataset.tar.gz", data[:-100] + bytes(100))  # tampered tail
    res = run("fetch", "--data-dir", str(tmp_path / "d"), "--url", url, "--known-hash",
              f"md5:{digest}", "-q")
    assert res.returncode == 1
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("skullstrip fetch: error: ") and "--known-hash md5:" in line
    leftovers = [p.name for p in (tmp_path / "d").iterdir()] if (tmp_path / "d").exists() else []
    assert leftovers == []


def test_synth_archive_writes_the_nfbs_standin(tmp_path):
    import hashlib
    import tarfile

    from skullstrip_lib.synth import write_nfbs_archive

    out = tmp_path / "out"
    args = ("synth", str(out), "--archive", "--subjects", "3", "--seed", "2", "--shape", "32", "32",
            "24", "--voxel-size", "8", "8", "8", "-q")
    res = run(*args)
    assert res.returncode == 0, res.stderr
    archive = out / "NFBS_Dataset.tar.gz"
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    assert res.stdout.strip() == (f"{archive}: 3 synthetic subjects, {archive.stat().st_size:,} "
                                  f"bytes, md5:{digest}")
    assert sorted(p.name for p in out.iterdir()) == ["NFBS_Dataset.tar.gz"]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert len(names) == 1 + 3 * 4 and names[0] == "NFBS_Dataset"
    # the same bytes in another process, from the library
    again = write_nfbs_archive(tmp_path / "again.tar.gz", 3, seed=2, progress=False,
                               shape=(32, 32, 24), voxel_size=(8.0, 8.0, 8.0))
    assert hashlib.md5(again.read_bytes()).hexdigest() == digest



def test_synth_archive_bad_input_is_one_line(tmp_path, capsys):
    archive = tmp_path / "NFBS_Dataset.tar.gz"
    archive.write_bytes(b"an earlier archive")
    assert main(["synth", str(tmp_path), "--archive", "-q"]) == 1  # no silent overwrite
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip synth: error: ")
    assert str(archive) in lines[0] and "already exists" in lines[0]
    assert archive.read_bytes() == b"an earlier archive"
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path), "--archive", "--subjects", "0"])
    assert exc.value.code == 2


def test_a_bad_argument_from_the_library_is_one_line(tmp_path, capsys):
    # --subjects passes the parser (a positive int); the writer's own limit names the argument.
    out = tmp_path / "out"
    assert main(["synth", str(out), "--subjects", "20000", "-q"]) == 1
    # The library names its argument (n_subjects); the command names the user's option.
    assert capsys.readouterr().err.strip().splitlines() == [
        "skullstrip synth: error: --subjects must be an integer from 0 to 10000, got 20000"]
    assert not out.exists()


def test_a_bad_profile_is_refused_by_the_parser(tmp_path, capsys):
    # The parser knows the profiles (choices from train.TRAINING_PROFILES): one line naming
    # the option (not argparse's usage block first), exit status 2; nothing is made.
    with pytest.raises(SystemExit) as exc:
        main(["train", "--profile", "huge", "-o", str(tmp_path / "run")])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("skullstrip train: error: argument --profile: invalid choice: 'huge'")
    assert line.endswith("(see 'skullstrip train --help')")
    assert list(tmp_path.iterdir()) == []


def test_fetch_subjects_streams_from_a_local_server(tmp_path, server, nfbs_standin):
    import os

    data, _, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    res = run("fetch", "--data-dir", str(tmp_path / "a"), "--subjects", "2", "--url", url, "-q")
    assert res.returncode == 0, res.stderr
    root = tmp_path / "a" / "NFBS_Dataset"
    assert res.stdout.strip() == str(root)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ids[:2]
    (transfer,) = server.transfers()
    assert transfer.sent < 0.5 * len(data)

    # the address from the environment, and the summary of what was checked
    env = {**os.environ, "SKULLSTRIP_NFBS_URL": url}
    res = run("fetch", "--data-dir", str(tmp_path / "b"), "--subjects", "1", env=env)
    assert res.returncode == 0, res.stderr
    assert "gzip CRC-32 and NIfTI header checks" in res.stderr
    assert "the archive's MD5 was not checked" in res.stderr
    assert (tmp_path / "b" / "NFBS_Dataset" / ids[0]).is_dir()


@pytest.mark.parametrize(("args", "expected"), [
    (("--url", "ftpx://example.org/NFBS_Dataset.tar.gz"), "url='ftpx://example.org"),
    (("--url", "{server}/missing.tar.gz"), "HTTP 404"),
    (("--timeout", "0"), "timeout must be a positive number"),
])
def test_fetch_bad_input_is_one_line(tmp_path, server, args, expected, capsys):
    args = tuple(a.replace("{server}", server.url("")) for a in args)
    if "--url" not in args:
        args = (*args, "--url", server.url("/NFBS_Dataset.tar.gz"))
    assert main(["fetch", "--data-dir", str(tmp_path), "--subjects", "2", "-q", *args]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skullstrip fetch: error: ")
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as exc:
        main(["fetch", "--subjects", "0"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- faults in one line
def one_line(res, command: str) -> str:
    """The single stderr line of a failed command (asserting there is only that line)."""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"skullstrip {command}: error: "), lines[0]
    return lines[0]


def sparse_nifti(path, shape):
    """An uncompressed .nii whose header declares ``shape`` of uint8, its data a sparse hole
    (the file takes no disk space, whatever its size)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    with open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4)
        f.truncate(352 + int(np.prod(shape, dtype=np.int64)))
    return path


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and sparse files: Linux")
def test_memory_error_is_one_line(tmp_path):
    import resource

    # 2000^3 voxels: refused by default; with the limit raised, reading them needs 8 GB
    # (uint8) then 32 GB (float32): under a 6 GiB address-space limit numpy's allocation
    # fails at once with a MemoryError, which is one line, not a traceback.
    scan = sparse_nifti(tmp_path / "huge.nii", (2000, 2000, 2000))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    res = run("--max-voxels", str(10**10), "predict", str(scan), "-o", str(tmp_path / "out"),
              preexec_fn=limit, timeout=300)
    assert res.returncode == 1
    line = one_line(res, "predict")
    assert f"error: {scan}: out of memory reading its 8,000,000,000 voxels (" in line
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    res = run("predict", str(scan), "-o", str(tmp_path / "out"), timeout=300)
    assert "huge.nii: its header declares 2000x2000x2000 = 8,000,000,000 voxels, more than the " \
           "134,217,728 accepted" in one_line(res, "predict")


def test_traceback_flag_shows_what_the_one_line_hides(tmp_path):
    args = ("index", str(tmp_path / "missing"), "-o", str(tmp_path / "i.csv"))
    plain = run(*args)
    line = one_line(plain, "index")
    debug = run("--traceback", *args)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.strip().splitlines()[-1] == line  # the same line, last


def test_full_disk_names_the_file(tmp_path, small_dataset, monkeypatch, capsys):
    import errno

    def full(self, path, *args, **kwargs):
        with open(path, "w") as f:
            f.write("subject,t1w")  # a part, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write raises it

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "index.csv"
    assert main(["index", str(small_dataset), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"skullstrip index: error: {out}: No space left on device (nothing was "
                   "written; free some space and retry)")
    assert list(tmp_path.iterdir()) == []


needs_tf = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is None,
    reason="needs the [train] extra")

BAD_RUNS = {
    # name: (config.yaml, best.keras, what the one line says)
    "python-tag": ("profile: !!python/object/apply:os.system ['touch PWNED']\n", None,
                   "config.yaml: not a valid run configuration: YAML error at line 1: could "
                   "not determine a constructor for the tag"),
    "malformed": ("profile: [sample\nepochs: 2\n", None,
                  "config.yaml: not a valid run configuration: YAML error at line 2"),
    "not-a-mapping": ("- sample\n", None, "config.yaml: not a run configuration (a YAML "
                                          "mapping of settings), got list"),
    "n4-iterations": ("preprocess:\n  n4_iterations: []\n", None,
                      "config.yaml: preprocessing setting n4_iterations must be a non-empty "
                      "list of positive integers"),
    "garbage-keras": ("profile: sample\n", b"\x00garbage" * 100,
                      "best.keras: not a Keras model file (a .keras file is a zip archive; "
                      "this is not one"),
}


@needs_tf
@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_export_of_a_bad_run_is_one_line_without_tensorflow_logs(tmp_path, case):
    config, keras_file, expected = BAD_RUNS[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config)
    if keras_file is not None:
        (run_dir / "best.keras").write_bytes(keras_file)
    res = run("export", str(run_dir), cwd=tmp_path, timeout=300)
    assert res.returncode == 1
    assert expected in one_line(res, "export")  # TensorFlow's start-up lines are muted
    assert str(run_dir) in res.stderr
    assert not (tmp_path / "PWNED").exists()  # the tag was refused, not executed
    assert not (run_dir / "export").exists()


@needs_tf
def test_train_with_bad_data_leaves_no_run_folder(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    run_dir = tmp_path / "runs" / "first"
    for _ in range(2):  # the retry meets the same error, not "already exists"
        res = run("train", "--data", str(bad), "-o", str(run_dir), timeout=300)
        assert res.returncode == 1
        assert "bad.csv: index lacks column(s) subject, t1w" in one_line(res, "train")
        assert not run_dir.exists()
    res = run("train", "--data", str(tmp_path / "missing.csv"), "-o", str(run_dir))
    assert "missing.csv: no such index file or data folder" in one_line(res, "train")
    assert not run_dir.exists()


@pytest.mark.parametrize(("args", "problem"), [
    (["--voxel-size", "nan", "1", "1"], "--voxel-size must be 3 finite numbers"),
    (["--voxel-size", "1", "inf", "1"], "--voxel-size must be 3 finite numbers"),
    (["--voxel-size", "0", "1", "1"], "--voxel-size must be positive"),
    (["--shape", "1", "1", "1"], "--shape (1, 1, 1) is too small for a head"),
    (["--shape", "4096", "4096", "4096"], "voxels, more than"),
    (["--orientation", "RAX"], "--orientation must be three axis codes"),
])
@pytest.mark.parametrize("archive", [False, True])
def test_synth_bad_parameters_are_one_line_and_write_nothing(tmp_path, capsys, args, problem,
                                                             archive):
    # Issue 18: a traceback (nan voxel size), a success (1x1x1), or an empty subject folder
    # and a synth_params.json left behind; now one line, exit 1, nothing written.
    out = tmp_path / "out"
    argv = ["synth", str(out), "--subjects", "2", "-q", *args] + (["--archive"] if archive else [])
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skullstrip synth: error: {out}: ")
    assert problem in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("subject", ["raw-stem", "../ESCAPED", "", "."])
def test_preprocess_never_writes_where_a_subject_id_points(tmp_path, capsys, subject):
    # The case: an index whose subject is the raw scan's own stem as a path
    # (/data/A1/sub-A1_ses-NFB3) deleted the raw scan and wrote over it.
    from helpers import write_tiny_nfbs

    from skullstrip_lib.datasets import index_dataset

    write_tiny_nfbs(tmp_path)
    df = index_dataset(tmp_path)
    raw = Path(df.loc[0, "t1w"])
    if subject == "raw-stem":
        subject = str(raw)[: -len("_T1w.nii.gz")]
    df.loc[0, "subject"] = subject
    df.to_csv(tmp_path / "bad.csv", index=False)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["preprocess", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "out"),
                 "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"skullstrip preprocess: error: {tmp_path / 'bad.csv'}: subject {subject!r} "
                   "is not a subject id (letters, digits, '-' and '_' only; never a path)"]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- every subcommand
# Issue 18: the error path of every subcommand is one line, 'skullstrip <command>: error:
# <file>: <problem>', exit 1, and nothing is written. One missing and one bad input each
# (train and export: only what is refused before TensorFlow loads; their bad contents are
# test_export_of_a_bad_run_is_one_line_without_tensorflow_logs and
# test_train_with_bad_data_leaves_no_run_folder, in a fresh process).
ERROR_CASES = {
    # name: (argv, the file the line names, the start of its problem)
    "fetch-data-dir-is-a-file": (["fetch", "--data-dir", "{afile}", "--subjects", "1", "-q",
                                  "--url", "http://127.0.0.1:9/NFBS_Dataset.tar.gz"],
                                 "afile", "the data directory exists and is not a folder"),
    "index-missing": (["index", "{missing}", "-o", "{out.csv}"], "missing",
                      "no such folder (expected the NFBS_Dataset folder)"),
    "index-no-subjects": (["index", "{empty}", "-o", "{out.csv}"], "empty",
                          "no NFBS subjects (expected <ID>/sub-<ID>_ses-NFB3_T1w.nii.gz)"),
    "synth-nan-voxel": (["synth", "{out}", "--voxel-size", "nan", "1", "1", "-q"], "out",
                        "--voxel-size must be 3 finite numbers"),
    "preprocess-missing": (["preprocess", "{missing.csv}", "-o", "{out}", "-q"], "missing.csv",
                           "no such index file or data folder"),
    "preprocess-bad-index": (["preprocess", "{bad.csv}", "-o", "{out}", "-q"], "bad.csv",
                             "index lacks column(s) subject, t1w, brainmask, brain, split"),
    "train-missing-data": (["train", "--data", "{missing.csv}", "-o", "{out}", "-q"],
                           "missing.csv", "no such index file or data folder"),
    "export-missing-run": (["export", "{missing}", "-q"], "missing",
                           "no such training run folder"),
    "evaluate-missing-model": (["evaluate", "--model", "{missing}", "--data", "{bad.csv}", "-o",
                                "{out.csv}", "-q"], "missing", "no such model file or folder"),
    "evaluate-bad-index": (["evaluate", "--data", "{bad.csv}", "-o", "{out.csv}", "-q"],
                           "bad.csv", "index lacks column(s) subject, t1w"),
    "predict-not-an-image": (["predict", "{junk.nii.gz}", "-o", "{out}", "-q"], "junk.nii.gz",
                             "not a NIfTI, MGH/MGZ, Analyze or MINC image"),
    "predict-missing": (["predict", "{missing.nii.gz}", "-o", "{out}", "-q"], "missing.nii.gz",
                        "file not found"),
}


def _error_case(name):
    marks = [needs_tf] if name.split("-")[0] in ("train", "export") else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("case", [_error_case(name) for name in ERROR_CASES])
def test_every_subcommands_error_is_one_line_naming_the_file(tmp_path, capsys, case):
    argv, named, problem = ERROR_CASES[case]
    (tmp_path / "afile").write_text("a file, not a folder\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    (tmp_path / "junk.nii.gz").write_text("not an image\n")
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    argv = [str(tmp_path / a[1:-1]) if a.startswith("{") else a for a in argv]
    assert argv[0] in COMMANDS
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"skullstrip {argv[0]}: error: {tmp_path / named}: {problem}")
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


def test_every_subcommand_has_an_error_case():
    assert sorted({name.split("-")[0] for name in ERROR_CASES}) == sorted(COMMANDS)


# Issue 18's rule for predict, "an output path never equals an input path, whatever the
# flags", holds for the other commands that write a file the user names: index's CSV,
# evaluate's table and figure, preprocess's report are never written over what the run reads.
def _needs_model(case):
    from helpers import needs_default

    return pytest.param(case, marks=[needs_default] if case.startswith("evaluate") else [],
                        id=case)


@pytest.mark.parametrize("case", [_needs_model(c) for c in (
    "index-over-its-scan", "evaluate-over-its-index", "evaluate-over-a-mask",
    "evaluate-figure-over-a-scan", "evaluate-figure-is-the-table",
    "preprocess-report-over-its-index")])
def test_no_command_writes_over_its_inputs_even_with_overwrite(tmp_path, capsys, case):
    from helpers import write_tiny_nfbs

    from skullstrip_lib.datasets import index_dataset, write_index

    write_tiny_nfbs(tmp_path)
    df = index_dataset(tmp_path)
    index = write_index(df, tmp_path / "index.csv")
    report = write_index(df, tmp_path / "out" / "preprocessed.csv")  # an index, named so
    scan, mask, table = Path(df.loc[0, "t1w"]), Path(df.loc[2, "brainmask"]), tmp_path / "m.csv"
    evaluate = ["evaluate", "--data", str(index), "-q", "-o"]
    argv, named, problem = {
        "index-over-its-scan": (["index", str(tmp_path), "-o", str(scan)], scan,
                                f"is an input of this run ({scan}); nothing written"),
        "evaluate-over-its-index": ([*evaluate, str(index)], index,
                                    f"is an input of this run ({index}); nothing written"),
        "evaluate-over-a-mask": ([*evaluate, str(mask)], mask,
                                 f"is an input of this run ({mask}); nothing written"),
        "evaluate-figure-over-a-scan": ([*evaluate, str(table), "--figure", str(scan)], scan,
                                        f"is an input of this run ({scan}); nothing written"),
        "evaluate-figure-is-the-table": ([*evaluate, str(table), "--figure", str(table)], table,
                                         "is also the table -o; choose another name"),
        "preprocess-report-over-its-index": (["preprocess", str(report), "-q", "-o",
                                              str(tmp_path / "out")], report,
                                             f"is an input of this run ({report})"),
    }[case]
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main([*argv, "--overwrite"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    assert lines[0].startswith(f"skullstrip {argv[0]}: error: {named}: {problem}")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("case", ["index", "evaluate-table", "evaluate-figure", "predict"])
@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, monkeypatch, capsys, case,
                                                         where):
    # Issue 18: a read-only -o was found only after the whole prediction; evaluate's table
    # and figure and index's CSV are checked before the model loads or the data are read.
    import skullstrip_lib.datasets
    import skullstrip_lib.evaluate
    import skullstrip_lib.inference

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    for module, name in ((skullstrip_lib.datasets, "index_dataset"),
                         (skullstrip_lib.inference, "load_model"),
                         (skullstrip_lib.inference, "strip"),
                         (skullstrip_lib.evaluate, "evaluate")):
        monkeypatch.setattr(module, name, no_work)
    (tmp_path / "file").write_text("x")
    folder = tmp_path / "file" / "out" if where == "under-a-file" else Path("/proc/skullstrip")
    if case == "predict":  # its own check, inside strip: the same message, the same moment
        monkeypatch.undo()
        monkeypatch.setattr(skullstrip_lib.inference, "load_model", no_work)
    argv = {"index": ["index", str(tmp_path), "-o", str(folder / "i.csv")],
            "evaluate-table": ["evaluate", "--data", str(tmp_path), "-o", str(folder / "m.csv")],
            "evaluate-figure": ["evaluate", "--data", str(tmp_path), "-o",
                                str(tmp_path / "m.csv"), "--figure", str(folder / "f.png")],
            "predict": ["predict", str(tmp_path / "file"), "-o", str(folder)]}[case]
    assert main([*argv, "-q"] if case != "index" else argv) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    reason = (f"{tmp_path / 'file'} is a file, not a folder" if where == "under-a-file" else "")
    assert lines[0].startswith(f"skullstrip {argv[0]}: error: {folder}: cannot write results "
                               f"there ({reason}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
