"""A smaller version of the offline demo, end to end through Snakemake: its runs must learn the
planted findings, the reports, the leaderboard and the app's inputs must be there, the exports and
model cards serve and describe what was evaluated. What a change to the config or the package reruns
is planned against the same run in tests/test_demo_plans.py.

The run is conftest's `workflow_run` (built once a session, shared with tests/test_matrix.py): the
demo's runs are the reference cnn-seed42 (the demo's `cnn`), the focal-loss run cnn-loss_focal (a
sweep of one value), cnn_80px, their ensemble mean4 (with the second repeat cnn-seed43) and the
fine-tune cnn_site (from cnn-seed43)."""

import json

import pytest
import yaml

from conftest import ENSEMBLES, FOCAL, REFERENCE, REPEAT, RUNS, SHARED_RUN_TIMEOUT, TRAINED, planned_jobs, run

pytestmark = [pytest.mark.workflow, SHARED_RUN_TIMEOUT]

# The demo's five runs as config/demo.yaml has them (cnn, cnn_focal, cnn_80px, mean3, cnn_site).
DEMO = [REFERENCE, FOCAL, "cnn_80px", "mean4", "cnn_site"]


@pytest.fixture(scope="module")
def demo_run(workflow_run):
    return workflow_run


def test_demo_learns_the_planted_findings(demo_run):
    metrics = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/nih/metrics.json").read_text())
    assert metrics["mean_auroc"] > 0.9, {f: s["auroc"] for f, s in metrics["findings"].items()}
    assert metrics["mean_auroc_ci"][0] > 0.85
    expert = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/nih/expert_labels.json").read_text())
    assert expert["Pneumothorax"]["images"] == metrics["images"]
    ensemble = json.loads((demo_run / "results/runs/mean4/datasets/nih/metrics.json").read_text())
    assert ensemble["members"] == ENSEMBLES["mean4"] and ensemble["mean_auroc"] > 0.9


def test_demo_calibration_lowers_ece_and_keeps_auroc(demo_run):
    """Every trained run and the ensemble (of calibrated members) is calibrated on NIH test (mean ECE
    at most 0.10), and on the site's test split under the site's own calibration (fitted on its val)."""
    for name in DEMO:
        c = json.loads((demo_run / f"results/runs/{name}/datasets/nih/metrics.json").read_text())["calibration"]
        assert c["after"]["ece"]["mean"] <= 0.10, (name, c["after"])
        if name != "cnn_site":  # (the fine-tune's own scores are calibrated for the site it learnt)
            assert c["after"]["ece"]["mean"] < c["before"]["ece"]["mean"], (name, c["before"], c["after"])
        assert c["auroc_max_change"] < 1e-6
        site = json.loads((demo_run / f"results/runs/{name}/datasets/site/metrics.json").read_text())["recalibration"]
        assert site["fitted_on"] == "site val" and site["mean"]["site"]["ece"]["mean"] <= 0.10, (name, site["mean"])
    tta = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/nih/metrics.json").read_text())["tta"]
    assert tta["views"] == 5 and tta["mean_auroc_without"] > 0.9


def test_demo_leaderboard_has_every_run_and_the_paired_comparisons(demo_run):
    import pandas as pd

    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert list(board.run) == RUNS
    assert list(board.kind) == ["ensemble" if run in ENSEMBLES else "trained" for run in RUNS]
    board = board.set_index("run")
    assert board.differs_from_reference[[REFERENCE, FOCAL, "cnn_80px"]].tolist() == [
        "(reference)", "train.loss=focal", "shards.image_size=80"
    ]  # fmt: skip
    assert board.diff_vs_reference.drop(REFERENCE).notna().all()
    assert (board.epochs[[REFERENCE, REPEAT, FOCAL, "cnn_80px"]] >= 1).all()
    html = (demo_run / "results/leaderboard.html").read_text()
    # Every run but the reference against it: 14 findings and the mean each.
    assert f"{(len(RUNS) - 1) * 15}</b> comparisons" in html and 'href="runs/mean4/datasets/nih/report.html"' in html
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
        "train",
        "val",
        "test",
    }  # every run is calibrated on the val split and judged on the test split; the fine-tune trains on the
    # train split, whose embeddings every run keeps (the fine-tune's ensembles' references are of them)
    for run_name in RUNS:
        m = json.loads((demo_run / f"results/runs/{run_name}/datasets/site/metrics.json").read_text())
        assert list(m["findings"]) == ingested["labelled_findings"] and m["images"] == len(test)
        assert m["drop"]["diff"] == pytest.approx(m["nih"]["mean_auroc"] - m["mean_auroc"])
        assert m["drop"]["ci"][0] <= m["drop"]["diff"] <= m["drop"]["ci"][1]
        assert m["recalibration"]["fitted_on"] == "site val"  # the site's own calibration, beside NIH's
    cnn = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/site/metrics.json").read_text())
    assert cnn["drop"]["diff"] > 0.02 and cnn["mean_auroc"] > 0.6  # another scanner and labeller: a real drop
    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert board.site_mean_auroc.notna().all() and board.site_diff_vs_reference[1:].notna().all()
    html = (demo_run / "results/leaderboard.html").read_text()
    assert 'id="external-site"' in html and 'href="runs/mean4/datasets/site/report.html"' in html
    report = (demo_run / f"results/runs/{REFERENCE}/datasets/site/report.html").read_text()
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
    for run_name in DEMO:
        for dataset in ("site", "site_images"):
            m = json.loads((demo_run / f"results/runs/{run_name}/datasets/{dataset}/monitor.json").read_text())
            assert m["labelled"] == (dataset == "site")
            if run_name != "cnn_site":  # (the fine-tune has learnt the site's images)
                assert m["shifted"] and m["features"]["domain"]["auroc"] > 0.8 and m["features"]["mmd"]["p"] < 0.01
                assert m["ood"]["share"] > 0.5, (run_name, dataset, m["ood"])
            else:  # its out-of-distribution reference is its own training data, the site's train split
                assert m["ood"]["training_data"] == "site" and m["ood"]["share"] < 0.25, (dataset, m["ood"])
            assert not m["yardstick_shifted"], (run_name, dataset, m["features"]["yardstick"])
            page = (demo_run / f"results/runs/{run_name}/datasets/{dataset}/monitor.html").read_text()
            assert "not medical advice" in page and 'id="verdict"' in page
        labelled = json.loads((demo_run / f"results/runs/{run_name}/datasets/site/monitor.json").read_text())
        for finding in ("Cardiomegaly", "Effusion"):
            entry = labelled["predictions"][finding]
            assert entry["estimate_error"] == pytest.approx(entry["auroc_estimate_labelled"] - entry["auroc"])
        report = (demo_run / f"results/runs/{run_name}/datasets/site_images/report.html").read_text()
        assert "no labels" in report and 'href="monitor.html"' in report
    folder = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/site_images/monitor.json").read_text())
    assert [m["month"] for m in folder["months"]][-1] == "undated" and len(folder["months"]) >= 3
    board = pd.read_csv(demo_run / "results/leaderboard.csv")
    assert board.site_images_mean_auroc.isna().all()
    assert (board.set_index("run").site_images_domain_auroc[[REFERENCE, FOCAL, "cnn_80px", "mean4"]] > 0.8).all()
    card = (demo_run / f"results/runs/{REFERENCE}/model_card.md").read_text()
    assert "## Watching a site" in card and "| site_images |" in card


def _rounded(value, digits=10):
    """JSON numbers to `digits` significant digits, everything else as it is."""
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def test_monitoring_is_seeded_the_same_inputs_give_the_same_report(demo_run, tmp_path, monkeypatch):
    """The monitor step run again on the demo's files (mean4: its members' embeddings side by side) gives
    the numbers the workflow wrote (to ten significant digits)."""
    from cxr14 import paths
    from cxr14.settings import MonitorSettings, defaults
    from cxr14.steps.monitor import monitor

    monkeypatch.chdir(demo_run)
    members, site = ENSEMBLES["mean4"], "site_images"
    again = monitor(
        predictions=paths.PREDICTIONS.format(run="mean4", dataset=site),
        nih_predictions=paths.PREDICTIONS.format(run="mean4", dataset="nih"),
        calibration=paths.NIH_CALIBRATION.format(run="mean4"),
        features=[paths.FEATURES.format(run=m, dataset=site) for m in members],
        nih_features=[paths.FEATURES.format(run=m, dataset="nih") for m in members],
        ood_reference=paths.OOD_REFERENCE.format(run="mean4"),
        table=paths.DATASET_TABLE.format(dataset=site),
        nih_table=paths.DATASET_TABLE.format(dataset="nih"),
        ingest_report=paths.INGEST_REPORT.format(dataset=site),
        monitoring=tmp_path / "monitor.json",
        report=tmp_path / "monitor.html",
        settings=MonitorSettings.of(defaults("monitor")),
        run="mean4",
        dataset=site,
        root=yaml.safe_load((demo_run / "test.yaml").read_text())["datasets"][site]["root"],
        nih_root=paths.EXTRACT,
        members=members,
        synthetic=True,
    )
    written = json.loads((demo_run / paths.MONITORING.format(run="mean4", dataset=site)).read_text())
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
    html = (demo_run / f"results/runs/{REFERENCE}/datasets/nih/report.html").read_text()
    explained = (demo_run / f"results/runs/{REFERENCE}/datasets/nih/explanation.html").read_text()
    assert "not medical advice" in html and 'href="explanation.html"' in html
    assert "not medical advice" in explained and 'id="localisation"' in explained
    assert (demo_run / f"results/runs/{REFERENCE}/datasets/nih/thresholds.json").exists()
    assert planned_jobs(run(demo_run, "-n", "app")) == {"app": 1}


def test_the_fine_tune_trains_on_the_site_from_cnn_and_is_judged_against_it(demo_run):
    """cnn_site starts from the model of cnn's second repeat (cnn-seed43), trains on the site's train
    split (its unlabelled findings masked, its class weights from its labelled images), and the
    leaderboard compares it with cnn-seed43 on the site's test split and on NIH test."""
    import pandas as pd

    from cxr14.files import sha256_file

    summary = json.loads((demo_run / "results/runs/cnn_site/train/training_summary.json").read_text())
    assert summary["init"]["model_sha256"] == sha256_file(demo_run / f"results/runs/{REPEAT}/train/model.keras")
    table = pd.read_parquet(demo_run / "results/datasets/site/images.parquet")
    train = table[table.split == "train"]
    assert summary["trained_on"] == ["site"] and summary["train_images"] == len(train)
    labelled = summary["class_weights"]["labelled"]
    assert labelled["Mass"] == 0 and labelled["Effusion"] == (train.Effusion >= 0).sum() < len(train)
    assert summary["class_weights"]["positives"]["Effusion"] == (train.Effusion == 1).sum()
    history = pd.read_csv(demo_run / "results/runs/cnn_site/train/history.csv")
    assert list(history.epoch) == list(range(len(history))) and len(history) > 2  # head-only epochs, then all
    board = pd.read_csv(demo_run / "results/leaderboard.csv").set_index("run")
    assert board.loc["cnn_site", "starts_from"] == REPEAT and board.loc["cnn_site", "trained_on"] == "site"
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
    # pixels (what `monitor` counts) and `predict` on its file, with the run's one reference (ood_reference).
    from cxr14 import ood

    reference = ood.load_reference(demo_run / "results/runs/cnn_site/ood_reference.npz")
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

    for run_name in RUNS:
        card = (demo_run / f"results/runs/{run_name}/model_card.md").read_text()
        assert "## Metrics" in card and "| site |" in card and "not a medical device" in card
        assert (demo_run / f"results/runs/{run_name}/model_card.html").exists()
        assert (
            'href="../../model_card.html"'
            in (demo_run / f"results/runs/{run_name}/datasets/nih/report.html").read_text()
        )
    card = (demo_run / "results/runs/cnn_site/model_card.md").read_text()
    assert f"Fine-tuned from** run `{REPEAT}`" in card and "**Training data**: site" in card
    # The card's config makes the same run again.
    config = yaml_.safe_load((demo_run / "test.yaml").read_text())
    again = yaml_.safe_load(card.split("```yaml\n", 1)[1].split("```", 1)[0])
    resolved = runs.resolve(validate({"archive_catalog": {}, **again}))
    assert resolved["cnn_site"] == runs.resolve(validate({**config, "archive_catalog": {}}))["cnn_site"]
    assert 'href="runs/cnn_site/model_card.html"' in (demo_run / "results/leaderboard.html").read_text()


def test_every_trained_run_is_exported_with_parity(demo_run):
    """The demo exports each trained run (an ensemble has no model of its own): SavedModel, ONNX and
    TFLite, each within the limit of the evaluation's scores on the run's test images."""
    for run_name in TRAINED:
        export = demo_run / f"results/runs/{run_name}/export"
        parity = json.loads((export / "parity.json").read_text())["formats"]
        for fmt, p in parity.items():  # every site's calibrated probabilities, nothing left out near 0 or 1
            assert p["max_abs_diff_calibrated"] <= p["max_allowed"] <= 1e-3 and p["images"] > 50, (run_name, fmt, p)
            assert p["sites"] == ["nih", "site"] and p["max_allowed"] == (1e-3 if fmt == "tflite" else 1e-4)
        assert (export / "saved_model/saved_model.pb").exists() and (export / "model.tflite").stat().st_size > 0
        assert json.loads((export / "serving.json").read_text())["tta"] is True
    assert not any((demo_run / f"results/runs/{name}/export").exists() for name in ENSEMBLES)


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

    code = load.replace("PATH", repr(str(demo_run / f"results/runs/{REFERENCE}/train/model.keras")))
    code += "; import numpy as np; print(m.predict(np.zeros((1, 64, 64, 1)), verbose=0).shape)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=demo_run)
    assert proc.returncode == 0 and "(1, 14)" in proc.stdout, proc.stderr[-2000:]


def test_every_page_of_the_demo_says_it_is_made_from_phantom_data(demo_run):
    """Every HTML page the demo makes says at the top that its figures come from phantom images, and the
    NIH report draws no published figures beside them (#39: its 0.998 was charted beside CheXNet's 0.841)."""
    pages = sorted((demo_run / "results").rglob("*.html"))
    assert len(pages) > 50
    for page in pages:
        assert 'id="synthetic"' in page.read_text(), page
    for card in (demo_run / "results/runs").glob("*/model_card.md"):
        assert "**Synthetic data.**" in card.read_text(), card
    report = (demo_run / f"results/runs/{REFERENCE}/datasets/nih/report.html").read_text()
    assert 'id="comparison"' not in report and "CheXNet" not in report
    m = json.loads((demo_run / f"results/runs/{REFERENCE}/datasets/nih/metrics.json").read_text())
    assert m["synthetic"] and "published" not in m
    # A test image the shard step skipped (the truncated PNG, where it falls in test) is counted and named.
    skipped = open(demo_run / "results/datasets/nih/shards/64px-raw/test/bad_images.tsv").read().splitlines()[1:]
    assert m["left_out"]["images"] == len(skipped) and ('id="left-out"' in report) == bool(skipped)
    assert sorted(m["left_out"]["named"]) == sorted(line.split("\t")[0] for line in skipped)
