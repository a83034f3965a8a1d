"""Shared fixtures: a loopback HTTP mirror with fault injection, the real NIH metadata when present."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import keras
import pytest
import yaml

from loadtest import png_bomb  # noqa: F401  (the tests' decompression bomb)

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
            "ClusterName=none\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\nMessageTimeout=1\n"
        )
        os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    simulated_gpus()


# The end-to-end modules, started first in this order (pyproject's addopts keep xdist to it): the
# Slurm test mostly waits on its cluster, so it overlaps the CPU-bound shared workflow run (built by
# the demo's module: conftest's `workflow_run`) best. xdist hands a worker its next module once at
# most two of its tests are left: one worker takes slurm, then the kill -9 campaign, then the quick
# modules; the other the demo, whose first test builds the shared run. The other modules that read
# that run go LAST: a worker that took one while the run is still being built would wait for it, idle
# (measured: the matrix handed out fourth waited 447 s).
FIRST = ("test_slurm.py", "test_demo.py", "test_crash.py")
LAST = ("test_demo_plans.py", "test_matrix.py", "test_docs_figures.py")


def pytest_collection_modifyitems(items):
    def place(item):
        name = item.path.name
        if name in FIRST:
            return FIRST.index(name)
        return len(FIRST) + 1 + LAST.index(name) if name in LAST else len(FIRST)

    items.sort(key=place)


def simulated_gpus(n: int = 2) -> None:
    """`train.simulate_gpus: 2` (tests/test_gpu_path.py, in this process) mirrors over two logical CPU
    devices, which must exist before TensorFlow starts; the CPU path still runs on the first alone."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


# The workflow as a user runs it: `snakemake` in a folder of its own with a test.yaml beside it.
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def tiny_config(images=12, archives=(1, 2)) -> dict:
    """A few phantom images per archive, 32-px shards, and two tiny runs of a small CNN."""
    return {
        "demo": {"seed": 1, "size": 64},
        "mirror": "results/demo/mirror",
        "archives": list(archives),
        "archive_catalog": {i: {"images": images} for i in range(1, 13)},
        "clean": {"val_fraction": 0.2},
        "shards": {"image_size": 32, "images_per_shard": 4},
        "train": {"backbone": "small_cnn", "weights": "none", "epochs": 1, "batch_size": 4, "augment": None},
        "evaluate": {"n_boot": 10, "gallery_k": 0},
        "runs": {"a": {}, "b": {"train": {"learning_rate": 0.01}}},
    }


def command(workdir: Path, *args) -> list[str]:
    """The README's `snakemake --cores all` for a test folder and its test.yaml (2 cores here)."""
    return [*SNAKEMAKE, "-d", str(workdir), "--configfile", str(workdir / "test.yaml"), "--cores", "2", *args]


def run(workdir: Path, *args, check=True) -> subprocess.CompletedProcess:
    cmd = command(workdir, *args)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(proc) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"}


SHARD_TARGETS = [f"results/datasets/nih/shards/32px-raw/{s}/manifest.json" for s in ("train", "val", "test")]


def rerun_plan(workdir, change: dict, targets=SHARD_TARGETS) -> dict[str, int]:
    """The jobs a dry run of `targets` plans after overriding the config with `change`."""
    (workdir / "change.yaml").write_text(yaml.safe_dump(change))
    return planned_jobs(
        run(workdir, "-n", *targets, "--configfile", str(workdir / "test.yaml"), str(workdir / "change.yaml"))
    )


# The one end-to-end run of the workflow that tests/test_demo.py and tests/test_matrix.py both read: a
# smaller offline demo with the matrix's features in it. Its runs (in leaderboard order):
#   cnn-seed42, cnn-seed43  `cnn` repeated (the first is the reference, the second the fine-tune's start)
#   cnn_80px                another image size, so shards of its own
#   mean4                   an ensemble of the repeats (`cnn` stands for both copies) and two other runs
#   cnn_site                cnn-seed43 fine-tuned on the site's train split, on the GPU path
#   mixed                   an ensemble that includes the fine-tune
#   cnn-loss_focal          a sweep of one value (focal loss), named and compared as a sweep's runs are
# and its collections: NIH, the phantom site split at ingest (site), the same site unsplit (site_all:
# every image validates) and its frontal images as a folder without labels (site_images).
REFERENCE, REPEAT = "cnn-seed42", "cnn-seed43"
FOCAL = "cnn-loss_focal"
TRAINED = [REFERENCE, REPEAT, "cnn_80px", "cnn_site", FOCAL]
ENSEMBLES = {"mean4": [REFERENCE, REPEAT, FOCAL, "cnn_80px"], "mixed": [REFERENCE, "cnn_site"]}
RUNS = [REFERENCE, REPEAT, "cnn_80px", "mean4", "cnn_site", "mixed", FOCAL]  # the leaderboard's order


# pytest-timeout counts a test's fixtures in its time: the first test of each module that reads the
# shared run builds it, or waits for another worker to build it (about 10 minutes on 2 cores, more on a
# busy machine), so those modules get longer than pyproject's 900 s.
SHARED_RUN_TIMEOUT = pytest.mark.timeout(2400)


def workflow_config() -> dict:
    """config/demo.yaml at test size, deterministic, with the matrix's repeats, sweep and ensembles."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["archive_catalog"] = {i: {"images": 70} for i in range(1, 13)}
    config["shards"] = {"image_size": 64, "images_per_shard": 1000}  # one shard per split: fewer TF-importing jobs
    config["train"].update({"epochs": 6, "deterministic": True})  # val mean AUROC ~0.98 by epoch 6
    config["evaluate"].update({"n_boot": 50, "gallery_k": 1})
    config["demo"]["site_patients"] = 150
    fine_tune = config["runs"]["cnn_site"]
    fine_tune["train"].update({"init": REPEAT})
    # The fine-tune takes the GPU path (mixed precision over two simulated GPUs, the global batch the
    # CPU runs' 32) through every step of `rule all`.
    fine_tune["train"].update({"simulate_gpus": 2, "batch_size": 16, "epochs": 5})  # 1 head-only, 4 all
    config["runs"] = {
        "cnn": {"repeats": 2},  # seeds 42 (train.seed) and 43
        "cnn_80px": config["runs"]["cnn_80px"],
        "mean4": {"ensemble": ["cnn", FOCAL, "cnn_80px"]},
        "cnn_site": fine_tune,
        "mixed": {"ensemble": [REFERENCE, "cnn_site"]},
    }
    config["sweeps"] = {"cnn": {"loss": ["focal"]}}  # one value: one run, cnn with focal loss
    site = config["datasets"]["site"]
    config["datasets"]["site_all"] = {key: site[key] for key in ("format", "root", "files")}  # no split
    return config


def shared_once(tmp_path_factory, name: str, build):
    """`build(folder)` run once for the whole session, however many xdist workers ask (pytest-xdist's
    recipe: a file lock in the folder the workers share, and a marker file); the folder. A build that
    failed fails every later ask at once with its error, instead of building again."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # (a session's own folder)
    folder, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with FileLock(str(root / f"{name}.lock")):
        if failed.exists():
            pytest.fail(f"{name} failed on another worker:\n{failed.read_text()}", pytrace=False)
        if not done.exists():
            folder.mkdir()
            try:
                build(folder)
            except BaseException as error:
                failed.write_text(str(error))
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory):
    """The finished end-to-end run of workflow_config() (built once a session; treat it as read-only:
    plan changes with `snakemake -n` against it, or run a copy)."""

    def build(wd):
        (wd / "test.yaml").write_text(yaml.safe_dump(workflow_config(), sort_keys=False))
        # The run's scoring, Grad-CAM and export jobs are a few seconds each, most of it importing
        # TensorFlow: one thread each lets two overlap instead of each taking both cores in turn.
        run(wd, "--set-threads", "score=1", "explain=1", "export=1")

    kept = os.environ.get("CXR14_TEST_WORKFLOW_RUN")  # a finished run of this config, to iterate on its tests
    if kept:
        kept = Path(kept)
        if yaml.safe_load((kept / "test.yaml").read_text()) != workflow_config():
            pytest.fail(f"CXR14_TEST_WORKFLOW_RUN={kept} was run with another config than workflow_config()")
        assert planned_jobs(run(kept, "-n")) == {}, f"{kept} is not finished with this code"
        return kept
    return shared_once(tmp_path_factory, "workflow-run", build)


needs_shared = pytest.mark.skipif(
    not NIH_METADATA.is_dir(), reason="../shared/nih-metadata is not present (a user's clone)"
)


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
        img[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] += 150
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
        img[y : y + side, x : x + side] += 150
        scale = 1024 / size
        box = (x * scale, y * scale, side * scale, side * scale)
    return labels, img, box


def write_easy_shards(
    root, splits=(("train", 160), ("val", 64)), size=32, per_shard=64, seed=0, example=easy_example, unlabelled=()
):
    """Shards of synthetic images for each split, through the real shard writer; {split: manifest}.
    The table (with any box) is saved as root/table.parquet. `unlabelled` findings are -1 (a collection
    that does not label them)."""
    import cv2
    import numpy as np
    import pandas as pd

    from cxr14 import paths, shard_io
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
            rows.append(
                {
                    "image_index": name,
                    "patient_id": pid,
                    "follow_up": 0,
                    "age_years": 40.0 + pid % 40,
                    "sex": "MF"[pid % 2],
                    "view": ("PA", "AP")[pid % 3 == 0],
                    "archive": 1,
                    "split": split,
                    "box": box,
                    **dict(zip(FINDINGS, labels.tolist())),
                }
            )
    table = pd.DataFrame(rows)
    table[list(unlabelled)] = -1
    table.to_parquet(root / "table.parquet")
    plan = shard_io.plan_table(table.drop(columns="box"), per_shard, seed)
    manifests = {}
    for split, _ in splits:
        part = plan[plan.split == split]
        num = int(part.num_shards.iloc[0])
        infos = [
            shard_io.write_shard(
                part[part.shard == s].assign(file=lambda rows: [str(folder / n) for n in rows.image_index]),
                root / "shards" / split / f"{paths.shard_stem(split, s, num)}.tfrecord",
                size,
                "raw",
                0,
            )
            for s in range(num)
        ]
        out = root / "shards" / split / "manifest.json"
        shard_io.write_manifest(split, infos, size, "raw", out, out.with_name("bad_images.tsv"), 0)
        manifests[split] = out
    return manifests


def plan_one_group(ingested, plan, images_per_shard) -> int:
    """Plan an ingested collection (`ingested`: the folder of ingest's table and report) as one group of
    every image, with the arguments the `plan_shards` rule gives; its number of shards."""
    from cxr14.shard_io import UNSPLIT
    from cxr14.steps import shards

    counts = shards.plan_shards(
        table=ingested / "images.parquet", report=ingested / "ingest_report.json", plan=plan, groups=[UNSPLIT],
        images_per_shard=images_per_shard, seed=0,
    )  # fmt: skip
    return counts[UNSPLIT]


def shard_one_group(plan, root, stem, index=0, size=64, max_bad_images=0) -> dict:
    """Shard `index` of an ingested collection's one group (`images`) to `stem`.tfrecord and .json, with
    the arguments the `shard` rule gives; its sidecar."""
    from cxr14.images import DEFAULT_MAX_MEGAPIXELS
    from cxr14.shard_io import UNSPLIT
    from cxr14.steps import shards

    return shards.shard(
        plan=plan, images=None, tfrecord=f"{stem}.tfrecord", info=f"{stem}.json", group=UNSPLIT, index=index,
        root=str(root), image_size=size, encoding="raw", max_bad_images=max_bad_images,
        max_megapixels=DEFAULT_MAX_MEGAPIXELS,
    )  # fmt: skip


def settings_of(kind, **overrides):
    """Typed settings (`settings.TrainSettings`, `settings.EvaluateSettings`): the schema's defaults of that
    section with `overrides`, checked as a run's are."""
    from cxr14.settings import defaults, schema
    from cxr14.workflow.config import check

    section = kind.section
    return kind.of(check({**defaults(section), **overrides}, schema()["properties"][section], where=section))


# The tests' training settings: a small CNN, a few epochs, deterministic.
TRAIN_PARAMS = {
    "backbone": "small_cnn",
    "weights": "none",
    "loss": "weighted_bce",
    "focal_gamma": 2.0,
    "epochs": 4,
    "batch_size": 16,
    "learning_rate": 0.003,
    "lr_factor": 0.5,
    "lr_patience": 2,
    "early_stopping_patience": 10,
    "dropout": 0.0,
    "seed": 1,
    "cache": True,
    "augment": None,
    "deterministic": True,
}


def train_into(out, train_manifest, val_manifest, extra_callbacks=(), init=None, **settings):
    """cxr14.steps.train.train with its outputs laid out in one folder as the rule lays them out; `settings`
    override the schema's train defaults. A manifest may be a list of them (several sources)."""
    from cxr14.settings import TrainSettings
    from cxr14.steps.train import train

    out = Path(out)
    return train(
        train_manifests=train_manifest if isinstance(train_manifest, list) else [train_manifest],
        val_manifests=val_manifest if isinstance(val_manifest, list) else [val_manifest],
        init=init,
        model=out / "model.keras",
        summary=out / "training_summary.json",
        history=out / "history.csv",
        class_weights=out / "class_weights.json",
        tensorboard=out / "tensorboard",
        resume_dir=out / "resume",
        run=out.name,
        settings=settings_of(TrainSettings, **settings),
        extra_callbacks=extra_callbacks,
    )


class Killed(Exception):
    """What KillAfterFirstEpoch raises: a run stopped as a kill would stop it."""


class KillAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:  # epoch 1 is finished: its history row, best model and backup are written
            raise Killed()


class RecordEpochs(keras.callbacks.Callback):
    """The epochs a fit ran (0-based)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


class RecordWeights(keras.callbacks.Callback):
    """The backbone's and the head's weights at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.backbone, self.head = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.backbone.append([w.copy() for w in self.model.get_layer("backbone").get_weights()])
        self.head.append([w.copy() for w in self.model.get_layer("findings").get_weights()])


def synthetic_predictions(path, seed, noise, images=80):
    """A predictions table (val and test, two images per patient) whose scores see the labels
    through Gaussian noise of sd `noise`, written to `path`; the labels depend on no seed."""
    import numpy as np
    import pandas as pd

    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "image_index": [f"{k:08d}_000.png" for k in range(images)],
            "patient_id": np.arange(images) // 2,
            "age_years": 50.0,
            "sex": "F",
            "view": "PA",
            "split": ["val", "test"] * (images // 2),
        }
    )
    truth = np.random.default_rng(99).random((images, len(FINDINGS))) < 0.3
    for j, f in enumerate(FINDINGS):
        frame[f"y_{f}"] = truth[:, j].astype(np.int8)
        frame[f"p_{f}"] = np.clip(truth[:, j] * 0.5 + rng.normal(0.25, noise, images), 0, 1).astype(np.float32)
    frame.to_parquet(path, index=False)
    return frame


EXTERNAL_LABELLED = ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumothorax"]


def fixed_points(value: float = 0.5, site: str = "nih") -> dict:
    """A thresholds.json as the calibrate step writes it, every operating point at `value`."""
    from cxr14.constants import FINDINGS
    from cxr14.metrics import OPERATING_RULES

    return {rule: dict.fromkeys(FINDINGS, value) for rule in OPERATING_RULES} | {
        "targets": {"sensitivity": 0.9, "specificity": 0.9}, "chosen_on": f"{site} val", "site": site,
    }  # fmt: skip


def judged_on_nih(predictions, members=None, n_boot=20, calibration=None) -> dict:
    """A run's judgement on NIH (as the evaluate step writes it) of a synthetic predictions table's test
    rows, with `calibration` (none by default), at `fixed_points()`."""
    from cxr14.assess import judge
    from cxr14.constants import FINDINGS

    test = predictions[predictions.split == "test"].reset_index(drop=True)
    m, _ = judge(test, run="run", dataset="nih", collection={}, split="official test split", findings=list(FINDINGS),
                 calibration=calibration, thresholds=fixed_points(), n_boot=n_boot, seed=0,
                 members=members)  # fmt: skip
    return m


def synthetic_external_predictions(path, seed, noise, images=120):
    """An external collection's predictions table: the EXTERNAL_LABELLED findings labelled (a tenth of
    their labels -1, as U-Ignore leaves an uncertain one), the rest -1 throughout; scores that see the
    labels through Gaussian noise of sd `noise`; the labels depend on no seed."""
    import numpy as np
    import pandas as pd

    from cxr14.constants import FINDINGS
    from cxr14.prediction_table import EXTERNAL

    rng, truth_rng = np.random.default_rng(seed), np.random.default_rng(77)
    frame = pd.DataFrame(
        {
            "image_index": [f"site/{k:05d}.jpg" for k in range(images)],
            "patient_id": np.arange(images) // 2,
            "age_years": truth_rng.choice([30.0, 70.0, np.nan], images),
            "sex": truth_rng.choice(["M", "F"], images),
            "view": truth_rng.choice(["PA", "AP"], images),
            "split": EXTERNAL,
        }
    )
    for f in FINDINGS:
        truth = truth_rng.random(images) < 0.3
        y = np.where(truth, 1, 0) if f in EXTERNAL_LABELLED else np.full(images, -1)
        if f in EXTERNAL_LABELLED:
            y[truth_rng.random(images) < 0.1] = -1
        frame[f"y_{f}"] = y.astype(np.int8)
        frame[f"p_{f}"] = np.clip(truth * 0.3 + rng.normal(0.3, noise, images), 0, 1).astype(np.float32)
    frame.to_parquet(path, index=False)
    return frame


# What the batch predictor and the app serve.
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An untrained small model (the app and predictor do not care how good it is) and shards."""
    from cxr14 import models

    root = tmp_path_factory.mktemp("serve")
    manifests = write_easy_shards(root, (("test", 12),), size=48, per_shard=12)
    model = models.build("small_cnn", 48, "none", dropout=0.2)
    model.save(root / "model.keras")
    (root / "thresholds.json").write_text(json.dumps(fixed_points()))
    return root, manifests


@pytest.fixture(scope="module")
def workdir_with_runs(served, tmp_path_factory):
    """A workflow directory with two trained runs of different input sizes, as the workflow lays them
    out: a48 calibrated for two sites (nih and site, other temperatures), b32 not calibrated."""
    from cxr14 import models
    from cxr14.constants import FINDINGS
    from cxr14.paths import CALIBRATION, MODEL, OPERATING_POINTS

    wd = tmp_path_factory.mktemp("runs")
    for run, size in (("a48", 48), ("b32", 32)):
        model = wd / MODEL.format(run=run)
        model.parent.mkdir(parents=True)
        models.build("small_cnn", size, "none", dropout=0.0).save(model)
    for site, (offset, temperature) in {"nih": (0.0, 1.0), "site": (-3.0, 0.5)}.items():
        fitted = {"method": "temperature", "offset": offset, "temperature": temperature}
        calibration = {
            "site": site, "method": "temperature", "tta": False, "shared": [], "val_images": 10,
            "base_rate": dict.fromkeys(FINDINGS, 0.1), "findings": dict.fromkeys(FINDINGS, fitted),
        }  # fmt: skip
        for pattern, content in ((CALIBRATION, calibration), (OPERATING_POINTS, fixed_points(0.5, site))):
            path = wd / pattern.format(run="a48", dataset=site)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
    return wd


# A trained, scored, calibrated and evaluated run, shared by the evaluation and export tests (built
# once a session, as the shared workflow run is: the two modules run on different xdist workers).
@pytest.fixture(scope="session")
def evaluated(tmp_path_factory):
    """A small CNN trained to find a bright square anywhere (Atelectasis), evaluated end to end with
    the squares as boxes: (its folder, what evaluate returned, the number of boxed test images)."""
    import pickle

    def build(root):
        (root / "evaluated.pickle").write_bytes(pickle.dumps(evaluate_spots(root)))

    root = shared_once(tmp_path_factory, "evaluated", build)
    return root, *pickle.loads((root / "evaluated.pickle").read_bytes())


def evaluate_spots(root):
    """`evaluated`'s run built in `root`; (what evaluate returned, the number of boxed test images)."""
    import pandas as pd

    from cxr14.settings import EvaluateSettings, defaults
    from cxr14.steps.calibrate import calibrate
    from cxr14.steps.evaluate import evaluate
    from cxr14.steps.explain import explain
    from cxr14.steps.score import score

    manifests = write_easy_shards(
        root, (("train", 320), ("val", 96), ("test", 96)), size=128, per_shard=128, example=spot_example
    )
    train_into(
        root / "model",
        manifests["train"],
        manifests["val"],
        backbone="small_cnn",
        weights="none",
        epochs=8,
        learning_rate=0.003,
        lr_factor=0.5,
        lr_patience=3,
        early_stopping_patience=10,
        dropout=0.0,
        seed=0,
        cache=True,
        augment=None,
        deterministic=True,
    )
    table = pd.read_parquet(root / "table.parquet")
    boxes = root / "boxes.csv"
    boxed = table[(table.split == "test") & (table.Atelectasis == 1)]
    boxes.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        + "".join(
            f"{r.image_index},Infiltrate,600,600,1,1\n{r.image_index},Atelectasis,{','.join(map(str, r.box))}\n"
            for r in boxed.itertuples()
        )
    )
    report = {
        "images": {"train": 320, "val": 96, "test": 96},
        "patients": {"train": 320, "val": 96, "test": 96},
        "data_entry": "synthetic",
        "rows_in": 512,
        "rows_out": 512,
        "leakage_patients": 0,
        "changed": {},
        "dropped": {},
    }
    (root / "cleaning_report.json").write_text(json.dumps(report))
    out = root / "eval"
    score(
        model=root / "model/model.keras",
        manifests=[manifests["val"], manifests["test"]],
        splits=["val", "test"],
        predictions=out / "predictions.parquet",
        features=out / "features.npz",
        reference=manifests["train"],
        reference_images=200,
        batch_size=64,
        tta=True,
    )
    calibrate(
        predictions=out / "predictions.parquet",
        table=root / "table.parquet",
        summary=root / "model/training_summary.json",
        calibration=out / "calibration.json",
        thresholds=out / "thresholds.json",
        site="nih",
        **defaults("calibration"),
        targets=defaults("operating_points"),
        tta=True,
    )
    m = evaluate(
        # The same inputs on every collection.
        predictions=out / "predictions.parquet",
        nih_predictions=out / "predictions.parquet",
        calibrations=[out / "calibration.json"],
        operating_points=[out / "thresholds.json"],
        table=root / "table.parquet",
        collection=root / "cleaning_report.json",
        evaluation=out / "metrics.json",
        report=out / "report.html",
        figures=out / "figures",
        run="spots",
        dataset="nih",
        members=None,
        pages={"explanation.html": "Grad-CAM and localisation against the NIH boxes"},
        model_card=root / "model_card.html",
        recalibrate=0,
        seed=0,
        calibration_method="temperature",
        min_positives=5,
        prior_sd=defaults("calibration")["prior_sd"],
        settings=settings_of(EvaluateSettings, n_boot=50, gallery_k=1, tta=True),
    )
    # What only NIH has: the trained network's Grad-CAM and its localisation against the boxes.
    explain(
        model=root / "model/model.keras",
        test_manifest=manifests["test"],
        predictions=out / "predictions.parquet",
        calibration=out / "calibration.json",
        thresholds=out / "thresholds.json",
        boxes=boxes,
        explanation=out / "explanation.json",
        page=out / "explanation.html",
        settings=settings_of(EvaluateSettings, n_boot=50, gallery_k=1, tta=True),
        run="spots",
    )
    return m, len(boxed)
