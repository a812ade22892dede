"""Tests of skullstrip_lib.datasets: download, safe extraction, index and split.

Nothing here touches the network: a threaded HTTP server on 127.0.0.1 serves a
tiny archive in the real NFBS layout, built from small NIfTI heads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import tarfile
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import LocalServer
from helpers import IDS, KINDS, SORTED_IDS, file_name, write_tiny_nfbs

from skullstrip_lib import datasets as ds
from skullstrip_lib.datasets import _archive, nfbs
from skullstrip_lib.errors import (
    DownloadError,
    InvalidArgumentError,
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


def completion_order(data: bytes) -> list[str]:
    """Subjects of a tar.gz in the order their third file appears (how fetch_nfbs picks N)."""
    seen: dict[str, set] = {}
    order = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.startswith("sub-"):
                subject = Path(member.name).parent.name
                seen.setdefault(subject, set()).add(name)
                if len(seen[subject]) == 3 and subject not in order:
                    order.append(subject)
    return order


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

    monkeypatch.setattr(nfbs, "_extract_members", boom)
    monkeypatch.setattr(nfbs, "_download", boom)
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
    order = completion_order(data)  # the tiny archive's members are shuffled
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, f"md5:{digest}", n_subjects=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(order[:2])
    assert ds.find_subjects(root) == sorted(order[:2])
    first = snapshot(root / order[0])
    assert leftovers(tmp_path) == ["NFBS_Dataset"]  # a stream stores no archive

    fetch(tmp_path, url, f"md5:{digest}", n_subjects=4)
    assert ds.find_subjects(tmp_path) == sorted(order[:4])
    assert snapshot(root / order[0]) == first  # not re-extracted
    assert len(server.requests) == 2  # streamed again, for the two missing subjects
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["subjects"] == sorted(order[:4])
    assert marker["available"] is None  # the stream stopped before the end

    with pytest.raises(InvalidInputError, match="n_subjects=6 but the NFBS archive has 5"):
        fetch(tmp_path, url, f"md5:{digest}", n_subjects=6)
    assert ds.find_subjects(tmp_path) == SORTED_IDS  # the whole archive went by: all 5
    with pytest.raises(InvalidInputError, match="n_subjects=6 but the NFBS archive has 5"):
        fetch(tmp_path, url, f"md5:{digest}", n_subjects=6)  # known now: no request
    assert len(server.requests) == 3
    with pytest.raises(InvalidArgumentError, match="^n_subjects must be an integer >= 1 or None, "
                                                   "got 0$"):
        fetch(tmp_path, url, f"md5:{digest}", n_subjects=0)
    fetch(tmp_path, url, f"md5:{digest}")  # every subject recorded: nothing to do
    assert len(server.requests) == 3
    assert leftovers(tmp_path) == ["NFBS_Dataset"]


def test_n_subjects_with_a_kept_archive_uses_it(tmp_path, server, tiny):
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    fetch(tmp_path, url, f"md5:{digest}", n_subjects=1, keep_archive=False)
    fetch(tmp_path, url, f"md5:{digest}", n_subjects=3, keep_archive=False)
    assert len(server.requests) == 2
    assert ds.find_subjects(tmp_path) == sorted(completion_order(data)[:3])
    assert leftovers(tmp_path) == ["NFBS_Dataset"]

    # a whole download keeps the archive; with it, a partial call needs no request
    data_dir = tmp_path / "kept"
    root = fetch(data_dir, url, f"md5:{digest}")
    for subject in SORTED_IDS[:2]:
        shutil.rmtree(root / subject)
    fetch(data_dir, url, f"md5:{digest}", n_subjects=5)
    assert ds.find_subjects(root) == SORTED_IDS
    assert len(server.requests) == 3


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
        monkeypatch.setattr(_archive, "_HAS_DATA_FILTER", False)
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
    # the first two complete subjects (in archive order) are there: n_subjects=2 works
    order = completion_order(make_archive(root))
    assert "A00000300" not in order
    fetch(tmp_path / "data", url, None, n_subjects=2)
    assert ds.find_subjects(tmp_path / "data") == sorted(order[:2])


def test_not_an_archive(tmp_path, server, tiny):
    # Without a hash, only the gzip trailer can tell a whole download: not gzip, not kept.
    url = server.serve("/NFBS_Dataset.tar.gz", b"this is not a tar file at all" * 10)
    with pytest.raises(DownloadError, match=r"is not a whole gzip file \(fails the gzip check"):
        fetch(tmp_path, url, None)
    assert leftovers(tmp_path) == []
    # gzip, but not tar: refused on reading, the (whole, as downloaded) file is kept.
    url = server.serve("/NFBS_Dataset.tar.gz", gzip.compress(b"not a tar file" * 100))
    with pytest.raises(InvalidInputError, match=r"not a readable tar\.gz archive"):
        fetch(tmp_path, url, None)
    assert leftovers(tmp_path) == ["NFBS_Dataset.tar.gz"]


@pytest.mark.parametrize("cut", ["half", "before-trailer"])
def test_cut_download_without_length_and_hash_is_not_kept_nor_reused(tmp_path, server, tiny,
                                                                       no_sleep, cut):
    data, _ = tiny
    # The server sends no Content-Length and hangs up early: requests cannot tell, and
    # --known-hash none gives no hash to tell. The gzip trailer (CRC-32 and length) can.
    cut_at = len(data) // 2 if cut == "half" else len(data) - 4
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="no_length", cut_at=cut_at)
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, url, None, retries=1)
    message = str(info.value)
    assert "\n" not in message and url in message
    assert f"the download of {cut_at:,} bytes is not a whole gzip file" in message
    assert "nothing was kept, retry" in message
    assert leftovers(tmp_path) == []  # not under its final name, no temporary either
    assert len(server.requests) == 2  # pooch retried it
    # A cut archive left under its final name (by an older version) is not reused either.
    (tmp_path / ds.NFBS_ARCHIVE).write_bytes(data[:cut_at])
    server.serve("/NFBS_Dataset.tar.gz", data, mode="no_length")
    root = fetch(tmp_path, url, None)
    assert ds.find_subjects(root) == SORTED_IDS
    assert len(server.requests) == 3  # downloaded again
    assert (tmp_path / ds.NFBS_ARCHIVE).read_bytes() == data
    # and a whole one is reused, without a download
    (tmp_path / "again").mkdir()
    shutil.copy(tmp_path / ds.NFBS_ARCHIVE, tmp_path / "again" / ds.NFBS_ARCHIVE)
    assert ds.find_subjects(fetch(tmp_path / "again", url, None)) == SORTED_IDS
    assert len(server.requests) == 3


def zero_member_archive(name: str, size: int) -> bytes:
    """A tar.gz whose one member ``name`` holds ``size`` zero bytes, built in milliseconds.

    After a full flush deflate forgets its history, so 1 MiB of zeros compresses to the
    same ~1 kB every time: the piece is repeated instead of compressing gigabytes. The
    trailer's CRC-32 and length are the real ones.
    """
    info = tarfile.TarInfo(name)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    end = bytes(-size % 512) + bytes(2 * 512)  # the member's padding, the end-of-archive blocks
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate; the gzip framing is ours
    mib = bytes(1 << 20)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(size, len(mib))
    tail = c.compress(bytes(rest) + end) + c.flush()
    crc = zlib.crc32(header)
    for _ in range(whole):
        crc = zlib.crc32(mib, crc)
    crc = zlib.crc32(bytes(rest) + end, crc)
    total = len(header) + size + len(end)
    gz_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return (gz_header + head + piece * whole + tail + crc.to_bytes(4, "little")
            + (total % 2**32).to_bytes(4, "little"))


@pytest.fixture(scope="session")
def zero_3gb():
    """A 3 GB all-zero T1w member in a 3 MB archive (bytes, md5)."""
    name = f"NFBS_Dataset/A00000100/{ds.nfbs_filenames('A00000100')['t1w']}"
    data = zero_member_archive(name, 3 * 10**9)
    return data, md5(data)


@pytest.mark.parametrize("stream", [False, True], ids=["whole-archive", "stream"])
def test_huge_member_is_refused_before_it_is_written(tmp_path, server, zero_3gb, stream):
    data, digest = zero_3gb
    assert len(data) < 4 * 2**20
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    with pytest.raises(InvalidInputError) as info:
        fetch(tmp_path, url, None if stream else f"md5:{digest}",
              n_subjects=1 if stream else None)
    message = str(info.value)
    assert "\n" not in message
    assert ("refusing unsafe archive member 'NFBS_Dataset/A00000100/sub-A00000100_ses-NFB3_"
            "T1w.nii.gz' (3,000,000,000 bytes, more than the 268,435,456 an NFBS file can be)"
            in message)
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert written == (0 if stream else len(data))  # the archive itself, nothing extracted
    assert leftovers(tmp_path) == ([] if stream else ["NFBS_Dataset.tar.gz"])


def test_member_that_decompresses_beyond_any_volume_is_refused(tmp_path, monkeypatch):
    # A member within the tar size bound whose gzip expands past the largest volume
    # accepted: decompression stops at the bound (here lowered to keep the test fast).
    from skullstrip_lib.io import voxel_limit

    path = tmp_path / "member.nii.gz"
    path.write_bytes(gzip.compress(bytes(4 * 2**20)))
    monkeypatch.setattr(_archive, "MAX_HEADER_BYTES", 1024)
    with voxel_limit(1000), pytest.raises(_archive._BadFile,
                                          match="decompresses to more than 9,024 "
                                                "bytes, more than any volume"):
        _archive._check_nifti_gz(path)


# --------------------------------------------------------------------------- the NFBS stand-in


def raw_tar(data: bytes) -> bytes:
    return gzip.decompress(data)


def regzip(tar: bytes) -> bytes:
    return gzip.compress(tar, mtime=0)


def member_span(data: bytes, name: str) -> tuple[int, int]:
    """(offset, size) of a member's data in the uncompressed tar."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.getmember(name)
        return member.offset_data, member.size


def compressed_offset(data: bytes, raw_offset: int) -> int:
    """The first offset in the tar.gz *data* whose bytes decompress past *raw_offset*."""
    inflate = zlib.decompressobj(wbits=31)
    out = 0
    for start in range(0, len(data), 512):
        out += len(inflate.decompress(data[start : start + 512]))
        if out > raw_offset:
            return start
    raise AssertionError("offset past the end")


def nfbs_names(ids) -> list[tuple[str, bool]]:
    """The NFBS layout: (member name, is a folder), in archive order."""
    names = [("NFBS_Dataset", True)]
    for subject in ids:
        names.append((f"NFBS_Dataset/{subject}", True))
        files = sorted(ds.nfbs_filenames(subject).values())
        names += [(f"NFBS_Dataset/{subject}/{n}", False) for n in files]
    return names


def test_standin_archive_has_the_nfbs_layout(nfbs_standin, small_dataset):
    data, _, ids = nfbs_standin
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [(m.name, m.isdir()) for m in members] == nfbs_names(ids)
        assert all(m.isdir() or m.isfile() for m in members)
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
        assert {m.mode for m in members if m.isdir()} == {0o755}
        assert {m.mode for m in members if m.isfile()} == {0o644}
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    raw = raw_tar(data)
    assert raw[:100].rstrip(b"\0") == b"NFBS_Dataset/"  # folders stored with a slash, like tar
    assert data[4:8] == bytes(4)  # the archive's gzip mtime is 0
    for content in files.values():
        assert content[:2] == b"\x1f\x8b" and content[4:8] == bytes(4)  # each file: gzip, mtime 0
        img = nib.Nifti1Image.from_bytes(gzip.decompress(content))
        assert img.shape == (64, 64, 48)
        assert nib.affines.voxel_sizes(img.affine) == pytest.approx((4.0, 4.0, 4.0))
    # the same bytes as the same heads written as folders by write_nfbs_dataset
    for subject in ids[:4]:
        for name in ds.nfbs_filenames(subject).values():
            written = (small_dataset / subject / name).read_bytes()
            assert files[f"NFBS_Dataset/{subject}/{name}"] == written


def test_standin_archive_is_reproducible(tmp_path):
    from skullstrip_lib.synth import write_nfbs_archive

    small = {"shape": (32, 32, 24), "voxel_size": (8.0, 8.0, 8.0)}
    a = write_nfbs_archive(tmp_path / "a" / "NFBS_Dataset.tar.gz", 2, seed=5, progress=False,
                           **small)
    b = write_nfbs_archive(tmp_path / "b.tar.gz", 2, seed=5, progress=False, **small)
    c = write_nfbs_archive(tmp_path / "c.tar.gz", 2, seed=6, progress=False, **small)
    assert a == tmp_path / "a" / "NFBS_Dataset.tar.gz"
    assert md5(a.read_bytes()) == md5(b.read_bytes())
    assert md5(a.read_bytes()) != md5(c.read_bytes())
    assert sorted(p.name for p in a.parent.iterdir()) == ["NFBS_Dataset.tar.gz"]  # no temp file
    with tarfile.open(c) as tar:
        assert [n for n, _ in nfbs_names(["A90060000", "A90060001"])] == tar.getnames()


def test_standin_archive_bad_input_and_atomic(tmp_path, monkeypatch):
    from skullstrip_lib import synth
    from skullstrip_lib.errors import OutputExistsError

    target = tmp_path / "NFBS_Dataset.tar.gz"
    target.write_bytes(b"keep me")
    made = []
    monkeypatch.setattr(synth, "make_head", lambda *a, **k: made.append(a) or 1 / 0)
    with pytest.raises(OutputExistsError, match="already exists"):
        synth.write_nfbs_archive(target, 2, progress=False)
    assert made == [] and target.read_bytes() == b"keep me"  # refused before any head
    with pytest.raises(InvalidArgumentError, match="n_subjects must be an integer from 1 to 10000"):
        synth.write_nfbs_archive(tmp_path / "x.tar.gz", 0)
    with pytest.raises(TypeError, match="unknown make_head arguments: colour"):
        synth.write_nfbs_archive(tmp_path / "x.tar.gz", 1, colour="red")
    with pytest.raises(ValueError, match="is a folder"):
        synth.write_nfbs_archive(tmp_path, 1)
    # a failure part-way leaves the old file and no temporary one
    with pytest.raises(ZeroDivisionError):
        synth.write_nfbs_archive(target, 2, progress=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["NFBS_Dataset.tar.gz"]
    assert target.read_bytes() == b"keep me"


# --------------------------------------------------------------------------- streaming


def files_of(root: Path, subject: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / subject).iterdir())}


def archive_files(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_stream_two_of_six_reads_well_under_half(tmp_path, server, nfbs_standin, record_property):
    data, _, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, None, n_subjects=2)
    assert root == tmp_path / "NFBS_Dataset"
    assert ds.find_subjects(root) == ids[:2]  # the first two in archive order
    packed = archive_files(data)
    for subject in ids[:2]:
        for name, content in files_of(root, subject).items():
            assert content == packed[f"NFBS_Dataset/{subject}/{name}"]
    df = ds.index_dataset(root)
    assert nib.load(df.loc[0, "brainmask"]).shape == (64, 64, 48)
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["subjects"] == ids[:2]
    assert marker["verified"] == {s: ["gzip-crc", "nifti"] for s in ids[:2]}
    assert marker["available"] is None
    assert leftovers(tmp_path) == ["NFBS_Dataset"]  # no archive, no temporary folder
    (transfer,) = server.transfers()
    share = transfer.sent / transfer.total
    record_property("share_sent_2_of_6", round(share, 3))
    assert transfer.total == len(data)
    assert share < 0.5, f"the server sent {share:.0%} of the archive for 2 of 6 subjects"


def test_stream_later_calls_reuse_and_a_full_fetch_checks_the_md5(tmp_path, server, nfbs_standin):
    data, digest, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, None, n_subjects=2)
    before = snapshot(root)
    fetch(tmp_path, url, None, n_subjects=4)
    assert ds.find_subjects(root) == ids[:4]
    files = {k: v for k, v in before.items() if k != ".complete.json"}
    assert {k: v for k, v in snapshot(root).items() if k in files} == files  # reused
    fetch(tmp_path, url, None, n_subjects=3)  # 4 on disk: nothing to do
    assert len(server.requests) == 2

    # n_subjects=None: the whole archive with pooch, its MD5 checked
    with pytest.raises(DownloadError, match=f"MD5 is {digest} but {'0' * 32} was pinned"):
        fetch(tmp_path, url, "md5:" + "0" * 32)
    assert ds.find_subjects(root) == ids[:4]
    fetch(tmp_path, url, f"md5:{digest}")
    assert ds.find_subjects(root) == ids
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["available"] == ids
    assert marker["known_hash"] == f"md5:{digest}"
    assert marker["verified"] == {
        **{s: ["gzip-crc", "nifti"] for s in ids[:4]},
        **{s: [f"md5:{digest}", "gzip-crc", "nifti"] for s in ids[4:]},
    }
    assert leftovers(tmp_path) == ["NFBS_Dataset", "NFBS_Dataset.tar.gz"]
    assert len(server.requests) == 4


def corrupt(data: bytes, member: str, where: str) -> bytes:
    """The archive with bytes of one member's gzip data flipped: its CRC field or mid-stream."""
    raw = bytearray(raw_tar(data))
    offset, size = member_span(data, member)
    at = offset + size - 8 if where == "crc" else offset + size // 2
    raw[at : at + 2] = bytes(b ^ 0xFF for b in raw[at : at + 2])
    return regzip(bytes(raw))


@pytest.mark.parametrize("where", ["crc", "data"])
def test_stream_refuses_a_corrupt_member(tmp_path, server, nfbs_standin, where):
    data, _, ids = nfbs_standin
    member = f"NFBS_Dataset/{ids[0]}/{ds.nfbs_filenames(ids[0])['brain']}"
    url = server.serve("/NFBS_Dataset.tar.gz", corrupt(data, member, where))
    with pytest.raises(InvalidInputError) as info:
        fetch(tmp_path / "data", url, None, n_subjects=2, retries=2)
    message = str(info.value)
    assert "\n" not in message
    assert url in message and f"member {member!r} fails the gzip check" in message
    if where == "crc":
        assert "CRC check failed" in message
    assert leftovers(tmp_path / "data") == []
    assert len(server.requests) == 1  # a damaged archive is not retried


def test_stream_checks_only_what_it_reads(tmp_path, server, nfbs_standin):
    data, _, ids = nfbs_standin
    member = f"NFBS_Dataset/{ids[4]}/{ds.nfbs_filenames(ids[4])['t1w']}"
    url = server.serve("/NFBS_Dataset.tar.gz", corrupt(data, member, "crc"))
    assert ds.find_subjects(fetch(tmp_path, url, None, n_subjects=2)) == ids[:2]
    with pytest.raises(InvalidInputError, match=f"member '{member}' fails the gzip check"):
        fetch(tmp_path, url, None, n_subjects=6)
    assert ds.find_subjects(tmp_path) == ids[:4]  # the complete, checked subjects stay


def tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def nii_gz(shape, dtype=np.uint8) -> bytes:
    return gzip.compress(nib.Nifti1Image(np.ones(shape, dtype), np.eye(4)).to_bytes())


BAD_SUBJECTS = {
    "not-nifti": ({"t1w": gzip.compress(b"hello " * 100)}, "is not a NIfTI image"),
    "4d": ({"brain": nii_gz((6, 6, 5, 2))}, "is not a 3D volume (shape (6, 6, 5, 2))"),
    "short-data": ({"brainmask": gzip.compress(
        nib.Nifti1Image(np.ones((6, 6, 5), np.uint8), np.eye(4)).to_bytes()[:-20])},
        "holds 512 bytes but its header describes 532"),  # 352 + 6 * 6 * 5 bytes
    "shapes": ({"brainmask": nii_gz((6, 6, 4))},
               "subject A00000100: the brainmask has shape (6, 6, 4) but the T1w has (6, 6, 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SUBJECTS))
def test_stream_refuses_files_that_are_not_the_nfbs_volumes(tmp_path, server, case):
    replace, expected = BAD_SUBJECTS[case]
    names = ds.nfbs_filenames("A00000100")
    members = [(f"NFBS_Dataset/A00000100/{names[k]}", replace.get(k, nii_gz((6, 6, 5))))
               for k in KINDS]
    url = server.serve("/NFBS_Dataset.tar.gz", tar_gz(members))
    with pytest.raises(InvalidInputError) as info:
        fetch(tmp_path, url, None, n_subjects=1)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert leftovers(tmp_path) == []


def test_stream_cut_mid_subject_keeps_the_complete_ones(tmp_path, server, nfbs_standin, no_sleep):
    data, _, ids = nfbs_standin
    t1w = f"NFBS_Dataset/{ids[1]}/{ds.nfbs_filenames(ids[1])['t1w']}"
    offset, size = member_span(data, t1w)
    cut_at = compressed_offset(data, offset + size // 2)
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="cut_at", cut_at=cut_at)
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, url, None, n_subjects=3, retries=1)
    message = str(info.value)
    assert "\n" not in message and url in message
    assert f"the connection closed after {cut_at:,} of {len(data):,} bytes" in message
    assert "after 2 failed attempts" in message  # the first one added a subject: not counted
    assert "1 complete subject is on disk, rerun to fetch the rest" in message
    assert len(server.requests) == 3
    root = tmp_path / "NFBS_Dataset"
    assert sorted(p.name for p in root.iterdir()) == [".complete.json", ids[0]]
    assert leftovers(tmp_path) == ["NFBS_Dataset"]  # no temporary folder, no half subject
    assert json.loads((root / ".complete.json").read_text())["subjects"] == ids[:1]
    kept = snapshot(root / ids[0])

    server.serve("/NFBS_Dataset.tar.gz", data)  # the connection holds now
    fetch(tmp_path, url, None, n_subjects=3)
    assert ds.find_subjects(root) == ids[:3]
    assert snapshot(root / ids[0]) == kept


def test_stream_retries_after_a_server_error(tmp_path, server, nfbs_standin, no_sleep):
    data, _, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="fail_once")
    assert ds.find_subjects(fetch(tmp_path, url, None, n_subjects=1, retries=1)) == ids[:1]
    assert len(server.requests) == 2


def test_stream_http_error_and_refused_connection(tmp_path, server, no_sleep):
    url = server.url("/missing/NFBS_Dataset.tar.gz")
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, url, None, n_subjects=1, retries=2)
    message = str(info.value)
    assert "\n" not in message and url in message and "HTTP 404" in message
    assert len(server.requests) == 1  # a 404 is not retried
    assert leftovers(tmp_path) == []

    closed = LocalServer()
    dead_url = closed.url("/NFBS_Dataset.tar.gz")
    closed.close()
    with pytest.raises(DownloadError) as info:
        fetch(tmp_path, dead_url, None, n_subjects=1, retries=1)
    message = str(info.value)
    assert dead_url in message and "cannot connect" in message and "\n" not in message
    assert "after 2 failed attempts" in message
    assert leftovers(tmp_path) == []


def test_stream_stalled_server_times_out(tmp_path, server, nfbs_standin):
    data, _, ids = nfbs_standin
    offset, size = member_span(data, f"NFBS_Dataset/{ids[2]}/{ds.nfbs_filenames(ids[2])['t1w']}")
    cut_at = compressed_offset(data, offset + size // 2)  # mid-way through the third subject
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="stall", cut_at=cut_at)
    with pytest.raises(DownloadError, match=r"no data for 0\.5 s after [0-9,]+ of") as info:
        fetch(tmp_path, url, None, n_subjects=3, timeout=0.5)
    assert "\n" not in str(info.value)
    assert ds.find_subjects(tmp_path) == ids[:2]
    with pytest.raises(InvalidArgumentError, match="^timeout must be a positive number, got 0$"):
        fetch(tmp_path, url, None, n_subjects=3, timeout=0)


def test_stream_without_a_length(tmp_path, server, nfbs_standin, no_sleep):
    data, _, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data, mode="no_length")
    assert ds.find_subjects(fetch(tmp_path / "a", url, None, n_subjects=2)) == ids[:2]
    # to its end: a cut and the end of the archive look alike without a length
    with pytest.raises(DownloadError, match="sent no length, so whether the archive is complete"):
        fetch(tmp_path / "a", url, None, n_subjects=7)
    assert ds.find_subjects(tmp_path / "a") == ids
    t1w = f"NFBS_Dataset/{ids[1]}/{ds.nfbs_filenames(ids[1])['t1w']}"
    cut_at = compressed_offset(data, sum(member_span(data, t1w)) - 100)
    server.serve("/NFBS_Dataset.tar.gz", data, mode="no_length", cut_at=cut_at)
    with pytest.raises(DownloadError, match="the data ended after"):
        fetch(tmp_path / "b", url, None, n_subjects=2)
    assert ds.find_subjects(tmp_path / "b") == ids[:1]


def test_stream_more_subjects_than_the_archive_has(tmp_path, server, nfbs_standin):
    data, _, ids = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    with pytest.raises(InvalidInputError, match="n_subjects=7 but the NFBS archive has 6 subjects"):
        fetch(tmp_path, url, None, n_subjects=7)
    assert ds.find_subjects(tmp_path) == ids  # each complete subject was kept
    marker = json.loads((tmp_path / "NFBS_Dataset" / ".complete.json").read_text())
    assert marker["available"] == ids
    with pytest.raises(InvalidInputError, match="n_subjects=7 but the NFBS archive has 6"):
        fetch(tmp_path, url, None, n_subjects=7)
    assert len(server.requests) == 1  # known now
    (transfer,) = server.transfers()
    assert transfer.sent == transfer.total


def test_stream_picks_the_first_complete_subjects_in_archive_order(tmp_path, server, tiny):
    data, _ = tiny  # shuffled members: subjects are complete in no particular order
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path, url, None, n_subjects=3)
    assert ds.find_subjects(root) == sorted(completion_order(data)[:3])
    for subject in ds.find_subjects(root):
        for kind in KINDS:
            assert (root / subject / file_name(subject, kind)).is_file()


@pytest.mark.parametrize("fallback", [False, True], ids=["data_filter", "fallback"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_stream_refuses_unsafe_members(tmp_path, server, case, fallback, monkeypatch):
    if fallback:
        monkeypatch.setattr(_archive, "_HAS_DATA_FILTER", False)
    root = write_tiny_nfbs(tmp_path / "src", ids=IDS[:2])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, content in UNSAFE[case]:  # first, so that the stream reads it
            tar.addfile(info, None if content is None else io.BytesIO(content))
        tar.add(root, arcname="NFBS_Dataset")
    url = server.serve("/NFBS_Dataset.tar.gz", buffer.getvalue())
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(InvalidInputError, match="refusing unsafe archive member"):
        fetch(data_dir, url, None, n_subjects=1)
    assert leftovers(data_dir) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "deep" / "evil").exists()


def test_stream_not_an_archive(tmp_path, server):
    url = server.serve("/NFBS_Dataset.tar.gz", b"this is not a tar file at all" * 10)
    with pytest.raises(InvalidInputError, match=r"not a readable tar\.gz archive") as info:
        fetch(tmp_path, url, None, n_subjects=1, retries=3)
    assert url in str(info.value)
    assert leftovers(tmp_path) == [] and len(server.requests) == 1


def test_stream_progress_bar_and_summary(tmp_path, server, nfbs_standin, capsys):
    data, _, _ = nfbs_standin
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    ds.fetch_nfbs(tmp_path, n_subjects=1, url=url, retries=0)
    err = capsys.readouterr().err
    assert "Streaming NFBS (1 subjects)" in err
    summary = err.strip().splitlines()[-1].split("\r")[-1].strip()
    assert summary.startswith("NFBS: 1 subject(s) streamed from " + url)
    assert f"of {len(data):,} bytes" in summary
    assert "gzip CRC-32 and NIfTI header" in summary and "MD5 was not checked" in summary


# --------------------------------------------------------------------------- the address


def test_url_from_the_environment(tmp_path, server, nfbs_standin, monkeypatch):
    data, _, ids = nfbs_standin
    url = server.serve("/mirror/NFBS_Dataset.tar.gz", data)
    monkeypatch.setenv(ds.ENV_NFBS_URL, url)
    root = ds.fetch_nfbs(tmp_path / "a", n_subjects=1, known_hash=None, progressbar=False)
    assert ds.find_subjects(root) == ids[:1]
    assert server.requests == ["/mirror/NFBS_Dataset.tar.gz"]
    marker = json.loads((root / ".complete.json").read_text())
    assert marker["url"] == url

    # an explicit url wins over the environment
    other = server.serve("/other/NFBS_Dataset.tar.gz", data)
    fetch(tmp_path / "b", other, None, n_subjects=1)
    assert server.requests[-1] == "/other/NFBS_Dataset.tar.gz"

    # errors name the variable the address came from
    monkeypatch.setenv(ds.ENV_NFBS_URL, server.url("/gone/NFBS_Dataset.tar.gz"))
    expected = f"\\(from {ds.ENV_NFBS_URL}\\): download failed: HTTP 404"
    with pytest.raises(DownloadError, match=expected):
        ds.fetch_nfbs(tmp_path / "c", n_subjects=1, known_hash=None, progressbar=False)
    monkeypatch.setenv(ds.ENV_NFBS_URL, "fcp-indi.s3.amazonaws.com/NFBS_Dataset.tar.gz")
    with pytest.raises(InvalidInputError, match=f"{ds.ENV_NFBS_URL}='fcp-indi.*' is not an http"):
        ds.fetch_nfbs(tmp_path / "c", n_subjects=1, progressbar=False)
    with pytest.raises(InvalidInputError, match="url='/local/file' is not an http"):
        fetch(tmp_path / "c", "/local/file", None)
    assert leftovers(tmp_path / "c") == []


def test_url_default_and_blank_environment(tmp_path, monkeypatch):
    seen = []

    def fake_download(url, source, *args, **kwargs):
        seen.append((url, source))
        raise DownloadError(f"{source}: not here")

    monkeypatch.setattr(nfbs, "_download", fake_download)
    monkeypatch.setenv(ds.ENV_NFBS_URL, "   ")
    with pytest.raises(DownloadError):
        ds.fetch_nfbs(tmp_path, progressbar=False)
    monkeypatch.setenv(ds.ENV_NFBS_URL, "https://mirror.example.org/NFBS_Dataset.tar.gz")
    with pytest.raises(DownloadError, match=f"\\(from {ds.ENV_NFBS_URL}\\)"):
        ds.fetch_nfbs(tmp_path, progressbar=False)
    assert seen == [
        (ds.NFBS_URL, f"NFBS_Dataset.tar.gz from {ds.NFBS_URL}"),
        ("https://mirror.example.org/NFBS_Dataset.tar.gz",
         f"NFBS_Dataset.tar.gz from https://mirror.example.org/NFBS_Dataset.tar.gz "
         f"(from {ds.ENV_NFBS_URL})"),
    ]


# --------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_stream_two_of_six_full_size_heads(tmp_path, server, record_property):
    from skullstrip_lib.synth import NFBS_SHAPE, subject_id, write_nfbs_archive

    archive = write_nfbs_archive(tmp_path / "NFBS_Dataset.tar.gz", 6, seed=4, progress=False)
    data = archive.read_bytes()
    ids = [subject_id(i, 4) for i in range(6)]
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    root = fetch(tmp_path / "data", url, None, n_subjects=2)
    assert ds.find_subjects(root) == ids[:2]
    for path in ds.index_dataset(root)[["t1w", "brainmask", "brain"]].to_numpy().ravel():
        img = nib.load(path)
        assert img.shape == NFBS_SHAPE == (256, 256, 192)
        assert nib.affines.voxel_sizes(img.affine) == pytest.approx((1.0, 1.0, 1.0))
    (transfer,) = server.transfers()
    share = transfer.sent / transfer.total
    record_property("share_sent_2_of_6_full_size", round(share, 3))
    assert share < 0.5, f"the server sent {share:.0%} of {len(data):,} bytes for 2 of 6 subjects"


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


@pytest.mark.parametrize("column", ["t1w", "brainmask", "brain"])
def test_write_index_never_writes_over_a_file_it_lists(tmp_path, column):
    # Issue 18's rule for every command: `skullstrip index DATA -o <one of its scans>
    # --overwrite` replaced the scan with the CSV; an output is never an input.
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path)
    listed = Path(df.loc[1, column])
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InvalidInputError, match=rf"^{listed}: is an input of this run "
                                                rf"\({listed}\); nothing written"):
        ds.write_index(df, listed, overwrite=True)
    link = tmp_path / "index.csv"
    link.symlink_to(listed)  # the same file under another name
    with pytest.raises(InvalidInputError, match=rf"^{link}: is an input of this run"):
        ds.write_index(df, link, overwrite=True)
    assert link.is_symlink()
    link.unlink()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files


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
    from skullstrip_lib import synth

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
    monkeypatch.setattr(_archive, "_HAS_DATA_FILTER", False)
    data, digest = tiny
    url = server.serve("/NFBS_Dataset.tar.gz", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: extract() without filter
        root = fetch(tmp_path, url, f"md5:{digest}")
    assert ds.index_dataset(root)["subject"].tolist() == SORTED_IDS


# --------------------------------------------------------------------------- inspecting a dataset




@pytest.mark.parametrize("subject", ["../ESCAPED", "", ".", "/data/A1/sub-A1_ses-NFB3", "a/b"])
def test_read_index_refuses_subject_ids_that_are_not_labels(tmp_path, subject):
    write_tiny_nfbs(tmp_path)
    df = ds.index_dataset(tmp_path)
    df.loc[1, "subject"] = subject
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InvalidInputError, match=rf"^{tmp_path}/bad.csv: subject "
                                                rf"{re.escape(repr(subject))} is not a subject "
                                                "id"):
        ds.read_index(tmp_path / "bad.csv")
