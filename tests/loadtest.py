"""A bounded load test of a running `cxr14 app` on this machine: concurrent clients upload files the
way the page does (Gradio's upload route, queue and event stream, through `gradio_client`), real-sized
radiographs mixed with decompression bombs and junk. Each client sends its list and stops; nothing is
sent after the deadline; only loopback addresses are accepted. The benchmark (`bench/bench_app.py`)
reports the timings and the server's peak memory from these records; the tests assert the behaviour.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

GOOD = ("png_1024", "png_3000", "dicom_16bit")
BAD = ("png_bomb", "jpeg_bomb", "junk", "empty", "text_as_dicom", "too_large")


@dataclass(frozen=True)
class Outcome:
    """One upload: its kind and file, how long until the page's answer, and that answer."""

    kind: str
    file: str
    seconds: float
    answered: bool  # findings came back (else `message` says why not)
    message: str


def check_loopback(url: str) -> None:
    """Refuse any address but this machine's: a load test is never aimed elsewhere."""
    host = urlparse(url).hostname or ""
    address = ipaddress.ip_address(socket.gethostbyname(host))
    if not address.is_loopback:
        raise ValueError(f"{url}: the load test only drives an app on this machine (127.0.0.0/8, ::1)")


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG whose header declares width x height 8-bit gray pixels, with a little compressed
    data: the decompression bomb a size limit on bytes does not catch."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress((b"\0" + b"\x80" * width) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG whose start-of-frame is rewritten to declare width x height."""
    import cv2

    data = bytearray(cv2.imencode(".jpg", np.full((16, 16), 128, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def upload_files(folder: Path, max_mb: float, radiograph: Path | None = None) -> dict[str, Path]:
    """One file of each kind in GOOD and BAD under `folder`: a 1024 px radiograph as PNG (`radiograph`,
    e.g. a real NIH image, or a phantom), the same at 3,000 px, as a 16-bit DICOM at 2,048 px, bombs
    (PNG 30,000 px square, JPEG 60,000 x 60,000), junk, an empty file, text named .dcm and a file one
    MB past `max_mb`."""
    import cv2

    from cxr14.images import write_dicom
    from cxr14.phantom import render

    folder.mkdir(parents=True, exist_ok=True)
    if radiograph is not None:
        gray = cv2.imread(str(radiograph), cv2.IMREAD_GRAYSCALE)
    else:
        gray = render({"Effusion"}, np.random.default_rng(0), 1024)[0]
    gray = cv2.resize(gray, (1024, 1024), interpolation=cv2.INTER_AREA)
    files = {kind: folder / name for kind, name in (
        ("png_1024", "chest_1024.png"), ("png_3000", "chest_3000.png"), ("dicom_16bit", "chest.dcm"),
        ("png_bomb", "bomb.png"), ("jpeg_bomb", "bomb.jpg"), ("junk", "junk.png"), ("empty", "empty.png"),
        ("text_as_dicom", "notes.dcm"), ("too_large", "huge.png"),
    )}  # fmt: skip
    cv2.imwrite(str(files["png_1024"]), gray)
    cv2.imwrite(str(files["png_3000"]), cv2.resize(gray, (3000, 3000), interpolation=cv2.INTER_CUBIC))
    wide = cv2.resize(gray, (2048, 2048), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 16
    write_dicom(files["dicom_16bit"], wide, bits_stored=12)
    files["png_bomb"].write_bytes(png_bomb(30000, 30000))
    files["jpeg_bomb"].write_bytes(jpeg_bomb(60000, 60000))
    files["junk"].write_bytes(np.random.default_rng(1).bytes(200_000))
    files["empty"].write_bytes(b"")
    files["text_as_dicom"].write_text("Patient: nobody\n" * 100)
    files["too_large"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(int((max_mb + 1) * 2**20)))
    return files


ANSWERED = "Answered by run"  # how the page's status line starts when findings came back


def raw_upload(url: str, path: Path) -> tuple[int, str]:
    """POST a file to the app's upload route as a client that skips the page's own size check would:
    (HTTP status, body)."""
    import requests

    with open(path, "rb") as fh:
        reply = requests.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": (path.name, fh)}, timeout=120)
    return reply.status_code, reply.text


def drive(url: str, plan: list[list[tuple[str, Path]]], run: str, deadline_s: float) -> list[Outcome]:
    """Every client's uploads ((kind, file) lists, one client each, all at once, each client's one after
    another) through the app's `analyse` endpoint (a `too_large` file straight to the upload route);
    an outcome per upload, a "not sent" one for each left when `deadline_s` ran out."""
    from gradio_client import Client, handle_file

    check_loopback(url)
    end = time.monotonic() + deadline_s
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def send(api, kind, path) -> tuple[bool, str]:
        if kind == "too_large":
            code, body = raw_upload(url, path)
            return code == 200, f"HTTP {code}: {body[:300]}"
        status, *_ = api.predict(handle_file(str(path)), run, None, api_name="/analyse")  # the run's default site
        return status.startswith(ANSWERED), status

    def client(uploads):
        api = Client(url, verbose=False)
        for kind, path in uploads:
            start = time.perf_counter()
            if time.monotonic() > end:
                answered, message = False, "not sent: the deadline passed"
            else:
                try:
                    answered, message = send(api, kind, path)
                except Exception as exc:  # what the queue refused (full), or a dropped connection
                    answered, message = False, f"{type(exc).__name__}: {exc}"
            with lock:
                outcomes.append(Outcome(kind, path.name, time.perf_counter() - start, answered, message))

    threads = [threading.Thread(target=client, args=(uploads,)) for uploads in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(end - time.monotonic(), 0) + 60)
    return outcomes


def mixed_plan(files: dict[str, Path], clients: int, rounds: int, hostile_clients: int) -> list[list[tuple]]:
    """`clients` clients that each upload the GOOD files `rounds` times, and `hostile_clients` that
    each upload the BAD files as many times."""
    good = [(kind, files[kind]) for kind in GOOD] * rounds
    bad = [(kind, files[kind]) for kind in BAD] * rounds
    return [list(good) for _ in range(clients)] + [list(bad) for _ in range(hostile_clients)]


def summary(outcomes: list[Outcome], wall_s: float) -> dict:
    """Answered and refused per kind; p50/p95 seconds of the good uploads and of the refusals; good
    uploads answered per second of the whole run."""
    good = [o.seconds for o in outcomes if o.kind in GOOD and o.answered]
    refused = [o.seconds for o in outcomes if o.kind in BAD and not o.answered]

    def pct(values, q):
        return float(np.percentile(values, q)) if values else float("nan")

    return {
        "uploads": len(outcomes),
        "answered": {k: sum(o.answered for o in outcomes if o.kind == k) for k in GOOD + BAD},
        "refused": {k: sum(not o.answered for o in outcomes if o.kind == k) for k in GOOD + BAD},
        "good_p50_s": pct(good, 50),
        "good_p95_s": pct(good, 95),
        "refusal_p50_s": pct(refused, 50),
        "refusal_p95_s": pct(refused, 95),
        "good_per_s": len(good) / wall_s if wall_s else float("nan"),
    }


def peak_memory_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether the app's page loads."""
    try:
        with urllib.request.urlopen(url, timeout=10) as page:
            return page.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_app(command: list[str], port: int, cwd=None, env=None, start_s: float = 180):
    """Start `command` (a `cxr14 app ... --port port`), wait until its page loads, yield the process;
    stop it afterwards (its output is in `process.log` once stopped)."""
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + start_s
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start: {process.communicate(timeout=30)[0][-3000:]}")
            time.sleep(0.5)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.log = process.communicate(timeout=60)[0]
