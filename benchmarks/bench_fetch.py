"""How much of the NFBS archive ``fetch_nfbs(n_subjects=N)`` downloads, and how fast.

An NFBS stand-in (:func:`skullstrip_lib.synth.write_nfbs_archive`: synthetic
heads on the NFBS grid, 256x256x192 at 1 mm by default, about 14 MB a subject
like the real archive's 1.75 GB / 125) is served by a local HTTP server on
127.0.0.1 that counts the bytes it hands to its socket. For each N, a fresh
data folder gets ``fetch_nfbs(n_subjects=N)`` (the streaming path: gzip CRC-32
and NIfTI checks of every file, the transfer closed once N subjects are
complete) and then, for comparison, the whole archive (``n_subjects=None``:
pooch, MD5, extraction). "needed" is the length of the archive's first bytes
that hold the first N subjects; the server's count also includes what the
kernel's socket buffers took but the client never read, and the 10 kB blocks
tarfile reads ahead.

Run:  python benchmarks/bench_fetch.py [--subjects 6] [--n 1 2 3] [--shape 256 256 192]
      [--voxel-size 1 1 1] [--markdown]
"""

from __future__ import annotations

import argparse
import http.server
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from table import print_table  # benchmarks/table.py: run as a script, its folder is on the path


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.server.body
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        try:
            for start in range(0, len(body), 64 * 1024):
                self.wfile.write(body[start : start + 64 * 1024])
                sent += min(64 * 1024, len(body) - start)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.sent.append(sent)


def needed_bytes(body: bytes, n: int) -> int:
    """Compressed bytes up to the end of the n-th subject's last member."""
    import io
    import tarfile
    import zlib

    ends: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3:
                ends[parts[1]] = member.offset_data + member.size
    end = sorted(ends.values())[n - 1]
    inflate, out = zlib.decompressobj(wbits=31), 0
    for start in range(0, len(body), 4096):
        out += len(inflate.decompress(body[start : start + 4096]))
        if out >= end:
            return min(start + 4096, len(body))
    return len(body)


def serve(body: bytes) -> http.server.ThreadingHTTPServer:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.body, httpd.sent = body, []
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    return httpd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6, help="subjects in the archive")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 3], help="n_subjects to fetch")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 192))
    parser.add_argument("--voxel-size", type=float, nargs=3, default=(1.0, 1.0, 1.0))
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)

    from skullstrip_lib.datasets import fetch_nfbs
    from skullstrip_lib.synth import write_nfbs_archive

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        archive = write_nfbs_archive(Path(tmp) / "NFBS_Dataset.tar.gz", args.subjects,
                                     progress=False, shape=tuple(args.shape),
                                     voxel_size=tuple(args.voxel_size))
        made = time.perf_counter() - t0
        body = archive.read_bytes()
        httpd = serve(body)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/NFBS_Dataset.tar.gz"
        rows = []
        for n in [*args.n, None]:
            data_dir = Path(tempfile.mkdtemp(dir=tmp))
            t0 = time.perf_counter()
            fetch_nfbs(data_dir, n_subjects=n, url=url, known_hash=None, progressbar=False,
                       keep_archive=False)
            seconds = time.perf_counter() - t0
            time.sleep(0.2)  # let the server notice the closed connection
            sent = httpd.sent[-1]
            need = len(body) if n is None else needed_bytes(body, n)
            rows.append((n, sent, sent / len(body), need / len(body), seconds))
        httpd.shutdown()

    print(f"# {args.subjects} subjects of {'x'.join(map(str, args.shape))} voxels "
          f"({'x'.join(f'{v:g}' for v in args.voxel_size)} mm): archive {len(body):,} bytes, "
          f"written in {made:.0f} s; {platform.machine()}, Python {platform.python_version()}")
    header = ("n_subjects", "bytes sent", "share sent", "share needed", "seconds")
    lines = [(str(n or f"None ({args.subjects})"), f"{sent:,}", f"{share:.1%}", f"{need:.1%}",
              f"{s:.2f}") for n, sent, share, need, s in rows]
    print_table(header, lines, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
