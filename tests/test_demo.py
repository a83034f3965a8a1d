"""A smaller version of the offline demo, end to end through Snakemake: the model must learn the
planted findings, the report and the app's inputs must be there."""

import json

import pytest
import yaml

from conftest import REPO
from test_workflow import planned_jobs, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    base = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    base["archive_catalog"] = {i: {"images": 70} for i in range(1, 13)}
    base["shards"] = {"image_size": 64, "images_per_shard": 200}
    base["train"].update({"epochs": 14, "deterministic": True})
    base["evaluate"] = {"n_boot": 50, "gallery_k": 1}
    (wd / "test.yaml").write_text(yaml.safe_dump(base))
    run(wd)
    return wd


def test_demo_learns_the_planted_findings(demo_run):
    metrics = json.loads((demo_run / "results/evaluate/metrics.json").read_text())
    assert metrics["mean_auroc"] > 0.9, metrics["auroc"]
    assert metrics["mean_auroc_ci"][0] > 0.85
    assert metrics["expert_labels"]["Pneumothorax"]["images"] == metrics["images"]


def test_demo_bad_images_are_listed_and_skipped(demo_run):
    bad = sum(len(open(demo_run / f"results/shards/{s}/bad_images.tsv").read().splitlines()) - 1
              for s in ("train", "val", "test"))
    assert bad == 1  # the truncated PNG; the RGBA one decodes


def test_demo_report_and_app_are_ready(demo_run):
    html = (demo_run / "results/evaluate/report.html").read_text()
    assert "not medical advice" in html and 'id="localisation"' in html
    assert (demo_run / "results/evaluate/thresholds.json").exists()
    assert planned_jobs(run(demo_run, "-n", "app")) == {"app": 1}


def test_changing_a_train_parameter_reruns_train_and_evaluate_only(demo_run):
    (demo_run / "change.yaml").write_text(yaml.safe_dump({"train": {"learning_rate": 0.001}}))
    jobs = planned_jobs(run(demo_run, "-n", "--configfile", str(demo_run / "test.yaml"), str(demo_run / "change.yaml")))
    assert jobs == {"train": 1, "evaluate": 1, "all": 1}


@pytest.mark.parametrize("load", [
    "import cxr14, keras; m = keras.saving.load_model(PATH)",
    "import keras, cxr14; m = keras.saving.load_model(PATH)",
    "import cxr14; m = cxr14.load_model(PATH)",
])
def test_the_saved_model_loads_the_way_keras_users_load_it(demo_run, load):
    import subprocess
    import sys

    code = load.replace("PATH", repr(str(demo_run / "results/train/model.keras")))
    code += "; import numpy as np; print(m.predict(np.zeros((1, 64, 64, 1)), verbose=0).shape)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0 and "(1, 14)" in proc.stdout, proc.stderr[-2000:]


def test_lint_and_format():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/demo.yaml"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"],
                         capture_output=True, text=True, cwd=REPO)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
