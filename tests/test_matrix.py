"""Features meet: one config that combines them (repeated runs, a sweep, an ensemble of repeats, a
fine-tune that starts from one repeat, an ensemble that includes the fine-tune, a split and an unsplit
collection) is planned as the rules say and run for real to a finished leaderboard, model cards and
exports. The config is the test demo's (conftest's workflow_config), run once a session for this
module, tests/test_demo.py and tests/test_demo_plans.py (conftest's `workflow_run`)."""

import json

import pandas as pd
import pytest
import yaml

from conftest import ENSEMBLES, REPEAT, SHARED_RUN_TIMEOUT, TRAINED, planned_jobs, run, workflow_config

pytestmark = [pytest.mark.workflow, SHARED_RUN_TIMEOUT]


def test_the_matrix_is_planned_one_job_per_step_run_and_collection(tmp_path):
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(workflow_config(), sort_keys=False))
    runs, collections = len(TRAINED) + len(ENSEMBLES), 4  # nih, site, site_images, site_all
    assert planned_jobs(run(tmp_path, "-n")) == {
        "demo_mirror": 1, "demo_site": 1, "download_archive": 12, "download_metadata": 5, "extract": 12,
        "clean": 1, "ingest": 3,
        "plan_shards": collections,
        # NIH's three splits at 64 and 80 px; the site's three at each size (the fine-tune trains on its
        # train and val; every run is calibrated on val, validated on test and keeps the embeddings of the
        # train split, which its fine-tune's ensembles' references are of); site_images' and site_all's
        # one group of every image at each size.
        "shard_manifest": 3 * 2 + 3 * 2 + 2 + 2,
        "train": len(TRAINED),
        "convert": len(TRAINED),
        "score": len(TRAINED) * collections,
        "ensemble": len(ENSEMBLES) * collections,
        # Every run on each site: NIH and the split collection (calibrated on its val); the unsplit ones have none.
        "calibrate": runs * 2, "evaluate": runs * collections, "model_card": runs,
        "monitor": runs * (collections - 1),  # every run watched on each collection but NIH
        "ood_reference": runs,  # each run's reference to watch with (an ensemble's: its members' embeddings)
        "explain": len(TRAINED), "expert_labels": runs,  # NIH's Grad-CAM (a network's) and expert labels
        "export": len(TRAINED), "leaderboard": 1, "all": 1,
    }  # fmt: skip


@pytest.fixture(scope="module")
def matrix(workflow_run):
    return workflow_run


def test_the_leaderboard_has_every_run_each_collection_and_the_repeats_spread(matrix):
    board = pd.read_csv(matrix / "results/leaderboard.csv").set_index("run")
    assert set(board.index) == {*TRAINED, *ENSEMBLES}
    assert {run: board.kind[run] for run in ENSEMBLES} == dict.fromkeys(ENSEMBLES, "ensemble")
    assert board.starts_from["cnn_site"] == REPEAT
    for dataset in ("site", "site_all"):
        assert board[f"{dataset}_mean_auroc"].notna().all(), dataset
    assert board.filter(like="gain_vs_start").loc["cnn_site"].notna().any()
    html = (matrix / "results/leaderboard.html").read_text()
    assert "Seed-to-seed" in html or "seed-to-seed" in html


def test_each_ensemble_averages_what_it_names(matrix):
    for name, members in ENSEMBLES.items():
        metrics = json.loads((matrix / f"results/runs/{name}/datasets/nih/metrics.json").read_text())
        assert metrics["members"] == members
        for dataset in ("site", "site_all"):
            assert (matrix / f"results/runs/{name}/datasets/{dataset}/report.html").exists()


def test_every_run_has_a_model_card_and_every_trained_run_its_exports(matrix):
    for name in [*TRAINED, *ENSEMBLES]:
        card = (matrix / f"results/runs/{name}/model_card.md").read_text()
        assert "| site |" in card and "| site_all |" in card, name
    for name in TRAINED:
        parity = json.loads((matrix / f"results/runs/{name}/export/parity.json").read_text())["formats"]
        assert all(p["max_abs_diff_calibrated"] <= p["max_allowed"] for p in parity.values()), (name, parity)
        assert all(p["sites"] == ["nih", "site"] for p in parity.values()), (name, parity)
    assert not any((matrix / f"results/runs/{name}/export").exists() for name in ENSEMBLES)


def test_ensembles_and_fine_tunes_meet_the_sites_calibrations(matrix):
    """Ensembles x calibration x sites: each ensemble (one of them holding the fine-tune) is the mean of
    its members' NIH-calibrated logits on every collection, and gets a calibration of its own on each
    site; the unsplit collection is no site; serving.json carries both sites of every trained run."""
    import numpy as np

    from cxr14 import prediction_table
    from cxr14.calibration import apply_logits

    runs = matrix / "results/runs"
    for name, members in ENSEMBLES.items():
        for dataset in ("nih", "site", "site_all"):
            got = prediction_table.read(runs / name / "datasets" / dataset / "predictions.parquet")
            got = got.sort_values(prediction_table.KEY, ignore_index=True)
            calibrated = []
            for member in members:
                table = prediction_table.read(runs / member / "datasets" / dataset / "predictions.parquet")
                table = table.sort_values(prediction_table.KEY, ignore_index=True)
                calibration = json.loads((runs / member / "datasets/nih/calibration.json").read_text())
                calibrated.append(apply_logits(calibration, prediction_table.logits(table)))
            np.testing.assert_allclose(prediction_table.logits(got), np.mean(calibrated, axis=0), atol=1e-5)
    for name in [*TRAINED, *ENSEMBLES]:
        for site in ("nih", "site"):
            fitted = json.loads((runs / name / "datasets" / site / "calibration.json").read_text())
            chosen = json.loads((runs / name / "datasets" / site / "thresholds.json").read_text())
            assert fitted["fitted_on"] == chosen["chosen_on"] == f"{site} val", name
        assert not (runs / name / "datasets/site_all/calibration.json").exists()
        external = json.loads((runs / name / "datasets/site/metrics.json").read_text())
        assert external["recalibration"]["fitted_on"] == "site val", name
    for name in TRAINED:
        serving = json.loads((runs / name / "export/serving.json").read_text())
        assert list(serving["sites"]) == ["nih", "site"] and serving["default_site"] == "nih", name


def test_every_run_is_watched_on_each_collection_an_ensemble_through_its_members(matrix):
    """Monitoring meets repeats, a fine-tune and ensembles (one that includes the fine-tune), on a split
    and an unsplit collection: a report each, an ensemble's embeddings its members' side by side, and
    the leaderboard's shift columns filled for every run."""
    for name in [*TRAINED, *ENSEMBLES]:
        for dataset in ("site", "site_all"):
            m = json.loads((matrix / f"results/runs/{name}/datasets/{dataset}/monitor.json").read_text())
            assert m["members"] == ENSEMBLES.get(name) and m["labelled"], (name, dataset)
            assert 0 <= m["ood"]["share"] <= 1 and m["features"]["domain"]["auroc"] > 0.5, (name, dataset)
            assert (matrix / f"results/runs/{name}/datasets/{dataset}/monitor.html").exists()
    board = pd.read_csv(matrix / "results/leaderboard.csv")
    assert board[["site_domain_auroc", "site_all_domain_auroc", "site_ood_share"]].notna().all().all()


# (That the finished run plans nothing is tests/test_demo_plans.py's test_nothing_to_do_after_the_demo:
# the same command on the same run.)
