"""Shared fixtures: a loopback HTTP mirror with fault injection, the real NIH metadata when present."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NIH_METADATA = SHARED / "nih-metadata"
NIH_SAMPLE = SHARED / "nih-sample"

def pytest_configure(config):
    """Where Slurm's tools are installed but no cluster is configured (CI installs them for the Slurm
    test), Snakemake's slurm plugin runs `scontrol show config` on import and waits 9 s for it to give
    up, in every snakemake command of every test. A config naming a closed local port (with a short
    message timeout) fails at once; the Slurm test sets its own."""
    if "SLURM_CONF" not in os.environ and shutil.which("scontrol"):
        folder = Path(tempfile.mkdtemp(prefix="cxr14-no-slurm-"))
        (folder / "slurm.conf").write_text(
            "ClusterName=none\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\nMessageTimeout=1\n")
        os.environ["SLURM_CONF"] = str(folder / "slurm.conf")


needs_shared = pytest.mark.skipif(not NIH_METADATA.is_dir(), reason="../shared/nih-metadata is not present (a user's clone)")


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder with Range support; `faults` (shared dict) injects failures per path:
    {"status": {path: [500, 500]}, "cut": {path: n_bytes}, "hold": {path: (n_bytes, threading.Event)}}
    — each entry is used once. "hold" sends n_bytes, then stalls until the event is set and hangs up."""

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
        hold = self.faults.get("hold", {}).pop(self.path, None)
        if hold is not None:
            n_bytes, release = hold
            self.wfile.write(body[:n_bytes])
            self.wfile.flush()
            release.wait(300)
            self.close_connection = True
            return
        cut = self.faults.get("cut", {}).pop(self.path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(root: Path):
    """(base URL on 127.0.0.1, faults dict) of a FaultyHandler server for `root` while in the block."""
    faults: dict = {"status": {}, "cut": {}, "hold": {}, "log": []}
    handler = type("Handler", (FaultyHandler,), {"faults": faults})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", faults
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_mirror(tmp_path):
    """(base URL on 127.0.0.1, served folder, faults dict) for one test."""
    root = tmp_path / "served"
    root.mkdir()
    with serve(root) as (url, faults):
        yield url, root, faults


def easy_example(rng, size):
    """A 0/1 label vector and an image that shows it: finding k lights up cell k of a 4x4 grid."""
    import numpy as np

    labels = (rng.random(14) < 0.3).astype(int)
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    cell = size // 4
    for k in np.flatnonzero(labels):
        r, c = divmod(int(k), 4)
        img[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] += 150
    return labels, img, None


def spot_example(rng, size):
    """Atelectasis (only) is a bright square at a random place, so a model must find it to see it;
    the box is its (x, y, w, h) in NIH 1024-px coordinates."""
    import numpy as np

    labels = np.zeros(14, int)
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    side = size // 5
    box = None
    if rng.random() < 0.5:
        labels[0] = 1
        x, y = rng.integers(0, size - side, 2)
        img[y:y + side, x:x + side] += 150
        scale = 1024 / size
        box = (x * scale, y * scale, side * scale, side * scale)
    return labels, img, box


def write_easy_shards(root, splits=(("train", 160), ("val", 64)), size=32, per_shard=64, seed=0,
                      example=easy_example):
    """Shards of synthetic images for each split, through the real shard writer; {split: manifest}.
    The table (with any box) is saved as root/table.parquet."""
    import cv2
    import numpy as np
    import pandas as pd

    from cxr14 import shards
    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(seed)
    folder = root / "images" / "images_01"
    folder.mkdir(parents=True, exist_ok=True)
    rows, pid = [], 0
    for split, n in splits:
        for _ in range(n):
            pid += 1
            labels, img, box = example(rng, size)
            name = f"{pid:08d}_000.png"
            cv2.imwrite(str(folder / name), img)
            rows.append({"image_index": name, "patient_id": pid, "follow_up": 0, "age_years": 40.0 + pid % 40,
                         "sex": "MF"[pid % 2], "view": ("PA", "AP")[pid % 3 == 0], "archive": 1, "split": split,
                         "box": box, **dict(zip(FINDINGS, labels.tolist()))})
    table = pd.DataFrame(rows)
    table.to_parquet(root / "table.parquet")
    plan = shards.plan_table(table.drop(columns="box"), per_shard, seed)
    manifests = {}
    for split, _ in splits:
        part = plan[plan.split == split]
        num = int(part.num_shards.iloc[0])
        infos = [shards.write_shard(part[part.shard == s], {1: folder},
                                    root / "shards" / split / f"{shards.shard_stem(split, s, num)}.tfrecord", size, "raw", 0)
                 for s in range(num)]
        out = root / "shards" / split / "manifest.json"
        shards.write_manifest(split, infos, size, "raw", out, out.with_name("bad_images.tsv"), 0)
        manifests[split] = out
    return manifests


def train_into(out, train_manifest, val_manifest, **settings):
    """cxr14.train.train with its outputs laid out in one folder as the rule lays them out; `settings`
    override the schema's train defaults."""
    from cxr14.config import defaults
    from cxr14.train import train

    out = Path(out)
    return train(train_manifest=train_manifest, val_manifest=val_manifest, model=out / "model.keras",
                 summary=out / "training_summary.json", history=out / "history.csv",
                 class_weights=out / "class_weights.json", tensorboard=out / "tensorboard", resume_dir=out / "resume",
                 **{**defaults("train"), **settings})
