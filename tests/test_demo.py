"""A smaller version of the offline demo, end to end through Snakemake: its runs must learn the
planted findings, the reports, the leaderboard and the app's inputs must be there, and a change to
one run must rerun that run alone (with its ensembles and the leaderboard)."""

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
    base["evaluate"].update({"n_boot": 50, "gallery_k": 1})
    (wd / "test.yaml").write_text(yaml.safe_dump(base, sort_keys=False))  # the first run is the reference
    run(wd)
    return wd


def test_demo_learns_the_planted_findings(demo_run):
    metrics = json.loads((demo_run / "results/runs/cnn/evaluate/metrics.json").read_text())
    assert metrics["mean_auroc"] > 0.9, metrics["auroc"]
    assert metrics["mean_auroc_ci"][0] > 0.85
    assert metrics["expert_labels"]["Pneumothorax"]["images"] == metrics["images"]
    ensemble = json.loads((demo_run / "results/runs/mean3/evaluate/metrics.json").read_text())
    assert ensemble["model"]["members"] == ["cnn", "cnn_focal", "cnn_80px"] and ensemble["mean_auroc"] > 0.9


def test_demo_calibration_lowers_ece_and_keeps_auroc(demo_run):
    for run in ("cnn", "cnn_focal", "cnn_80px", "mean3"):
        c = json.loads((demo_run / f"results/runs/{run}/evaluate/metrics.json").read_text())["calibration"]
        assert c["after"]["ece"]["mean"] < c["before"]["ece"]["mean"], (run, c["before"], c["after"])
        assert c["auroc_max_change"] < 1e-6
    tta = json.loads((demo_run / "results/runs/cnn/evaluate/metrics.json").read_text())["tta"]
    assert tta["views"] == 5 and tta["mean_auroc_without"] > 0.9


def test_demo_leaderboard_has_every_run_and_the_paired_comparisons(demo_run):
    import pandas as pd

    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert list(board.run) == ["cnn", "cnn_focal", "cnn_80px", "mean3"]
    assert list(board.kind) == ["trained"] * 3 + ["ensemble"]
    assert board.differs_from_reference.tolist()[:3] == ["(reference)", "train.loss=focal", "shards.image_size=80"]
    assert board.diff_vs_reference[1:].notna().all() and (board.epochs[:3] >= 1).all()
    html = (demo_run / "results/leaderboard.html").read_text()
    assert "45</b> comparisons" in html and 'href="runs/mean3/evaluate/report.html"' in html
    # Runs at another image size read shards of their own, made once.
    assert sorted(p.name for p in (demo_run / "results/shards").iterdir() if p.is_dir()) == ["64px-raw", "80px-raw"]


def test_demo_bad_images_are_listed_and_skipped(demo_run):
    bad = sum(len(open(demo_run / f"results/shards/64px-raw/{s}/bad_images.tsv").read().splitlines()) - 1
              for s in ("train", "val", "test"))
    assert bad == 1  # the truncated PNG; the RGBA one decodes


def test_demo_report_and_app_are_ready(demo_run):
    html = (demo_run / "results/runs/cnn/evaluate/report.html").read_text()
    assert "not medical advice" in html and 'id="localisation"' in html
    assert (demo_run / "results/runs/cnn/evaluate/thresholds.json").exists()
    assert planned_jobs(run(demo_run, "-n", "app")) == {"app": 1}


def plan(demo_run, change: dict) -> dict[str, int]:
    (demo_run / "change.yaml").write_text(yaml.safe_dump(change))
    return planned_jobs(run(demo_run, "-n", "--configfile", str(demo_run / "test.yaml"), str(demo_run / "change.yaml")))


def test_nothing_to_do_after_the_demo(demo_run):
    assert planned_jobs(run(demo_run, "-n")) == {}


def test_adding_a_run_trains_and_evaluates_that_run_only(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_lr": {"train": {"learning_rate": 0.004}}}})
    assert jobs == {"train": 1, "score": 1, "calibrate": 1, "evaluate": 1, "leaderboard": 1, "all": 1}


def test_changing_one_runs_learning_rate_reruns_it_its_ensemble_and_the_leaderboard(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_focal": {"train": {"loss": "focal", "learning_rate": 0.004}}}})
    assert jobs == {"train": 1, "score": 1, "ensemble": 1, "calibrate": 2, "evaluate": 2, "leaderboard": 1, "all": 1}


def test_changing_one_runs_image_size_shards_that_size_once(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_80px": {"shards": {"image_size": 48}}}})
    shards = jobs.pop("shard")
    assert shards == sum(len(list((demo_run / "results/shards/80px-raw" / s).glob("*.tfrecord")))
                         for s in ("train", "val", "test"))
    assert jobs == {"shard_manifest": 3, "train": 1, "score": 1, "ensemble": 1, "calibrate": 2, "evaluate": 2,
                    "leaderboard": 1, "all": 1}


def test_changing_the_calibration_method_recalibrates_without_retraining(demo_run):
    jobs = plan(demo_run, {"calibration": {"method": "platt"}})
    assert jobs == {"calibrate": 4, "evaluate": 4, "leaderboard": 1, "all": 1}


@pytest.mark.parametrize("load", [
    "import cxr14, keras; m = keras.saving.load_model(PATH)",
    "import keras, cxr14; m = keras.saving.load_model(PATH)",
    "import cxr14; m = cxr14.load_model(PATH)",
])
def test_the_saved_model_loads_the_way_keras_users_load_it(demo_run, load):
    import subprocess
    import sys

    code = load.replace("PATH", repr(str(demo_run / "results/runs/cnn/train/model.keras")))
    code += "; import numpy as np; print(m.predict(np.zeros((1, 64, 64, 1)), verbose=0).shape)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0 and "(1, 14)" in proc.stdout, proc.stderr[-2000:]


def test_removing_a_run_removes_its_row_from_the_leaderboard(demo_run):
    """Last of the demo tests: it changes the demo's config."""
    import pandas as pd

    config = yaml.safe_load((demo_run / "test.yaml").read_text())
    del config["runs"]["mean3"]
    (demo_run / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert planned_jobs(run(demo_run, "-n")) == {"leaderboard": 1, "all": 1}
    run(demo_run)
    assert list(pd.read_csv(demo_run / "results/leaderboard.csv").run) == ["cnn", "cnn_focal", "cnn_80px"]


def test_lint_and_format():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/demo.yaml"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "good condition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules/"],
                         capture_output=True, text=True, cwd=REPO)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
