"""Crash safety, proven by doing it: `kill -9` of Snakemake's whole process group inside every stage, and
a disk that fills up during extraction and sharding. After each, the README's command recovers and the
data come out byte-identical to an uninterrupted run's (the README's "Reliability" table is the user's
side of these tests).

Kill points are not guessed with sleeps: the loopback mirror stalls mid-archive, and the fail points of
tests/failpoints/sitecustomize.py freeze a job at a chosen call until the test kills the run.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARD_TARGETS, command, planned_jobs, run, serve, tiny_config

pytestmark = pytest.mark.workflow

FAILPOINTS = REPO / "tests" / "failpoints"
ARCHIVE_1 = "/images_01.tar.gz"


def crash_config(url: str) -> dict:
    """The tiny workflow fetched over loopback HTTP in 4-KB reads, with one run of three epochs."""
    config = tiny_config()
    del config["demo"]
    config.update(mirror=url, download={"chunk_mb": 0.004, "backoff": 0.1}, runs={"a": {}})
    config["shards"]["images_per_shard"] = 8
    config["train"]["epochs"] = 3
    return config


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A loopback mirror of the phantom NIH files: (URL, faults)."""
    from cxr14.constants import BBOX_LIST, EXPERT_LABELS, TEST_LIST, TRAIN_VAL_LIST, box_name
    from cxr14.steps.demo import demo_mirror

    root = tmp_path_factory.mktemp("served")
    config = tiny_config()
    demo_mirror(
        archives=[root / box_name(i) for i in range(1, 13)],
        data_entry=root / "Data_Entry_2017_v2020.csv",
        train_val_list=root / TRAIN_VAL_LIST,
        test_list=root / TEST_LIST,
        bbox_list=root / BBOX_LIST,
        expert_labels=root / EXPERT_LABELS,
        images_per_archive=[12] * 12,
        **config["demo"],
    )
    with serve(root) as served:
        yield served


def new_workdir(path: Path, url: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "test.yaml").write_text(yaml.safe_dump(crash_config(url)))
    return path


def unlock(workdir: Path) -> None:
    """The README's first recovery step after a kill: Snakemake cannot tell a dead run's lock from a
    live one's, so it is lifted by hand (`snakemake --unlock`)."""
    run(workdir, "--unlock")


@pytest.fixture(scope="module")
def reference(mirror, tmp_path_factory):
    """An uninterrupted run of the data stages, to compare against."""
    workdir = new_workdir(tmp_path_factory.mktemp("reference"), mirror[0])
    run(workdir, *SHARD_TARGETS)
    return workdir


def kill_run_when(workdir: Path, ready, what: str, hang: str | None = None, *targets) -> None:
    """Start the README's command in its own process group, wait until `ready()`, then kill -9 the
    whole group (Snakemake and every job) and check that none of it survives."""
    marker = workdir / "hung.pid"
    marker.unlink(missing_ok=True)
    unlock(workdir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAILPOINTS), os.environ.get("PYTHONPATH")]))}
    if hang:
        env.update(CXR14_HANG=hang, CXR14_HANG_MARKER=str(marker))
    with open(workdir / "killed_run.log", "w") as out:
        proc = subprocess.Popen(
            command(workdir, *targets),
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"the run ended or stalled before {what}:\n" + (workdir / "killed_run.log").read_text()[-4000:]
            )
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, f"processes of the killed run survive: group {proc.pid}"
        time.sleep(0.1)


def hung(workdir: Path):
    return lambda: (workdir / "hung.pid").exists()


def partial_files(workdir: Path) -> list[str]:
    """Staged files or folders (`.partial`, `.part`) under results/."""
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if ".part" in p.name)


def assert_same_files(a: Path, b: Path) -> None:
    """Every file under folder (or file) `a` is in `b` with the same bytes, and no other."""
    if a.is_file():
        assert filecmp.cmp(a, b, shallow=False), f"{b} differs from {a}"
        return
    names_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    names_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert names_a == names_b
    mismatch = filecmp.cmpfiles(a, b, [str(n) for n in names_a], shallow=False)[1:]
    assert mismatch == ([], []), f"differ or unreadable under {b}: {mismatch}"


DATA = [
    "results/datasets/nih/images.parquet",
    "results/datasets/nih/shards/plan.parquet",
    "results/datasets/nih/shards/32px-raw",
    "results/extract",
]


def test_kill_9_in_every_stage_then_the_same_command_finishes_the_same(mirror, reference, tmp_path):
    url, faults = mirror
    workdir = new_workdir(tmp_path / "killed", url)
    results = workdir / "results"

    # 1. Download: the mirror stalls 16 KB into archive 1, once that much has reached the .part file.
    release = threading.Event()
    faults["hold"][ARCHIVE_1] = (16384, release)
    part = results / "download/images_01.archive.part"
    kill_run_when(workdir, lambda: part.exists() and part.stat().st_size >= 8192, "archive 1 was half fetched")
    release.set()
    assert not (results / "download/images_01.archive").exists()
    faults["log"].clear()

    # 2. Extraction, at the fifth image written to the staging folder, once archive 1's download has
    # resumed and finished (archive 2's extraction may be the one hung while it does, on a busy machine).
    fetched = results / "download/images_01.archive"
    ready = lambda: hung(workdir)() and fetched.exists()  # noqa: E731
    kill_run_when(workdir, ready, "extraction", "call:shutil:copyfileobj@cxr14.steps.extract#5")
    assert "images_01.archive.part" not in partial_files(workdir) and any(
        ranged and ranged != "bytes=0-" for path, ranged in faults["log"] if path == ARCHIVE_1
    ), f"archive 1 was not resumed with a Range request: {faults['log']}"
    assert any(p.endswith(".partial") for p in partial_files(workdir))

    # 3. Cleaning, with the table written but not yet renamed into place.
    kill_run_when(workdir, hung(workdir), "cleaning", "replace:*/results/datasets/nih/images.parquet")
    nih = results / "datasets/nih"
    assert (nih / "images.partial.parquet").exists() and not (nih / "images.parquet").exists()

    # 4. Sharding, at the third image of each shard job.
    kill_run_when(workdir, hung(workdir), "sharding", "call:cxr14.shard_io:load@cxr14.shard_io#3")
    assert not (results / "datasets/nih/shards/32px-raw/train/manifest.json").exists()

    # 5. Training, as the second epoch ends (the first is finished and backed up).
    kill_run_when(
        workdir,
        hung(workdir),
        "training",
        "call:keras.src.callbacks.csv_logger:CSVLogger.on_epoch_end@keras.src.callbacks.callback_list#2",
    )
    assert len(pd.read_csv(results / "runs/a/train/resume/history.csv")) == 1
    assert not (results / "runs/a/train/model.keras").exists()

    # 6. Evaluation, with the report written but not yet renamed into place.
    kill_run_when(workdir, hung(workdir), "evaluation", "replace:*/results/runs/a/datasets/nih/report.html")
    assert not (results / "runs/a/datasets/nih/report.html").exists()

    # The README's command, unchanged, finishes the job once the dead run's lock is lifted.
    assert "Directory cannot be locked" in run(workdir, check=False).stderr
    unlock(workdir)
    run(workdir)
    for path in DATA:
        assert_same_files(reference / path, workdir / path)
    train_log = (workdir / "logs/runs/a/train/train.log").read_text()
    assert "resuming after epoch 1, the last finished one" in train_log
    history = pd.read_csv(results / "runs/a/train/history.csv")
    assert history.epoch.tolist() == [0, 1, 2]
    assert (results / "runs/a/datasets/nih/report.html").exists() and (results / "leaderboard.html").exists()
    assert partial_files(workdir) == []
    assert "Nothing to be done" in run(workdir, "-n").stdout


@contextlib.contextmanager
def small_disk(folder: Path, kb: int):
    """`folder` on a tmpfs of `kb` KB (needs root, as in CI); yields a function that grows it."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); run as root to test a full disk")
    try:
        yield lambda kb: subprocess.run(["mount", "-o", f"remount,size={kb}k", str(folder)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def copy_of(reference: Path, tmp_path: Path, remove: str) -> Path:
    """The finished reference folder, Snakemake's records included, less `remove` (what the test redoes)."""
    workdir = tmp_path / "full"
    shutil.copytree(reference, workdir, symlinks=True)
    shutil.rmtree(workdir / remove)
    return workdir


@pytest.mark.parametrize(
    "stage, folder, kb, targets",
    [
        ("extract", "results/extract", 64, [f"results/extract/images_0{i}.manifest.tsv" for i in (1, 2)]),
        ("shard", "results/datasets/nih/shards/32px-raw", 24, SHARD_TARGETS),
    ],
)
def test_a_full_disk_is_named_and_the_rerun_after_freeing_space_matches(
    reference, tmp_path, stage, folder, kb, targets
):
    workdir = copy_of(reference, tmp_path, folder)
    with small_disk(workdir / folder, kb) as grow:
        proc = run(workdir, *targets, check=False)
        said = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert f"disk full: no space left on device writing {folder}" in said, said[-4000:]
        assert partial_files(workdir) == []
        assert stage in planned_jobs(run(workdir, "-n", *targets))  # nothing half-written passes for done
        grow(16384)
        run(workdir, *targets)
        assert_same_files(reference / folder, workdir / folder)
