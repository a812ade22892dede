"""The skullstrip command: help, errors in one line with a non-zero exit, end to end."""

from __future__ import annotations

import subprocess
import sys

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
    assert res.returncode == 2  # argparse: usage error


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
    """A small NFBS_Dataset.tar.gz built from synthetic heads, and its MD5."""
    import hashlib
    import tarfile

    from skullstrip_lib.synth import write_nfbs_dataset

    src = tmp_path_factory.mktemp("archive_src")
    write_nfbs_dataset(src, 2, seed=5, progress=False, shape=(48, 48, 40),
                       voxel_size=(4.0, 4.0, 4.0))
    archive = src / "NFBS_Dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "NFBS_Dataset", arcname="NFBS_Dataset")
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
