"""Shared fixtures: synthetic heads written once per session, a local HTTP server."""

from __future__ import annotations

import os

# TensorFlow's C++ start-up lines, quietened for the whole suite in this one place (it must be
# set before TensorFlow is first imported, which conftest precedes).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import http.server
import socket
import threading
import time
from dataclasses import dataclass, field

import nibabel as nib
import pytest


@pytest.fixture(scope="session")
def full_head(tmp_path_factory):
    """One synthetic head on the full NFBS grid (256x256x192, 1 mm): paths to T1w and mask."""
    from skullstrip_lib.synth import make_head

    head = make_head(seed=7, index=0)
    d = tmp_path_factory.mktemp("full_head")
    t1w, mask = d / "t1w.nii.gz", d / "mask.nii.gz"
    nib.save(head.t1w, t1w)
    nib.save(head.brainmask, mask)
    return t1w, mask


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """Four small synthetic subjects (64x64x48 voxels of 4 mm) in the NFBS layout."""
    from skullstrip_lib.synth import write_nfbs_dataset

    root = tmp_path_factory.mktemp("small_nfbs")
    write_nfbs_dataset(root, 4, seed=3, progress=False, shape=(64, 64, 48),
                       voxel_size=(4.0, 4.0, 4.0))
    return root / "NFBS_Dataset"


STANDIN = {"shape": (64, 64, 48), "voxel_size": (4.0, 4.0, 4.0)}
"""Small heads for the NFBS stand-in archive (the same as small_dataset's)."""


@pytest.fixture(scope="session")
def nfbs_standin(tmp_path_factory):
    """An NFBS stand-in archive of 6 small subjects (seed 3): (bytes, md5 hex, subject ids).

    Its first four subjects are small_dataset's, byte for byte.
    """
    import hashlib

    from skullstrip_lib.synth import subject_id, write_nfbs_archive

    path = tmp_path_factory.mktemp("standin") / "NFBS_Dataset.tar.gz"
    write_nfbs_archive(path, 6, seed=3, progress=False, **STANDIN)
    data = path.read_bytes()
    return data, hashlib.md5(data).hexdigest(), [subject_id(i, 3) for i in range(6)]


# --------------------------------------------------------------------------- a tiny training run
TINY_TRAINING = {
    "synth": [{"n": 6, "shape": [64, 64, 48], "voxel_size": [4.0, 4.0, 4.0]}],
    "preprocess": {"shape": [24, 32, 40], "spacing": 6.0, "n4": "none",
                   "normalization": "zscore"},
    "base_filters": 4, "depth": 2, "batch_size": 2, "steps_per_epoch": 3,
    "learning_rate": 1e-2, "workers": 1,
}


@pytest.fixture(scope="session")
def tiny_settings():
    """Settings of a training run that takes seconds on a CPU, for ``TrainConfig.from_dict``.

    Six small synthetic heads (64x64x48 voxels of 4 mm) on a 6 mm model grid, a
    two-level network of 4 filters, 3 steps of 2 heads an epoch. A copy: a test
    may change it.
    """
    import copy

    return copy.deepcopy(TINY_TRAINING)


@pytest.fixture
def tiny(tiny_settings):
    """``tiny(**overrides)``: the tiny run's ``TrainConfig`` (sample profile), overridden."""
    from skullstrip_lib.train import TrainConfig

    return lambda **overrides: TrainConfig.from_dict({"profile": "sample", **tiny_settings,
                                                      **overrides})


# --------------------------------------------------------------------------- a local server
# The server writes bodies in pieces and counts each piece the socket took. So that this
# count says what the client read, not what the kernel's buffers swallowed on loopback (up
# to megabytes, more on a loaded machine), the send buffer is small and the server pauses
# after each piece: then a client that stops reading stops the count within about 100 kB.
CHUNK = 16 * 1024
SEND_BUFFER = 32 * 1024
PACE_S = 0.001


@dataclass
class Transfer:
    """One GET the server answered: its path, the bytes it sent, the body's size."""

    path: str
    total: int
    sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        route = server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        mode, body, cut_at = route
        if mode == "fail_once" and server.requests.count(self.path) == 1:
            self.send_error(500)
            return
        transfer = Transfer(self.path, len(body))
        server.transfers.append(transfer)
        try:
            self._send(mode, body, cut_at, transfer)
        except (BrokenPipeError, ConnectionResetError):  # the client closed the connection
            self.close_connection = True
        finally:
            transfer.finished.set()

    def _send(self, mode, body, cut_at, transfer):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if mode != "no_length":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # promise the whole file, send half, hang up
            cut_at = len(body) // 2
        end = len(body) if cut_at is None else cut_at
        for start in range(0, end, CHUNK):
            piece = body[start : min(start + CHUNK, end)]
            self.wfile.write(piece)
            transfer.sent += len(piece)
            time.sleep(PACE_S)
        self.wfile.flush()
        if mode == "stall":  # send cut_at bytes, then nothing until the client gives up
            self.server.closing.wait(10)
        if cut_at is not None:
            self.close_connection = True


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that serves bytes and counts what it sent.

    Modes of :meth:`serve`: ``"ok"``; ``"fail_once"`` (HTTP 500, then ok); ``"cut"``
    (promise the whole body, send half, hang up); ``"cut_at"`` (the same after
    *cut_at* bytes); ``"no_length"`` (no Content-Length; all of the body, or
    *cut_at* bytes, then hang up); ``"stall"`` (send *cut_at* bytes, then wait).
    """

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.httpd.transfers = []
        self.httpd.closing = threading.Event()
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def transfers(self, timeout: float = 10.0) -> list[Transfer]:
        """Every answered GET, in order, once each has finished sending."""
        for transfer in self.httpd.transfers:
            assert transfer.finished.wait(timeout), f"{transfer.path}: still sending"
        return list(self.httpd.transfers)

    def serve(self, path: str, body: bytes, mode: str = "ok", *, cut_at: int | None = None) -> str:
        self.httpd.routes[path] = (mode, body, cut_at)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    srv = LocalServer()
    yield srv
    srv.close()


def pytest_collection_modifyitems(items):
    # A test that takes the full-size head is slow, whether or not its author said so.
    for item in items:
        if "full_head" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    # pytest-xdist hands tests to its workers in this order: start the longest first (the
    # full-profile rehearsal of every chapter, then the sample-profile chapter runs), so that
    # one worker is not left running a 15-minute test after the others have finished.
    def rank(item):
        if item.nodeid.startswith("tests/test_chapters_full.py"):
            return 0
        return 1 if item.get_closest_marker("notebook") else 2

    items.sort(key=rank)
