"""Tests of skullstrip_lib.datasets: download, safe extraction, index and split.

Nothing here touches the network: a threaded HTTP server on 127.0.0.1 serves a
tiny archive in the real NFBS layout, built from small NIfTI heads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import warnings
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest
from conftest import LocalServer
from helpers import IDS, KINDS, SORTED_IDS, file_name, write_tiny_nfbs

from skullstrip_lib import datasets as ds
from skullstrip_lib.errors import (
    DownloadError,
    InvalidInputError,
    MissingFileError,
    SkullstripError,
)

# --------------------------------------------------------------------------- helpers


def make_archive(root: Path, seed: int = 0, extra=()) -> bytes:
    """tar.gz of root (an NFBS_Dataset folder), members in shuffled order, plus extras.

    *extra* holds ready TarInfo objects (with optional data) to append.
    """
    buffer = io.BytesIO()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    random.Random(seed).shuffle(files)
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(root, arcname=root.name, recursive=False)
        for path in files:
            tar.add(path, arcname=str(Path(root.name) / path.relative_to(root)))
        for info, data in extra:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(inode, ctime, mtime) of every file: a re-extraction changes at least the ctime."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_ctime_ns, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(archive bytes, md5) of a 5-subject archive in the NFBS layout."""
    root = write_tiny_nfbs(tmp_path_factory.mktemp("src"))
    data = make_archive(root)
    return data, md5(data)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(ds.ENV_NFBS_HASH, raising=False)
    monkeypatch.delenv(ds.ENV_DATA_DIR, raising=False)


@pytest.fixture()
def no_sleep(monkeypatch):
    import pooch.core

    monkeypatch.setattr(pooch.core.time, "sleep", lambda seconds: None)


def fetch(data_dir, url, hash_, **kwargs):
    kwargs.setdefault("progressbar", False)
    kwargs.setdefault("retries", 0)
    return ds.fetch_nfbs(data_dir, url=url, known_hash=hash_, **kwargs)


# --------------------------------------------------------------------------- download + extract


def test_fetch_downloads_and_extracts(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/files/NFBS_Dataset.tar.gz", data)
    data_dir = tmp_path / "data"
    root = fetch(data_dir, url, f"md5:{digest}")
    assert root == data_dir / "NFBS_Dataset"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == SORTED_IDS
    for subject in IDS:
        for kind in KINDS:
            assert (root / subject / file_name(subject, kind)).is_file()
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["subjects"] == SORTED_IDS
    assert marker["available"] == SORTED_IDS
    assert leftovers(data_dir) == ["NFBS_Dataset", "NFBS_Dataset.tar.gz"]
    assert (data_dir / "NFBS_Dataset.tar.gz").read_bytes() == data
    assert server.requests == ["/files/NFBS_Dataset.tar.gz"]
    # the extracted heads are the ones that were packed
    img = nib.load(root / "A00000100" / file_name("A00000100", "brainmask"))
    assert img.shape == (6, 6, 5)


def test_second_call_does_nothing(tmp_path, server, tiny, monkeypatch):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, f"md5:{digest}")
    before = snapshot(root)

    def boom(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(ds, "_extract_members", boom)
    monkeypatch.setattr(ds, "_download", boom)
    assert fetch(tmp_path, url, f"md5:{digest}") == root
    assert fetch(tmp_path, url, f"md5:{digest}", n_subjects=3) == root
    assert snapshot(root) == before
    assert len(server.requests) == 1


def test_keep_archive_false_then_no_download(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, f"md5:{digest}", keep_archive=False)
    assert leftovers(tmp_path) == ["NFBS_Dataset"]
    before = snapshot(root)
    fetch(tmp_path, url, f"md5:{digest}", keep_archive=False)
    assert len(server.requests) == 1
    assert snapshot(root) == before


def test_n_subjects_partial_then_larger(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, f"md5:{digest}", n_subjects=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == SORTED_IDS[:2]
    assert ds.find_subjects(root) == SORTED_IDS[:2]
    first = snapshot(root / SORTED_IDS[0])

    fetch(tmp_path, url, f"md5:{digest}", n_subjects=4)
    assert ds.find_subjects(tmp_path) == SORTED_IDS[:4]
    assert snapshot(root / SORTED_IDS[0]) == first  # not re-extracted
    assert len(server.requests) == 1  # the verified archive was reused
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["subjects"] == SORTED_IDS[:4]

    with pytest.raises(InvalidInputError, match="n_subjects=6 but the NFBS archive has 5"):
        fetch(tmp_path, url, f"md5:{digest}", n_subjects=6)
    with pytest.raises(ValueError, match="positive integer"):
        fetch(tmp_path, url, f"md5:{digest}", n_subjects=0)
    fetch(tmp_path, url, f"md5:{digest}")
    assert ds.find_subjects(tmp_path) == SORTED_IDS
    assert leftovers(tmp_path) == ["NFBS_Dataset", "NFBS_Dataset.tar.gz"]


def test_n_subjects_larger_without_archive_downloads_again(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    fetch(tmp_path, url, f"md5:{digest}", n_subjects=1, keep_archive=False)
    fetch(tmp_path, url, f"md5:{digest}", n_subjects=3, keep_archive=False)
    assert len(server.requests) == 2
    assert ds.find_subjects(tmp_path) == SORTED_IDS[:3]
    assert leftovers(tmp_path) == ["NFBS_Dataset"]


def test_deleted_subject_is_restored(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, f"md5:{digest}")
    (root / "A00000200" / file_name("A00000200", "brain")).unlink()
    fetch(tmp_path, url, f"md5:{digest}")
    assert (root / "A00000200" / file_name("A00000200", "brain")).is_file()


def test_truncated_transfer_connection_closed(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="cut")
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path / "data", url, f"md5:{digest}")
    message = str(info.value)
    assert "\n" not in message
    assert url in message
    assert "connection closed" in message
    assert leftovers(tmp_path / "data") == []


def test_truncated_archive_served_consistently(tmp_path, server, tiny, no_sleep):
    data, digest = tiny
    short = data[: len(data) // 2]
    url = server.serve("/NFBS_Dataset.tar.gz", short)
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, url, f"md5:{digest}", retries=5)
    message = str(info.value)
    assert "\n" not in message
    assert f"MD5 is {md5(short)} but {digest} was pinned" in message
    assert f"downloaded {len(short):,} bytes" in message
    assert f"--known-hash md5:{md5(short)}" in message
    assert url in message
    assert leftovers(tmp_path) == []
    # the same wrong bytes twice: no point in the remaining retries
    assert len(server.requests) == 2


def test_tampered_archive(tmp_path, server, tiny):
    data, digest = tiny
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0xFF
    tampered = bytes(tampered)
    assert len(tampered) == len(data)
    url = server.serve("/NFBS_Dataset.tar.gz", tampered)
    with pytest.raises(DownloadError, match=f"MD5 is {md5(tampered)} but {digest}"):
        fetch(tmp_path, url, f"md5:{digest}")
    assert leftovers(tmp_path) == []


def test_pinned_hash_mismatch_mentions_nfbs_size(tmp_path, server, tiny):
    data, _ = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    with pytest.raises(DownloadError) as info:
        ds.fetch_nfbs(tmp_path, url=url, progressbar=False, retries=0)
    message = str(info.value)
    assert "06c467ac9ab6cbdb8185e6643879721d was pinned" in message
    assert "expected about 1,751,464,473" in message
    assert f"{ds.ENV_NFBS_HASH}=md5:{md5(data)}" in message
    assert leftovers(tmp_path) == []


def test_known_hash_none_skips_the_check(tmp_path, server, tiny):
    data, _ = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, None)
    assert ds.find_subjects(root) == SORTED_IDS


def test_bare_md5_is_accepted(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    assert ds.find_subjects(fetch(tmp_path, url, digest.upper())) == SORTED_IDS
    with pytest.raises(ValueError, match="not a hash"):
        fetch(tmp_path / "other", url, "crc:123")


def test_env_overrides_pinned_hash(tmp_path, server, tiny, monkeypatch):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    monkeypatch.setenv(ds.ENV_NFBS_HASH, f"md5:{digest}")
    root = ds.fetch_nfbs(tmp_path / "a", url=url, progressbar=False, retries=0)
    assert ds.find_subjects(root) == SORTED_IDS

    # a wrong value from the environment is named in the error
    monkeypatch.setenv(ds.ENV_NFBS_HASH, "md5:" + "0" * 32)
    with pytest.raises(DownloadError, match=f"pinned \\(via {ds.ENV_NFBS_HASH}\\)"):
        ds.fetch_nfbs(tmp_path / "b", url=url, progressbar=False, retries=0)
    assert leftovers(tmp_path / "b") == []
    # an explicit, non-default known_hash wins over the environment
    root = fetch(tmp_path / "c", url, f"md5:{digest}")
    assert ds.find_subjects(root) == SORTED_IDS


def test_http_error_and_refused_connection(tmp_path, server):
    url = server.url("/missing/NFBS_Dataset.tar.gz")
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, url, None)
    message = str(info.value)
    assert "\n" not in message and url in message and "HTTP 404" in message
    assert leftovers(tmp_path) == []

    closed = LocalServer()
    dead_url = closed.url("/NFBS_Dataset.tar.gz")
    closed.close()
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, dead_url, None)
    assert dead_url in str(info.value) and "\n" not in str(info.value)
    assert leftovers(tmp_path) == []


def test_retry_after_server_error(tmp_path, server, tiny, no_sleep):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="fail_once")
    root = fetch(tmp_path, url, f"md5:{digest}", retries=1)
    assert ds.find_subjects(root) == SORTED_IDS
    assert len(server.requests) == 2


# --------------------------------------------------------------------------- unsafe archives


def _member(name: str, data: bytes | None = b"x", *, symlink_to: str | None = None):
    info = tarfile.TarInfo(name)
    if symlink_to is not None:
        info.type = tarfile.SYMTYPE
        info.linkname = symlink_to
        return info, None
    info.size = len(data)
    return info, data


UNSAFE = {
    "traversal": [_member("../evil")],
    "nested-traversal": [_member("NFBS_Dataset/A00000100/../../../evil")],
    "absolute": [_member("/tmp/skullstrip-evil-absolute")],
    "symlink-outside": [_member("NFBS_Dataset/A00000100/evil", symlink_to="../../../evil")],
    "symlink-absolute": [_member("NFBS_Dataset/A00000100/evil", symlink_to="/etc/passwd")],
}


@pytest.mark.parametrize("fallback", [False, True], ids=["data_filter", "fallback"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_is_refused(tmp_path, server, case, fallback, monkeypatch):
    if fallback:
        monkeypatch.setattr(ds, "_HAS_DATA_FILTER", False)
    root = write_tiny_nfbs(tmp_path / "src", ids=IDS[:2])
    data = make_archive(root, extra=UNSAFE[case])
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(InvalidInputError, match="refusing unsafe archive member"):
        fetch(data_dir, url, None)
    assert leftovers(data_dir) == ["NFBS_Dataset.tar.gz"]  # verified download, nothing extracted
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "deep" / "evil").exists()
    assert not Path("/tmp/skullstrip-evil-absolute").exists()


def test_archive_missing_a_file(tmp_path, server):
    root = write_tiny_nfbs(tmp_path / "src", skip=("A00000300", "brainmask"))
    url = server.serve("/NFBS_Dataset.tar.gz", make_archive(root))
    with pytest.raises(MissingFileError, match="subject A00000300 has no brainmask file"):
        fetch(tmp_path / "data", url, None)
    assert leftovers(tmp_path / "data") == ["NFBS_Dataset.tar.gz"]
    # the first two subjects are complete: n_subjects=2 works
    fetch(tmp_path / "data", url, None, n_subjects=2)
    assert ds.find_subjects(tmp_path / "data") == SORTED_IDS[:2]


def test_not_an_archive(tmp_path, server):
    url = server.serve("/NFBS_Dataset.tar.gz", b"this is not a tar file at all" * 10)
    with pytest.raises(InvalidInputError, match=r"not a readable tar\.gz archive"):
        fetch(tmp_path, url, None)
    assert leftovers(tmp_path) == ["NFBS_Dataset.tar.gz"]


# --------------------------------------------------------------------------- data directory


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert ds.get_data_dir() == home / "skullstrip_data"
    assert (home / "skullstrip_data").is_dir()

    monkeypatch.setenv(ds.ENV_DATA_DIR, str(tmp_path / "from_env"))
    assert ds.get_data_dir() == tmp_path / "from_env"
    assert ds.get_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert ds.get_data_dir("~/tilde") == home / "tilde"
    assert (home / "tilde").is_dir()

    monkeypatch.setenv(ds.ENV_DATA_DIR, "~/env_tilde")
    assert ds.get_data_dir() == home / "env_tilde"
    monkeypatch.setenv(ds.ENV_DATA_DIR, "")
    assert ds.get_data_dir() == home / "skullstrip_data"


def test_data_dir_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        ds.get_data_dir(tmp_path / "file")


# --------------------------------------------------------------------------- index


def test_index_pairs_by_subject_id_whatever_the_listing_order(tmp_path, monkeypatch):
    write_tiny_nfbs(tmp_path)
    original_glob = Path.glob

    def shuffled_glob(self, pattern):
        found = list(original_glob(self, pattern))
        random.Random(1).shuffle(found)
        return iter(found)

    monkeypatch.setattr(Path, "glob", shuffled_glob)
    df = ds.index_dataset(tmp_path)
    assert list(df.columns) == ["subject", "t1w", "brainmask", "brain", "split"]
    assert list(df["subject"]) == SORTED_IDS
    for row in df.itertuples():
        for kind in KINDS:
            path = Path(getattr(row, kind))
            assert path.is_absolute()
            assert path.name == file_name(row.subject, kind)
            assert path.parent.name == row.subject
    assert set(df["split"]) <= {"train", "val", "test"}


def test_index_root_can_be_the_dataset_folder_or_its_parent(tmp_path):
    root = write_tiny_nfbs(tmp_path)
    pd.testing.assert_frame_equal(ds.index_dataset(root), ds.index_dataset(tmp_path))
    assert ds.find_subjects(root) == ds.find_subjects(tmp_path) == SORTED_IDS


def test_index_missing_brainmask_names_the_subject(tmp_path):
    write_tiny_nfbs(tmp_path, skip=("A00000400", "brainmask"))
    with pytest.raises(MissingFileError) as info:
        ds.index_dataset(tmp_path)
    message = str(info.value)
    assert "A00000400" in message
    assert file_name("A00000400", "brainmask") in message
    assert "\n" not in message


def test_index_errors(tmp_path):
    with pytest.raises(MissingFileError, match="no such folder"):
        ds.index_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no NFBS subjects"):
        ds.index_dataset(tmp_path / "empty")
    root = write_tiny_nfbs(tmp_path / "misplaced", ids=["A00000100", "A00000200"])
    os.replace(
        root / "A00000100" / file_name("A00000100", "brain"),
        root / "A00000200" / file_name("A00000100", "brain"),
    )
    with pytest.raises(InvalidInputError, match="names subject A00000100 but lies in folder"):
        ds.index_dataset(root)


# --------------------------------------------------------------------------- split


IDS_125 = [f"A{n:08d}" for n in range(28185, 28185 + 125 * 7, 7)]


def test_split_counts_125():
    split = ds.split_subjects(IDS_125)
    assert split.value_counts().to_dict() == {"train": 87, "val": 19, "test": 19}
    assert list(split.index) == sorted(IDS_125)
    assert split.name == "split"


def test_split_deterministic_and_seed_dependent():
    shuffled = IDS_125[:]
    random.Random(3).shuffle(shuffled)
    a = ds.split_subjects(IDS_125, seed=0)
    pd.testing.assert_series_equal(a, ds.split_subjects(shuffled, seed=0))
    pd.testing.assert_series_equal(a, ds.split_subjects(tuple(reversed(IDS_125)), seed=0))
    b = ds.split_subjects(IDS_125, seed=1)
    assert not a.equals(b)
    assert b.value_counts().to_dict() == {"train": 87, "val": 19, "test": 19}


@pytest.mark.parametrize(
    ("n", "fractions", "expected"),
    [
        (3, (0.7, 0.15, 0.15), {"train": 1, "val": 1, "test": 1}),
        (5, (0.7, 0.15, 0.15), {"train": 3, "val": 1, "test": 1}),
        (10, (0.8, 0.2, 0.0), {"train": 8, "val": 2}),
        (2, (0.7, 0.15, 0.15), {"train": 2}),  # too few subjects for one each
        (7, (1, 0, 0), {"train": 7}),
        (0, (0.7, 0.15, 0.15), {}),
    ],
)
def test_split_small_counts(n, fractions, expected):
    split = ds.split_subjects(IDS_125[:n], fractions=fractions)
    assert split.value_counts().to_dict() == expected


def test_split_bad_input():
    with pytest.raises(ValueError, match="sum to 1"):
        ds.split_subjects(IDS_125, fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="train, val, test"):
        ds.split_subjects(IDS_125, fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match=">= 0"):
        ds.split_subjects(IDS_125, fractions=(1.2, -0.2, 0.0))
    with pytest.raises(ValueError, match="duplicate subject ids: A00028185"):
        ds.split_subjects([*IDS_125, IDS_125[0]])


def test_index_split_uses_seed(tmp_path):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path, seed=4)
    expected = ds.split_subjects(SORTED_IDS, seed=4)
    assert list(df["split"]) == list(expected[df["subject"]])


# --------------------------------------------------------------------------- index files


def test_write_index_refuses_to_overwrite(tmp_path):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path)
    path = ds.write_index(df, tmp_path / "out" / "index.csv")
    assert path == tmp_path / "out" / "index.csv"
    first = path.read_bytes()
    with pytest.raises(ds.IndexExistsError, match="overwrite=True") as info:
        ds.write_index(df.iloc[:2], path)
    assert isinstance(info.value, SkullstripError)
    assert isinstance(info.value, FileExistsError)
    assert path.read_bytes() == first
    ds.write_index(df.iloc[:2], path, overwrite=True)
    assert len(ds.read_index(path)) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.csv"]  # no temp files


def test_read_index_round_trip(tmp_path):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path, seed=2)
    path = ds.write_index(df, tmp_path / "index.csv")
    pd.testing.assert_frame_equal(ds.read_index(path), df)


def test_read_index_relative_paths(tmp_path):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path)
    rel = df.copy()
    for kind in KINDS:
        rel[kind] = [str(Path(p).relative_to(tmp_path)) for p in df[kind]]
    rel.to_csv(tmp_path / "rel.csv", index=False)
    pd.testing.assert_frame_equal(ds.read_index(tmp_path / "rel.csv"), df)


def test_read_index_errors(tmp_path):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path)
    with pytest.raises(MissingFileError, match="index file not found"):
        ds.read_index(tmp_path / "nope.csv")
    df.drop(columns="brain").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidInputError, match="lacks column"):
        ds.read_index(tmp_path / "bad.csv")
    with pytest.raises(InvalidInputError, match="lacks column"):
        ds.write_index(df.drop(columns="split"), tmp_path / "never.csv")
    assert not (tmp_path / "never.csv").exists()
    path = ds.write_index(df, tmp_path / "index.csv")
    Path(df.loc[1, "brainmask"]).unlink()
    with pytest.raises(MissingFileError) as info:
        ds.read_index(path)
    assert df.loc[1, "subject"] in str(info.value) and "brainmask" in str(info.value)


def test_progress_bars_on(tmp_path, server, tiny, capsys):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = ds.fetch_nfbs(tmp_path, url=url, known_hash=f"md5:{digest}", retries=0)
    assert ds.find_subjects(root) == SORTED_IDS
    assert "Extracting NFBS" in capsys.readouterr().err


def test_with_synthetic_heads_from_synth(tmp_path, server):
    synth = pytest.importorskip("skullstrip_lib.synth")
    if not hasattr(synth, "write_nfbs_dataset"):
        pytest.skip("skullstrip_lib.synth.write_nfbs_dataset is not there yet")
    synth.write_nfbs_dataset(
        tmp_path / "src", 3, seed=0, progress=False, shape=(48, 48, 40), voxel_size=(4.0, 4.0, 4.0)
    )
    data = make_archive(tmp_path / "src" / "NFBS_Dataset")
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path / "data", url, f"md5:{md5(data)}")
    df = ds.index_dataset(root)
    assert len(df) == 3
    assert nib.load(df.loc[0, "t1w"]).shape == (48, 48, 40)


def test_extraction_without_data_filter(tmp_path, server, tiny, monkeypatch):
    monkeypatch.setattr(ds, "_HAS_DATA_FILTER", False)
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: extract() without filter
        root = fetch(tmp_path, url, f"md5:{digest}")
    assert ds.index_dataset(root)["subject"].tolist() == SORTED_IDS


# --------------------------------------------------------------------------- inspecting a dataset


