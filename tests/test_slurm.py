"""The workflow through the Slurm profile, on a real one-node Slurm cluster started for the test."""

import json
import os
import re
import subprocess
import sys
import threading

import pandas as pd
import pytest
import yaml

import slurm_cluster
from conftest import REPO, tiny_config

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_cluster.missing()
    if reason:
        pytest.skip(f"no Slurm here: {reason}")
    c = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


def test_sbatch_runs_a_job(cluster, tmp_path):
    out = tmp_path / "hello.txt"
    proc = subprocess.run(
        ["sbatch", "--wait", "-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID"],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr + cluster.logs()
    assert out.read_text().startswith("hello from ")


class QueueWatcher(threading.Thread):
    """Polls squeue while the workflow runs: the most `train` jobs that were in the queue at once."""

    def __init__(self, env):
        super().__init__(daemon=True)
        self.env, self.most, self.done = env, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            out = subprocess.run(["squeue", "-h", "-o", "%k"], env=self.env, capture_output=True, text=True).stdout
            self.most = max(self.most, sum(line.startswith("rule_train") for line in out.splitlines()))


def test_two_runs_train_side_by_side_through_the_slurm_profile(cluster, tmp_path):
    """The data stages and two tiny runs through the Slurm profile: every job is an sbatch job, and
    the two training jobs (one GPU each: the test cluster has two stand-in GPUs) are queued together."""
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tiny_config(images=12, archives=(1, 2))))
    # The train rule asks for 32 GB and the profile for 8 cores per training job; this node has 2 cores.
    small = ["train:cpus_per_task=1", "train:mem_mb=2000", "train:gpu=1", "clean:mem_mb=2000"]
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "results/runs/a/train/model.keras",
        "results/runs/b/train/model.keras",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
        "--configfile",
        str(tmp_path / "test.yaml"),
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--jobs",
        "4",
        "--set-resources",
        *small,
        "--set-threads",
        "train=1",
    ]
    env = {**cluster.env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    watcher = QueueWatcher(cluster.env)
    watcher.start()
    try:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        watcher.done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:] + cluster.logs()
    table = pd.read_parquet(tmp_path / "results/datasets/nih/images.parquet")
    assert len(table) == 24
    report = json.loads((tmp_path / "results/datasets/nih/cleaning_report.json").read_text())
    assert report["leakage_patients"] == 0
    # The jobs really went through Slurm: demo mirror, 2 downloads, 4 metadata files, 2 extracts, clean,
    # the plan, the shards and their manifests, and two trainings.
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", proc.stdout + proc.stderr, re.I)
    assert len(set(submitted)) >= 14, proc.stderr[-3000:]
    assert watcher.most == 2, f"at most {watcher.most} training job(s) were in the queue at once"
    for run in ("a", "b"):
        summary = json.loads((tmp_path / f"results/runs/{run}/train/training_summary.json").read_text())
        assert summary["config"]["learning_rate"] == (0.01 if run == "b" else 0.001)
