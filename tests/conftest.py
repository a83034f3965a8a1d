"""Shared fixtures: a loopback HTTP mirror with fault injection, the real NIH metadata when present."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NIH_METADATA = SHARED / "nih-metadata"
NIH_SAMPLE = SHARED / "nih-sample"

needs_shared = pytest.mark.skipif(not NIH_METADATA.is_dir(), reason="../shared/nih-metadata is not present (a user's clone)")


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; `faults` (shared dict) injects failures per path:
    {"status": {path: [500, 500]}, "cut": {path: n_bytes}} — each entry is used once."""

    faults: dict = {}
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.faults.setdefault("log", []).append((self.path, self.headers.get("Range")))
        statuses = self.faults.get("status", {}).get(self.path)
        if statuses:
            code = statuses.pop(0)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.faults.get("cut", {}).pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def http_mirror(tmp_path):
    """(base URL on 127.0.0.1, served folder, faults dict) for one test."""
    root = tmp_path / "served"
    root.mkdir()
    faults: dict = {"status": {}, "cut": {}, "log": []}
    handler = type("Handler", (FaultyHandler,), {"faults": faults})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, faults
    finally:
        server.shutdown()
        server.server_close()
