"""Getting the NFBS archive: the address and hash to trust, a whole download, or a stream.

:func:`_resolve_url` and :func:`_resolve_hash` apply ``SKULLSTRIP_NFBS_URL`` and
``SKULLSTRIP_NFBS_HASH`` to the defaults; :func:`_download` fetches the whole
archive with :mod:`pooch` (hash check, retries, a cut transfer never kept);
:func:`_stream` reads it over HTTP and extracts subjects as they complete,
resuming a cut transfer where it stopped, and stops once it has the subjects asked for.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import (
    DownloadError,
    InvalidInputError,
)
from ._archive import (
    _FILE_CHECKS,
    _check_file,
    _check_member,
    _check_shapes,
    _expected_names,
    _extract,
    _gzip_problem,
    _has_all,
    _Listing,
    _one_line,
    _unsafe,
)
from ._paths import (
    ENV_NFBS_HASH,
    ENV_NFBS_URL,
    NFBS_ARCHIVE,
    NFBS_KNOWN_HASH,
    NFBS_SIZE,
    NFBS_URL,
)
from ._record import (
    _Record,
    _report,
    _too_many,
)


def _normalise_hash(value: str, source: str) -> str:
    """``"ABC..."`` (32 hex) → ``"md5:abc..."``; check the ``alg:hex`` form."""
    text = value.strip().lower()
    if ":" not in text:
        if re.fullmatch(r"[0-9a-f]{32}", text):
            return f"md5:{text}"
        if re.fullmatch(r"[0-9a-f]{64}", text):
            return f"sha256:{text}"
    alg, _, digest = text.partition(":")
    if alg not in {"md5", "sha1", "sha256", "sha512"} or not re.fullmatch(r"[0-9a-f]+", digest):
        raise InvalidInputError(
            None,
            f"{source}={value!r} is not a hash like 'md5:<32 hex digits>' "
            "(or 'sha256:<64 hex digits>')",
        )
    return f"{alg}:{digest}"


def _resolve_hash(known_hash: str | None) -> tuple[str | None, str]:
    """Apply ``SKULLSTRIP_NFBS_HASH`` to the pinned default; return (hash, where from)."""
    if known_hash is None:
        return None, "known_hash=None"
    env = os.environ.get(ENV_NFBS_HASH, "").strip()
    if known_hash == NFBS_KNOWN_HASH and env:
        return _normalise_hash(env, ENV_NFBS_HASH), ENV_NFBS_HASH
    return _normalise_hash(known_hash, "known_hash"), "known_hash"


def _check_url(value: str, source: str) -> str:
    text = value.strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in {"http", "https", "ftp"} or not parts.netloc:
        raise InvalidInputError(
            None, f"{source}={value!r} is not an http://, https:// or ftp:// address"
        )
    return text


def _resolve_url(url: str | None) -> tuple[str, str]:
    """The archive's address and where it came from: *url*, ``SKULLSTRIP_NFBS_URL``, the default."""
    if url is not None:
        return _check_url(str(url), "url"), "url"
    env = os.environ.get(ENV_NFBS_URL, "").strip()
    if env:
        return _check_url(env, ENV_NFBS_URL), ENV_NFBS_URL
    return NFBS_URL, "default"


def _source(url: str, where: str) -> str:
    """How messages name the archive: its address, and the variable it came from, if one."""
    via = f" (from {ENV_NFBS_URL})" if where == ENV_NFBS_URL else ""
    return f"{NFBS_ARCHIVE} from {url}{via}"


class _SameBytesAgain(Exception):
    """The retry got the very same wrong bytes: retrying more cannot help."""


class _RecordingDownloader:
    """A pooch downloader that remembers the size and hash of the last attempt."""

    def __init__(
        self, url: str, known_hash: str | None, progressbar: bool, timeout: float
    ) -> None:
        import pooch

        if url.lower().startswith("ftp://"):
            self.inner = pooch.FTPDownloader(progressbar=progressbar, timeout=timeout)
        else:
            self.inner = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
        self.known_hash = known_hash
        self.alg = None if known_hash is None else known_hash.split(":", 1)[0]
        self.attempts = 0
        self.last: tuple[str | None, int] | None = None
        self._seen: set[tuple[str | None, int]] = set()

    def __call__(self, url: str, output_file: str, pooch_obj: Any, check_only: bool = False):
        import pooch

        if check_only:  # pragma: no cover - availability checks are not used here
            return self.inner(url, output_file, pooch_obj, check_only=True)
        self.attempts += 1
        self.last = None
        self.inner(url, output_file, pooch_obj)
        if self.alg is None:  # no hash to tell a cut: the gzip trailer can (pooch retries)
            problem, _ = _gzip_problem(Path(output_file))
            if problem:
                raise ValueError(_cut_message(os.path.getsize(output_file), problem))
        digest = None if self.alg is None else pooch.file_hash(output_file, alg=self.alg)
        self.last = (digest, os.path.getsize(output_file))
        if digest is not None and f"{self.alg}:{digest}" != self.known_hash:
            if self.last in self._seen:
                raise _SameBytesAgain()
            self._seen.add(self.last)
        return None


def _cut_message(size: int, problem: str) -> str:
    return (f"the download of {size:,} bytes is not a whole gzip file ({problem}), and with "
            "--known-hash none nothing else can tell: the transfer was cut or the file is "
            "damaged; nothing was kept, retry (or pin the hash)")


def _mismatch_message(
    url: str, source: str, known_hash: str, where: str, actual: str, size: int
) -> str:
    alg, expected = known_hash.split(":", 1)
    pinned = "was pinned" if where == "known_hash" else f"was pinned (via {where})"
    sizes = f"downloaded {size:,} bytes"
    if url == NFBS_URL or known_hash == NFBS_KNOWN_HASH:
        sizes += f", expected about {NFBS_SIZE:,}"
    return (
        f"{source}: {alg.upper()} is {actual} but {expected} {pinned} "
        f"({sizes}): a short size means the download was cut, retry; otherwise the archive "
        f"changed upstream — check it and rerun with --known-hash {alg}:{actual} "
        f"(or {ENV_NFBS_HASH}={alg}:{actual})"
    )


def _download(
    url: str,
    source: str,
    data_dir: Path,
    known_hash: str | None,
    where: str,
    *,
    progressbar: bool,
    retries: int,
    timeout: float,
) -> Path:
    """Fetch the whole archive into ``data_dir`` with pooch; every failure is a DownloadError.

    Pooch streams into a temporary file inside ``data_dir`` and moves it to its
    final name only once the hash matched, deleting it otherwise. An archive
    already there whose hash matches is not downloaded again.
    """
    import pooch
    import requests

    base_url = url.rsplit("/", 1)[0] + "/"
    store = pooch.create(
        path=data_dir,
        base_url=base_url,
        registry={NFBS_ARCHIVE: known_hash},
        urls={NFBS_ARCHIVE: url},
        retry_if_failed=retries,
    )
    downloader = _RecordingDownloader(url, known_hash, progressbar, timeout)
    tries = f"after {retries + 1} attempt{'s' if retries else ''}"
    archive = data_dir / NFBS_ARCHIVE
    if known_hash is None and archive.is_file():
        # pooch reuses a file it has no hash for: one cut by an earlier download (or by an
        # older version of this library, which kept it) would then fail for ever. Only a
        # whole gzip file is reused; another is deleted and downloaded again.
        problem, _ = _gzip_problem(archive)
        if problem:
            _report(progressbar, f"{archive}: {problem}: not reused, downloading it again")
            archive.unlink()
    try:
        path = store.fetch(NFBS_ARCHIVE, downloader=downloader, progressbar=progressbar)
    except (ValueError, _SameBytesAgain) as exc:
        last = downloader.last
        if known_hash is not None and last is not None and last[0] is not None:
            raise DownloadError(
                _mismatch_message(url, source, known_hash, where, last[0], last[1])
            ) from None
        raise DownloadError(f"{source}: {_one_line(exc)}") from exc
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        status = "" if response is None else f"HTTP {response.status_code} {response.reason}"
        raise DownloadError(
            f"{source}: download failed {tries}: {status or _one_line(exc)}; "
            "check the address or retry later"
        ) from None
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        raise DownloadError(
            f"{source}: download failed {tries}: the connection closed "
            f"before the whole file arrived ({_one_line(exc, 150)}); retry later"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(
            f"{source}: download failed {tries}: "
            f"{type(exc).__name__}: {_one_line(exc, 200)}; check the network and retry"
        ) from None
    except OSError as exc:
        raise DownloadError(
            f"{source}: could not save it in {data_dir}: {_one_line(exc, 200)}"
        ) from None
    return Path(path)


class _Retry(Exception):
    """The transfer failed in a way another attempt may fix (cut, reset, timeout, HTTP 5xx).

    Raised with the reason; :func:`_stream_once` adds the subjects it completed and the
    bytes it read: ``(reason, added, count)``.
    """


class _HTTPReader:
    """A response body as a file for tarfile: counts bytes, feeds the bar, detects cuts.

    Any error while reading, and an end of data before the announced
    ``Content-Length``, becomes :class:`_Retry`.
    """

    def __init__(self, response: Any, bar: Any, timeout: float) -> None:
        self.response = response
        length = response.headers.get("Content-Length", "")
        self.length = int(length) if length.strip().isdigit() else None
        self.count = 0
        self.eof = False
        self.bar = bar
        self.timeout = timeout
        self.member = ""  # the member being read, for the messages

    def _where(self) -> str:
        inside = f", at member {self.member!r}" if self.member else ""
        of = "" if self.length is None else f" of {self.length:,}"
        return f"after {self.count:,}{of} bytes{inside}"

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.response.read(None if size is None or size < 0 else size)
        except TimeoutError:
            raise _Retry(f"no data for {self.timeout:g} s {self._where()}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _Retry(
                f"the transfer failed {self._where()} ({type(exc).__name__}: "
                f"{_one_line(exc, 120)})"
            ) from None
        if not data and size != 0:
            self.eof = True
            if self.length is not None and self.count < self.length:
                raise _Retry(f"the connection closed {self._where()}")
        self.count += len(data)
        self.bar.update(len(data))
        return data


def _open_stream(url: str, source: str, timeout: float) -> Any:
    """GET *url*; HTTP 4xx is a DownloadError, anything another attempt may fix is _Retry."""
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=timeout)  # the scheme was checked
    except urllib.error.HTTPError as exc:
        exc.close()
        status = f"HTTP {exc.code} {exc.reason}"
        if exc.code >= 500 or exc.code in {408, 429}:
            raise _Retry(status) from None
        raise DownloadError(f"{source}: download failed: {status}; check the address") from None
    except TimeoutError:
        raise _Retry(f"no answer within {timeout:g} s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _Retry(f"no answer within {timeout:g} s") from None
        raise _Retry(f"cannot connect ({_one_line(reason, 150)})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _Retry(f"{type(exc).__name__}: {_one_line(exc, 150)}") from None


def _stream_once(
    url: str,
    source: str,
    record: _Record,
    data_dir: Path,
    need: int,
    *,
    progressbar: bool,
    timeout: float,
) -> tuple[list[str], _Listing | None, tuple[int, int | None]]:
    """One GET: extract, check and move the first *need* new complete subjects.

    Returns the subjects added; if the whole archive went by, its listing (None
    when the stream was closed early, the N subjects being complete); and the
    bytes read with the announced length (None if none).
    Raises _Retry when the transfer failed; subjects completed before that
    stay in place (each is moved as soon as its three files are checked).
    """
    from tqdm.auto import tqdm

    added: list[str] = []
    listing = _Listing(source)
    files: dict[str, dict[str, tuple[int, ...]]] = {}  # subject → {name: shape} extracted
    reader = None
    advice = "the archive at this address is damaged or not NFBS"
    tmp = Path(tempfile.mkdtemp(prefix=".nfbs-stream-", dir=data_dir))
    try:
        with contextlib.ExitStack() as stack:
            response = stack.enter_context(_open_stream(url, source, timeout))
            reader = _HTTPReader(response, None, timeout)
            reader.bar = stack.enter_context(
                tqdm(
                    total=reader.length, desc=f"Streaming NFBS ({need} subjects)", unit="B",
                    unit_scale=True, unit_divisor=1024, disable=not progressbar, leave=False,
                )
            )  # fmt: skip
            try:
                tar = stack.enter_context(tarfile.open(fileobj=reader, mode="r|gz"))
                for member in tar:
                    reader.member = member.name
                    try:
                        _check_member(member, str(tmp))
                    except tarfile.TarError as exc:
                        raise _unsafe(source, member, exc) from None
                    found = listing.add(member)
                    if found is None or found[0] in record.verified:
                        continue  # a folder, another file, or a subject already on disk
                    subject, folder = found
                    if not member.isfile():
                        raise InvalidInputError(
                            source, f"member {member.name!r} is not a regular file; {advice}"
                        )
                    _extract(tar, member, tmp)
                    reader.member = ""
                    path = tmp.joinpath(*PurePosixPath(member.name).parts)
                    shape = _check_file(path, member.name, source, advice)
                    got = files.setdefault(subject, {})
                    got[path.name] = shape
                    if not _has_all(subject, got):
                        continue
                    names = _expected_names(subject, got)
                    _check_shapes(subject, {k: got[n] for k, n in names.items()}, source)
                    record.add(subject, tmp / folder, list(_FILE_CHECKS), tmp / ".replaced")
                    added.append(subject)
                    if len(added) == need:  # closing the response ends the transfer
                        return added, None, (reader.count, reader.length)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                if reader.eof and reader.length is None:  # no Content-Length to tell a cut
                    raise _Retry(f"the data ended {reader._where()}") from None
                raise InvalidInputError(
                    source, f"not a readable tar.gz archive ({_one_line(exc, 150)}); {advice}"
                ) from None
            if reader.length is None:  # the end of the archive, or a cut: no way to tell
                raise _Retry(
                    f"the data ended {reader._where()} and the server sent no length, so "
                    "whether the archive is complete cannot be told"
                )
    except _Retry as exc:
        raise _Retry(exc.args[0], added, 0 if reader is None else reader.count) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return added, listing, (reader.count, reader.length)


def _stream(
    url: str,
    source: str,
    record: _Record,
    data_dir: Path,
    n_subjects: int,
    *,
    progressbar: bool,
    retries: int,
    timeout: float,
) -> tuple[list[str], tuple[int, int | None]]:
    """Stream until *n_subjects* subjects are on disk; return those added, (bytes read, size).

    The bytes read are summed over all attempts.
    """
    added: list[str] = []
    failures = 0
    read = 0
    while True:
        need = n_subjects - len(record.verified)
        try:
            new, listing, (count, length) = _stream_once(
                url, source, record, data_dir, need, progressbar=progressbar, timeout=timeout
            )
        except _Retry as exc:
            _, new, count = exc.args
            added += new
            read += count
            if not new:  # an attempt that added a subject does not use up a retry
                failures += 1
            if failures > retries:
                kept = len(record.verified)
                raise DownloadError(
                    f"{source}: download failed after {failures} failed attempt"
                    f"{'s' if failures != 1 else ''}: {exc.args[0]}; {kept} complete "
                    f"subject{'s are' if kept != 1 else ' is'} on disk, rerun to fetch the rest"
                ) from None
            time.sleep(min(failures, 10))
            continue
        added += new
        read += count
        if listing is not None:  # the whole archive went by
            record.available = sorted(listing.subjects)
            if record.verified:
                record.save()
            if len(record.verified) < n_subjects:
                raise _too_many(n_subjects, len(listing.complete))
        return added, (read, length)
