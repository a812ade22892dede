"""Shared fixtures: synthetic heads written once per session, a local HTTP server."""

from __future__ import annotations

import http.server
import threading

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


# --------------------------------------------------------------------------- a local server
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
        mode, body = route
        if mode == "fail_once" and server.requests.count(self.path) == 1:
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "cut":  # promise the whole file, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class LocalServer:
    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.routes = {}
        self.httpd.requests = []
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def serve(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.httpd.routes[path] = (mode, body)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    srv = LocalServer()
    yield srv
    srv.close()
