"""The data part of the demo workflow through the Slurm profile, on a real one-node Slurm cluster."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

import slurm_cluster
from conftest import REPO
from test_workflow import tiny_config

pytestmark = pytest.mark.slow


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
    proc = subprocess.run(["sbatch", "--wait", "-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID"],
                          env=cluster.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + cluster.logs()
    assert out.read_text().startswith("hello from ")


def test_data_stages_through_the_slurm_profile(cluster, tmp_path):
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tiny_config(images=8, archives=(1, 2))))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--profile", str(REPO / "profiles/slurm"), "--configfile", str(tmp_path / "test.yaml"),
           "--slurm-init-seconds-before-status-checks", "5", "--jobs", "4",
           "results/clean/images.parquet"]
    env = {**cluster.env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:] + cluster.logs()
    table = pd.read_parquet(tmp_path / "results/clean/images.parquet")
    assert len(table) == 16
    # The jobs really went through Slurm (demo mirror, 2 downloads, 3 metadata files, 2 extracts, clean).
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", proc.stdout + proc.stderr, re.I)
    assert len(set(submitted)) >= 9, proc.stderr[-3000:]
    report = json.loads((tmp_path / "results/clean/cleaning_report.json").read_text())
    assert report["leakage_patients"] == 0
