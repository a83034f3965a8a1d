"""A smaller version of the offline demo, end to end through Snakemake: its runs must learn the
planted findings, the reports, the leaderboard and the app's inputs must be there, a change to one
run must rerun that run alone (with its ensembles and the leaderboard), a change to the package's
code must rerun the steps that run it, and a config written differently must rerun nothing."""

import copy
import json
import shutil

import pytest
import yaml

from conftest import REPO, SNAKEMAKE, planned_jobs, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("demo")
    base = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    base["archive_catalog"] = {i: {"images": 70} for i in range(1, 13)}
    base["shards"] = {"image_size": 64, "images_per_shard": 1000}  # one shard per split: fewer TF-importing jobs
    base["train"].update({"epochs": 8, "deterministic": True})  # val mean AUROC ~0.98 by epoch 6
    base["evaluate"].update({"n_boot": 50, "gallery_k": 1})
    base["demo"]["site_patients"] = 150
    # The fine-tune takes the GPU path (mixed precision over two simulated GPUs, the global batch the
    # CPU runs' 32) through every step of `rule all`.
    base["runs"]["cnn_site"]["train"].update({"simulate_gpus": 2, "batch_size": 16})
    (wd / "test.yaml").write_text(yaml.safe_dump(base, sort_keys=False))  # the first run is the reference
    run(wd)
    return wd


def test_demo_learns_the_planted_findings(demo_run):
    metrics = json.loads((demo_run / "results/runs/cnn/datasets/nih/metrics.json").read_text())
    assert metrics["mean_auroc"] > 0.9, {f: s["auroc"] for f, s in metrics["findings"].items()}
    assert metrics["mean_auroc_ci"][0] > 0.85
    expert = json.loads((demo_run / "results/runs/cnn/datasets/nih/expert_labels.json").read_text())
    assert expert["Pneumothorax"]["images"] == metrics["images"]
    ensemble = json.loads((demo_run / "results/runs/mean3/datasets/nih/metrics.json").read_text())
    assert ensemble["members"] == ["cnn", "cnn_focal", "cnn_80px"] and ensemble["mean_auroc"] > 0.9


def test_demo_calibration_lowers_ece_and_keeps_auroc(demo_run):
    """Every trained run and the ensemble (of calibrated members) is calibrated on NIH test (mean ECE
    at most 0.10), and on the site's test split under the site's own calibration (fitted on its val)."""
    for name in ("cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"):
        c = json.loads((demo_run / f"results/runs/{name}/datasets/nih/metrics.json").read_text())["calibration"]
        assert c["after"]["ece"]["mean"] <= 0.10, (name, c["after"])
        if name != "cnn_site":  # (the fine-tune's own scores are calibrated for the site it learnt)
            assert c["after"]["ece"]["mean"] < c["before"]["ece"]["mean"], (name, c["before"], c["after"])
        assert c["auroc_max_change"] < 1e-6
        site = json.loads((demo_run / f"results/runs/{name}/datasets/site/metrics.json").read_text())["recalibration"]
        assert site["fitted_on"] == "site val" and site["mean"]["site"]["ece"]["mean"] <= 0.10, (name, site["mean"])
    tta = json.loads((demo_run / "results/runs/cnn/datasets/nih/metrics.json").read_text())["tta"]
    assert tta["views"] == 5 and tta["mean_auroc_without"] > 0.9


def test_demo_leaderboard_has_every_run_and_the_paired_comparisons(demo_run):
    import pandas as pd

    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert list(board.run) == ["cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"]
    assert list(board.kind) == ["trained"] * 3 + ["ensemble", "trained"]
    assert board.differs_from_reference.tolist()[:3] == ["(reference)", "train.loss=focal", "shards.image_size=80"]
    assert board.diff_vs_reference[1:].notna().all() and (board.epochs[:3] >= 1).all()
    html = (demo_run / "results/leaderboard.html").read_text()
    assert "60</b> comparisons" in html and 'href="runs/mean3/datasets/nih/report.html"' in html
    # Runs at another image size read shards of their own, made once.
    assert sorted(p.name for p in (demo_run / "results/datasets/nih/shards").iterdir() if p.is_dir()) == [
        "64px-raw",
        "80px-raw",
    ]


def test_demo_external_site_is_judged_beside_nih(demo_run):
    """The phantom site (CheXpert layout: JPEGs, DICOMs, -1 labels, laterals): every run and the
    ensemble has a report on it, the drop from NIH is there with its CI, and the leaderboard has its column."""
    import pandas as pd

    ingested = json.loads((demo_run / "results/datasets/site/ingest_report.json").read_text())
    assert ingested["dropped"]["view not in views"] > 0 and ingested["images"] > 40
    assert ingested["labelled_findings"] == [
        "Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"
    ]  # fmt: skip
    table = pd.read_parquet(demo_run / "results/datasets/site/images.parquet")
    assert table.image_index.str.endswith(".dcm").sum() >= 2 and (table.Atelectasis == -1).any()
    # Split patient-wise at ingest; every JPEG and DICOM of a split decoded into its shards.
    assert (table.groupby("patient").split.nunique() == 1).all() and set(table.split) == {"train", "val", "test"}
    test = table[table.split == "test"]
    for manifest in (demo_run / "results/datasets/site/shards").glob("*/*/manifest.json"):
        assert json.loads(manifest.read_text())["images"] == (table.split == manifest.parent.name).sum()
    assert {m.parent.name for m in (demo_run / "results/datasets/site/shards").glob("80px-raw/*/manifest.json")} == {
        "val",
        "test",
    }  # every run is calibrated on the val split and judged on the test split; only the fine-tune trains
    for run_name in ("cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"):
        m = json.loads((demo_run / f"results/runs/{run_name}/datasets/site/metrics.json").read_text())
        assert list(m["findings"]) == ingested["labelled_findings"] and m["images"] == len(test)
        assert m["drop"]["diff"] == pytest.approx(m["nih"]["mean_auroc"] - m["mean_auroc"])
        assert m["drop"]["ci"][0] <= m["drop"]["diff"] <= m["drop"]["ci"][1]
        assert m["recalibration"]["fitted_on"] == "site val"  # the site's own calibration, beside NIH's
    cnn = json.loads((demo_run / "results/runs/cnn/datasets/site/metrics.json").read_text())
    assert cnn["drop"]["diff"] > 0.02 and cnn["mean_auroc"] > 0.6  # another scanner and labeller: a real drop
    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert board.site_mean_auroc.notna().all() and board.site_diff_vs_reference[1:].notna().all()
    html = (demo_run / "results/leaderboard.html").read_text()
    assert 'id="external-site"' in html and 'href="runs/mean3/datasets/site/report.html"' in html
    report = (demo_run / "results/runs/cnn/datasets/site/report.html").read_text()
    assert "a drop of <b>" in report and "not medical advice" in report


def test_demo_site_is_flagged_without_its_labels_and_nih_val_is_not(demo_run):
    """The site's images as a plain folder without labels (site_images) and the labelled site: every run
    is watched on both; the site is flagged (domain classifier well above 0.5, MMD p < 0.01) while NIH
    val against NIH test is not; the label-free estimate sits beside the measured AUROC where there are
    labels; the folder collection's validation report says it has no labels; the leaderboard has the shift."""
    import pandas as pd

    ingested = json.loads((demo_run / "results/datasets/site_images/ingest_report.json").read_text())
    assert ingested["labelled_findings"] == [] and ingested["images"] > 40 and ingested["study_dates"] >= 2
    table = pd.read_parquet(demo_run / "results/datasets/site_images/images.parquet")
    assert table.path.str.contains("_frontal.").all() and table.patient.str.startswith("patient").all()
    for run_name in ("cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"):
        for dataset in ("site", "site_images"):
            m = json.loads((demo_run / f"results/runs/{run_name}/datasets/{dataset}/monitor.json").read_text())
            assert m["labelled"] == (dataset == "site")
            if run_name != "cnn_site":  # (the fine-tune has learnt the site's images)
                assert m["shifted"] and m["features"]["domain"]["auroc"] > 0.8 and m["features"]["mmd"]["p"] < 0.01
                assert m["ood"]["share"] > 0.5, (run_name, dataset, m["ood"])
            assert not m["yardstick_shifted"], (run_name, dataset, m["features"]["nih_val"])
            page = (demo_run / f"results/runs/{run_name}/datasets/{dataset}/monitor.html").read_text()
            assert "not medical advice" in page and 'id="verdict"' in page
        labelled = json.loads((demo_run / f"results/runs/{run_name}/datasets/site/monitor.json").read_text())
        for finding in ("Cardiomegaly", "Effusion"):
            entry = labelled["predictions"][finding]
            assert entry["estimate_error"] == pytest.approx(entry["auroc_estimate_labelled"] - entry["auroc"])
        report = (demo_run / f"results/runs/{run_name}/datasets/site_images/report.html").read_text()
        assert "no labels" in report and 'href="monitor.html"' in report
    folder = json.loads((demo_run / "results/runs/cnn/datasets/site_images/monitor.json").read_text())
    assert [m["month"] for m in folder["months"]][-1] == "undated" and len(folder["months"]) >= 3
    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert board.site_images_mean_auroc.isna().all() and (board.site_images_domain_auroc[:4] > 0.8).all()
    card = (demo_run / "results/runs/cnn/model_card.md").read_text()
    assert "## Watching a site" in card and "| site_images |" in card


def _rounded(value, digits=10):
    """JSON numbers to `digits` significant digits, everything else as it is."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def test_monitoring_is_seeded_the_same_inputs_give_the_same_report(demo_run, tmp_path, monkeypatch):
    """The monitor step run again on the demo's files (mean3: its members' embeddings side by side) gives
    the numbers the workflow wrote (to ten significant digits)."""
    from cxr14 import paths
    from cxr14.settings import MonitorSettings, defaults
    from cxr14.steps.monitor import monitor

    monkeypatch.chdir(demo_run)
    members, site = ["cnn", "cnn_focal", "cnn_80px"], "site_images"
    again = monitor(
        predictions=paths.PREDICTIONS.format(run="mean3", dataset=site),
        nih_predictions=paths.PREDICTIONS.format(run="mean3", dataset="nih"),
        calibration=paths.NIH_CALIBRATION.format(run="mean3"),
        features=[paths.FEATURES.format(run=m, dataset=site) for m in members],
        nih_features=[paths.FEATURES.format(run=m, dataset="nih") for m in members],
        table=paths.DATASET_TABLE.format(dataset=site),
        nih_table=paths.DATASET_TABLE.format(dataset="nih"),
        ingest_report=paths.INGEST_REPORT.format(dataset=site),
        monitoring=tmp_path / "monitor.json",
        report=tmp_path / "monitor.html",
        settings=MonitorSettings.of(defaults("monitor")),
        run="mean3",
        dataset=site,
        root=yaml.safe_load((demo_run / "test.yaml").read_text())["datasets"][site]["root"],
        nih_root=paths.EXTRACT,
        members=members,
    )
    written = json.loads((demo_run / paths.MONITORING.format(run="mean3", dataset=site)).read_text())
    # (to the last digit but BLAS's: its sums run in another order on another number of threads)
    assert _rounded(again) == _rounded(written) and again.keys() == written.keys()
    assert again["features"]["domain"]["auroc"] > 0.8


def test_demo_bad_images_are_listed_and_skipped(demo_run):
    bad = sum(
        len(open(demo_run / f"results/datasets/nih/shards/64px-raw/{s}/bad_images.tsv").read().splitlines()) - 1
        for s in ("train", "val", "test")
    )
    assert bad == 1  # the truncated PNG; the RGBA one decodes


def test_demo_report_and_app_are_ready(demo_run):
    html = (demo_run / "results/runs/cnn/datasets/nih/report.html").read_text()
    assert "not medical advice" in html and 'id="localisation"' in html
    assert (demo_run / "results/runs/cnn/datasets/nih/thresholds.json").exists()
    assert planned_jobs(run(demo_run, "-n", "app")) == {"app": 1}


def plan(demo_run, change: dict) -> dict[str, int]:
    (demo_run / "change.yaml").write_text(yaml.safe_dump(change))
    return planned_jobs(run(demo_run, "-n", "--configfile", str(demo_run / "test.yaml"), str(demo_run / "change.yaml")))


def test_nothing_to_do_after_the_demo(demo_run):
    assert planned_jobs(run(demo_run, "-n")) == {}


def test_adding_a_run_trains_and_evaluates_that_run_only(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_lr": {"train": {"learning_rate": 0.004}}}})
    assert jobs == {
        "train": 1, "convert": 1, "score": 3, "calibrate": 2, "evaluate": 3, "monitor": 2, "leaderboard": 1,
        "model_card": 1, "export": 1, "all": 1,
    }  # fmt: skip


def test_changing_one_runs_learning_rate_reruns_it_its_ensemble_and_the_leaderboard(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_focal": {"train": {"loss": "focal", "learning_rate": 0.004}}}})
    assert jobs == {
        "train": 1, "convert": 1, "score": 3, "ensemble": 3, "calibrate": 4, "evaluate": 6, "monitor": 4,
        "leaderboard": 1, "model_card": 2, "export": 1, "all": 1,
    }  # fmt: skip


def test_changing_the_starting_run_retrains_the_fine_tune_too(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn": {"train": {"learning_rate": 0.004}}}})
    assert jobs == {
        "train": 2, "convert": 2, "score": 6, "ensemble": 3, "calibrate": 6, "evaluate": 9, "monitor": 6,
        "leaderboard": 1, "model_card": 3, "export": 2, "all": 1,
    }  # fmt: skip


def test_changing_only_the_fine_tune_leaves_its_starting_run_alone(demo_run):
    config = yaml.safe_load((demo_run / "test.yaml").read_text())
    tuned = config["runs"]["cnn_site"]
    tuned["train"]["learning_rate"] = 0.001
    jobs = plan(demo_run, {"runs": {**config["runs"], "cnn_site": tuned}})
    assert jobs == {
        "train": 1, "convert": 1, "score": 3, "calibrate": 2, "evaluate": 3, "monitor": 2, "leaderboard": 1,
        "model_card": 1, "export": 1, "all": 1,
    }  # fmt: skip


def test_the_fine_tune_trains_on_the_site_from_cnn_and_is_judged_against_it(demo_run):
    """cnn_site starts from cnn's model, trains on the site's train split (its unlabelled findings
    masked, its class weights from its labelled images), and the leaderboard compares it with cnn on
    the site's test split and on NIH test."""
    import pandas as pd

    from cxr14.files import sha256_file

    summary = json.loads((demo_run / "results/runs/cnn_site/train/training_summary.json").read_text())
    assert summary["init"]["model_sha256"] == sha256_file(demo_run / "results/runs/cnn/train/model.keras")
    table = pd.read_parquet(demo_run / "results/datasets/site/images.parquet")
    train = table[table.split == "train"]
    assert summary["trained_on"] == ["site"] and summary["train_images"] == len(train)
    labelled = summary["class_weights"]["labelled"]
    assert labelled["Mass"] == 0 and labelled["Effusion"] == (train.Effusion >= 0).sum() < len(train)
    assert summary["class_weights"]["positives"]["Effusion"] == (train.Effusion == 1).sum()
    history = pd.read_csv(demo_run / "results/runs/cnn_site/train/history.csv")
    assert list(history.epoch) == list(range(len(history))) and len(history) > 2  # head-only epochs, then all
    board = pd.read_csv(demo_run / "results/leaderboard.csv").set_index("run")
    assert board.loc["cnn_site", "starts_from"] == "cnn" and board.loc["cnn_site", "trained_on"] == "site"
    for where in ("nih", "site"):
        gain = board.loc["cnn_site", [f"{where}_gain_vs_start", f"{where}_gain_ci_low", f"{where}_gain_ci_high"]]
        assert gain.notna().all() and gain.iloc[1] <= gain.iloc[0] <= gain.iloc[2]
    assert board.loc["cnn_site", "site_gain_vs_start"] > 0  # it learnt the site
    html = (demo_run / "results/leaderboard.html").read_text()
    assert 'id="fine-tunes"' in html and "Δ NIH test" in html


def test_the_fine_tune_on_the_gpu_path_is_served_as_it_was_evaluated(demo_run, tmp_path, monkeypatch):
    """cnn_site trained in mixed precision over two simulated GPUs; its model computes in float32, its
    exports say so, `cxr14 predict --run cnn_site` on the site's own JPEG and DICOM files gives the
    scores its external evaluation gave them, and the app the probabilities predict gives."""
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    from cxr14.constants import FINDINGS

    device = json.loads((demo_run / "results/runs/cnn_site/train/training_summary.json").read_text())["device"]
    assert device["precision"] == "mixed_float16" and device["replicas"] == 2 and device["global_batch"] == 32
    serving = json.loads((demo_run / "results/runs/cnn_site/export/serving.json").read_text())
    assert serving["compute"] == {"dtype": "float32", "trained_in": "mixed_float16", "trained_on_replicas": 2}
    table = pd.read_parquet(demo_run / "results/datasets/site/images.parquet")
    test = table[table.split == "test"]
    picked = pd.concat([test[test.path.str.endswith(".dcm")].head(2), test[test.path.str.endswith(".jpg")].head(4)])
    root = yaml.safe_load((demo_run / "test.yaml").read_text())["datasets"]["site"]["root"]
    picked["path"] = [f"{root}/{path}" for path in picked.path]  # (the table's paths are the collection's own)
    command = [sys.executable, "-m", "cxr14.cli", "predict", *picked.path, "--run", "cnn_site"]
    proc = subprocess.run([*command, "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0, proc.stderr
    predicted = pd.read_csv(tmp_path / "p.csv").set_index("path")
    evaluated = pd.read_parquet(demo_run / "results/runs/cnn_site/datasets/site/predictions.parquet")
    evaluated = evaluated.set_index("image_index").loc[picked.image_index]
    assert len(picked) == 6 and picked.path.str.endswith(".dcm").sum() == 2
    got = predicted.loc[picked.path, [f"raw_{f}" for f in FINDINGS]].to_numpy()
    np.testing.assert_allclose(got, evaluated[[f"p_{f}" for f in FINDINGS]].to_numpy(), atol=1e-5)
    # Two roads to an image's out-of-distribution distance: the score step's embedding of its shard
    # pixels (what `monitor` counts) and `predict` on its file, with the one reference NIH scoring stored.
    from cxr14 import ood

    reference = ood.load_reference(demo_run / "results/runs/cnn_site/datasets/nih/features.npz")
    scored = ood.per_image(demo_run / "results/runs/cnn_site/datasets/site/features.npz")
    at = [list(scored["image_index"]).index(name) for name in picked.image_index]
    np.testing.assert_allclose(
        predicted.loc[picked.path, "ood_distance"], ood.mahalanobis(reference, scored["embedding"][at]), rtol=1e-3
    )
    assert set(predicted.unlike_training) <= {"yes", "no"}
    from cxr14.app import Analysis
    from cxr14.inference import served

    monkeypatch.chdir(demo_run)
    app = Analysis(served("cnn_site", None, None)[0], max_mb=50)
    for path in picked.path[:3]:
        shown = app.analyse(path, "cnn_site")[1]
        want = predicted.loc[path, [f"p_{f}" for f in FINDINGS]].to_numpy(np.float64)
        np.testing.assert_allclose([shown[f] for f in FINDINGS], want, atol=1e-5)


def test_every_run_has_a_model_card_linked_from_its_report_and_the_leaderboard(demo_run):
    import yaml as yaml_

    from cxr14.workflow import runs
    from cxr14.workflow.config import validate

    for run_name in ("cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"):
        card = (demo_run / f"results/runs/{run_name}/model_card.md").read_text()
        assert "## Metrics" in card and "| site |" in card and "not a medical device" in card
        assert (demo_run / f"results/runs/{run_name}/model_card.html").exists()
        assert (
            'href="../../model_card.html"'
            in (demo_run / f"results/runs/{run_name}/datasets/nih/report.html").read_text()
        )
    card = (demo_run / "results/runs/cnn_site/model_card.md").read_text()
    assert "Fine-tuned from** run `cnn`" in card and "**Training data**: site" in card
    # The card's config makes the same run again.
    config = yaml_.safe_load((demo_run / "test.yaml").read_text())
    again = yaml_.safe_load(card.split("```yaml\n", 1)[1].split("```", 1)[0])
    resolved = runs.resolve(validate({"archive_catalog": {}, **again}))
    assert resolved["cnn_site"] == runs.resolve(validate({**config, "archive_catalog": {}}))["cnn_site"]
    assert 'href="runs/cnn_site/model_card.html"' in (demo_run / "results/leaderboard.html").read_text()


def test_every_trained_run_is_exported_with_parity(demo_run):
    """The demo exports each trained run (an ensemble has no model of its own): SavedModel, ONNX and
    TFLite, each within the limit of the evaluation's scores on the run's test images."""
    for run_name in ("cnn", "cnn_focal", "cnn_80px", "cnn_site"):
        export = demo_run / f"results/runs/{run_name}/export"
        parity = json.loads((export / "parity.json").read_text())["formats"]
        for fmt, p in parity.items():  # every site's calibrated probabilities, nothing left out near 0 or 1
            assert p["max_abs_diff_calibrated"] <= p["max_allowed"] <= 1e-3 and p["images"] > 50, (run_name, fmt, p)
            assert p["sites"] == ["nih", "site"] and p["max_allowed"] == (1e-3 if fmt == "tflite" else 1e-4)
        assert (export / "saved_model/saved_model.pb").exists() and (export / "model.tflite").stat().st_size > 0
        assert json.loads((export / "serving.json").read_text())["tta"] is True
    assert not (demo_run / "results/runs/mean3/export").exists()


def test_changing_one_runs_image_size_shards_that_size_once(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_80px": {"shards": {"image_size": 48}}}})
    shards = jobs.pop("shard")
    nih = demo_run / "results/datasets/nih/shards/80px-raw"
    site = demo_run / "results/datasets/site/shards/80px-raw"
    folder = demo_run / "results/datasets/site_images/shards/80px-raw/images"
    assert shards == sum(len(list((nih / s).glob("*.tfrecord"))) for s in ("train", "val", "test")) + sum(
        len(list((site / s).glob("*.tfrecord"))) for s in ("val", "test")
    ) + len(list(folder.glob("*.tfrecord")))
    assert jobs == {
        "shard_manifest": 6,
        "train": 1,
        "convert": 1,
        "score": 3,
        "ensemble": 3,
        "calibrate": 4,
        "evaluate": 6,
        "monitor": 4,
        "leaderboard": 1,
        "model_card": 2,
        "export": 1,
        "all": 1,
    }


def test_changing_the_calibration_method_recalibrates_without_retraining(demo_run):
    jobs = plan(demo_run, {"calibration": {"method": "platt"}})
    assert jobs == {
        "calibrate": 10, "ensemble": 3, "evaluate": 15, "monitor": 10, "leaderboard": 1, "model_card": 5, "export": 4,
        "all": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    "load",
    [
        "import cxr14, keras; m = keras.saving.load_model(PATH)",
        "import keras, cxr14; m = keras.saving.load_model(PATH)",
        "import cxr14; m = cxr14.load_model(PATH)",
    ],
)
def test_the_saved_model_loads_the_way_keras_users_load_it(demo_run, load):
    import subprocess
    import sys

    code = load.replace("PATH", repr(str(demo_run / "results/runs/cnn/train/model.keras")))
    code += "; import numpy as np; print(m.predict(np.zeros((1, 64, 64, 1)), verbose=0).shape)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0 and "(1, 14)" in proc.stdout, proc.stderr[-2000:]


def test_removing_a_run_removes_its_row_from_the_leaderboard(demo_run, tmp_path):
    """On a copy of the finished demo, so the other tests keep theirs as it was."""
    import pandas as pd

    copy = tmp_path / "demo"
    shutil.copytree(demo_run, copy, symlinks=True)
    config = yaml.safe_load((copy / "test.yaml").read_text())
    del config["runs"]["mean3"]
    (copy / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert planned_jobs(run(copy, "-n")) == {"leaderboard": 1, "all": 1}
    run(copy)
    assert list(pd.read_csv(copy / "results/leaderboard.csv").run) == ["cnn", "cnn_focal", "cnn_80px", "cnn_site"]
    assert list(pd.read_csv(demo_run / "results/leaderboard.csv").run) == [
        "cnn", "cnn_focal", "cnn_80px", "mean3", "cnn_site"
    ]  # fmt: skip


def _plan_with(demo_run, configfile, snakefile=REPO / "Snakefile") -> dict[str, int]:
    """The jobs `snakemake -n` plans for the finished demo with only `configfile` (and `snakefile`)."""
    import subprocess

    cmd = [
        *SNAKEMAKE[:-2],
        "-s",
        str(snakefile),
        "-d",
        str(demo_run),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        "-n",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return planned_jobs(proc)


def _sorted(value):
    """Every mapping's keys sorted, as `yaml.safe_dump` or an editor's formatter writes them."""
    if not isinstance(value, dict):
        return value
    return {k: _sorted(value[k]) for k in sorted(value, key=str)}


def _written_otherwise(config: dict) -> dict:
    """The same settings as a formatter or a careful user might write them: every mapping's keys in
    another order, every default written out, integers where the schema takes any number (and a
    float where it takes an integral one)."""
    from cxr14.settings import defaults

    out = copy.deepcopy(config)
    for section in ("download", "extract", "clean", "calibration", "leaderboard"):
        out[section] = {**defaults(section), **out.get(section, {})}
    out["train"]["augment"] = {**out["train"]["augment"], "horizontal_flip": False}  # the default, written out
    out["train"]["augment"]["rotation_deg"] = 3  # the schema's number: 3 and 3.0 are one setting
    out["train"]["focal_gamma"] = 2  # the default 2.0
    out["clean"]["max_age"] = 120  # the default 120.0
    out["shards"]["image_size"] = 64.0  # an integer setting written as a float
    out["runs"]["cnn_site"]["train"]["data"] = ["site"]  # one source, as a list
    # The order of the runs is kept: it is the leaderboard's row order, and the first is the reference.
    runs = out.pop("runs")
    return _sorted(out) | {"runs": {name: _sorted(spec) for name, spec in runs.items()}}


def test_a_config_written_otherwise_with_the_same_values_plans_nothing(demo_run, tmp_path):
    config = yaml.safe_load((demo_run / "test.yaml").read_text())
    variant = tmp_path / "same.yaml"
    variant.write_text(yaml.safe_dump(_written_otherwise(config), sort_keys=False))
    assert list(yaml.safe_load(variant.read_text())["train"]["augment"]) != list(config["train"]["augment"])
    assert _plan_with(demo_run, variant) == {}
    # A value that does change still reruns what it feeds.
    changed = _written_otherwise(config)
    changed["train"]["augment"]["zoom"] = 0.06
    variant.write_text(yaml.safe_dump(changed, sort_keys=False))
    assert _plan_with(demo_run, variant)["train"] == 4


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """A copy of the workflow's source (Snakefile, rules, scripts, the package, profiles) to edit."""
    src = tmp_path_factory.mktemp("source")
    for name in ("Snakefile", "config.yaml", "rules", "scripts", "cxr14", "profiles", "envs", "report"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            src / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}),
        )
    return src


@pytest.mark.parametrize(
    "module, edit, expected",
    [
        # The AUROC code itself: every step that computes metrics reruns, nothing else.
        (
            "metrics",
            (
                "return np.asarray(y) >= 0",
                "return np.asarray(y) >= 0.0",
            ),
            # calibrate chooses its operating points with metrics, and the ensembles average calibrated scores
            {
                "calibrate": 10,
                "ensemble": 3,
                "evaluate": 15,
                "monitor": 10,
                "leaderboard": 1,
                "model_card": 5,
                "export": 4,
                "all": 1,
            },  # fmt: skip
        ),
        # The app is no step: changing it reruns nothing.
        ("app", ("DISPLAY_SIZE = 448", "DISPLAY_SIZE = 512"), {}),
        # Comments, docstrings and formatting alone rerun nothing.
        (
            "metrics",
            (
                '"""AUROC with per-sample weights (ties count one half), in O(n log n).',
                '# a comment\n    """AUROC with per-sample weights (ties count 1/2), in O(n log n).',
            ),
            {},
        ),
        (
            "metrics",
            (
                "def weighted_auroc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:",
                "def weighted_auroc(\n    y: np.ndarray,\n    score: np.ndarray,\n"
                "    weight: np.ndarray | None = None,\n) -> float:",
            ),
            {},
        ),
    ],
    ids=["metrics-code", "app-code", "metrics-docstring-and-comment", "metrics-formatting"],
)
def test_a_change_to_the_package_reruns_the_steps_that_run_it(demo_run, source_copy, module, edit, expected):
    path = source_copy / "cxr14" / f"{module}.py"
    original = path.read_text()
    old, new = edit
    assert original.count(old) == 1, f"{module}.py no longer has {old!r}: update this test"
    test_yaml = demo_run / "test.yaml"
    assert _plan_with(demo_run, test_yaml, source_copy / "Snakefile") == {}  # the copy is the same code
    path.write_text(original.replace(old, new))
    try:
        assert _plan_with(demo_run, test_yaml, source_copy / "Snakefile") == expected
    finally:
        path.write_text(original)
