"""Every figure the README and docs/ quote about the demo, read from the finished test run (conftest's
`workflow_run`: the test demo with the matrix's features; its `cnn-seed42` is the demo's `cnn`)
rather than typed by hand: each test finds the sentence that quotes
a figure (failing, with "update this test", when the sentence changed) and checks the figure against the
demo's files, within the tolerance the sentence gives. The full-size demo (`./run.sh demo`) trains on
more images and gives other figures; the pages say which demo a figure comes from."""

import json
import re

import pytest
import yaml

from conftest import FOCAL, REFERENCE, REPEAT, REPO, RUNS, SHARED_RUN_TIMEOUT

pytestmark = [pytest.mark.workflow, SHARED_RUN_TIMEOUT]

# The demo's runs (config/demo.yaml) as the test run has them: its three small runs, their ensemble, the
# fine-tune (which starts from the repeat cnn-seed43 there).
AS_TESTED = {"cnn": REFERENCE, "cnn_focal": FOCAL, "cnn_80px": "cnn_80px", "mean3": "mean4", "cnn_site": "cnn_site"}
TRAINED = ("cnn", "cnn_focal", "cnn_80px")


@pytest.fixture(scope="module")
def demo_run(workflow_run):
    return workflow_run


def _said(page: str, pattern: str) -> re.Match:
    """The match of `pattern` in `page` (README.md or docs/<name>.md), its lines joined by single spaces."""
    text = " ".join((REPO / page).read_text().split())
    found = re.search(pattern, text)
    assert found, f"{page} no longer says {pattern!r}: update this test with the page"
    return found


def _json(demo_run, path: str) -> dict:
    return json.loads((demo_run / "results" / path).read_text())


def _drop(demo_run, run: str, collection: str) -> tuple[float, list[float]]:
    """A run's drop in mean AUROC from NIH test to a collection, and its 95% CI (the external metrics.json's)."""
    drop = _json(demo_run, f"runs/{run}/datasets/{collection}/metrics.json")["drop"]
    return drop["diff"], drop["ci"]


def _board(demo_run):
    import pandas as pd

    return pd.read_csv(demo_run / "results/leaderboard.csv").set_index("run")


def test_the_readmes_mirror_has_its_archives(demo_run):
    archives = int(_said("README.md", r"\((\d+) archives of chest-like pictures")[1])
    assert len(list((demo_run / "results/download").glob("images_*.archive"))) == archives


def test_the_readmes_runs_are_the_demos(demo_run):
    """Three small runs, their ensemble and a fine-tune on the site (config/demo.yaml), each with its NIH
    and external report (in the test run)."""
    said = _said("README.md", r"(\w+) small runs and their ensemble, each with its NIH report .*? a fine-tune on")
    assert said[1] == {3: "three"}[len(TRAINED)]
    runs = yaml.safe_load((REPO / "config/demo.yaml").read_text())["runs"]
    assert list(runs) == [*TRAINED, "mean3", "cnn_site"] and runs["mean3"]["ensemble"] == list(TRAINED)
    assert runs["cnn_site"]["train"]["init"] == "cnn"
    for run in AS_TESTED.values():
        for collection in ("nih", "site"):
            assert (demo_run / f"results/runs/{run}/datasets/{collection}/report.html").is_file()


def test_the_readmes_drop_on_the_site(demo_run):
    """Each run loses mean AUROC on the site with a 95% CI above 0; `cnn`'s drop is the figure quoted."""
    _said("README.md", r"a drop in mean AUROC, with a CI that excludes 0\)")
    run, value, tolerance = _said("README.md", r"`(\w+)` drops by ([\d.]+) ± ([\d.]+) mean AUROC on the site").groups()
    for name in (*TRAINED, "mean3"):
        diff, ci = _drop(demo_run, AS_TESTED[name], "site")
        assert ci[0] > 0, (name, diff, ci)
    diff, _ = _drop(demo_run, AS_TESTED[run], "site")
    assert abs(diff - float(value)) <= float(tolerance), f"{run} drops by {diff:.3f} on the site"


def test_the_readmes_fine_tune_wins_back_more_than_half_the_drop(demo_run):
    _said("README.md", r"a fine-tune on the site that wins back more than half of the drop \(`cnn_site`\)")
    gain = _board(demo_run).loc["cnn_site", "site_gain_vs_start"]
    drop, _ = _drop(demo_run, REPEAT, "site")  # (the test run's fine-tune starts from the repeat)
    assert gain > drop / 2, (gain, drop)


def test_the_readmes_site_is_flagged_as_unlike_nih(demo_run):
    _said("README.md", r"every run is watched on both .*?, and the site is flagged as unlike NIH\.")
    for run in _board(demo_run).index:
        for collection in ("site", "site_images"):
            monitoring = _json(demo_run, f"runs/{run}/datasets/{collection}/monitor.json")
            assert monitoring["shifted"] and not monitoring["yardstick_shifted"], (run, collection)


def test_only_the_test_demos_fine_tune_takes_the_gpu_path(demo_run):
    """README and training.md: the full-size demo trains every run in float32 on the default strategy; the
    test demo's fine-tune on two simulated GPUs in mixed precision, through every step of `rule all`."""
    _said("README.md", r"Every run trains on the CPU in float32; the tests run a smaller copy")
    _said("README.md", r"whose fine-tune takes the GPU path on two simulated GPUs")
    _said("docs/training.md", r"the test demo runs its fine-tune `cnn_site` through every step of `rule all` on it")
    full = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    assert all("simulate_gpus" not in (spec.get("train") or {}) for spec in full["runs"].values())
    assert "simulate_gpus" not in full["train"]
    for run in (*(AS_TESTED[name] for name in TRAINED), "cnn_site"):
        device = _json(demo_run, f"runs/{run}/train/training_summary.json")["device"]
        if run == "cnn_site":
            assert (device["simulated_gpus"], device["replicas"], device["precision"]) == (2, 2, "mixed_float16")
        else:
            assert (device["gpus"], device["replicas"], device["precision"]) == (0, 1, "float32"), run
    for done in ("export/parity.json", "model_card.md", "datasets/site_images/monitor.html"):
        assert (demo_run / "results/runs/cnn_site" / done).is_file(), done


def test_the_yardstick_of_two_nih_val_halves_is_no_shift(demo_run):
    """monitoring.md: the yardstick's domain AUROC (two patient halves of NIH val), on average over the
    test demo's runs."""
    value, tolerance, count = _said(
        "docs/monitoring.md", r"test demo: a domain AUROC of ([\d.]+) ± ([\d.]+) on average over its (\w+) runs"
    ).groups()
    runs = list(_board(demo_run).index)
    assert runs == RUNS and count == {7: "seven"}[len(runs)]
    yardstick = [_json(demo_run, f"runs/{run}/datasets/site/monitor.json")["features"]["yardstick"] for run in runs]
    mean = sum(y["domain"]["auroc"] for y in yardstick) / len(yardstick)
    assert abs(mean - float(value)) <= float(tolerance), mean


def test_the_leaderboards_comparisons_and_replicates(demo_run):
    """experiments.md: the test demo's leaderboard.n_boot and the number of comparisons its page makes."""
    n_boot, comparisons = _said(
        "docs/experiments.md", r"the test demo's `leaderboard.n_boot: (\d+)` and its (\d+) comparisons"
    ).groups()
    config = yaml.safe_load((demo_run / "test.yaml").read_text())
    assert config["leaderboard"]["n_boot"] == int(n_boot)
    assert f"{comparisons}</b> comparisons" in (demo_run / "results/leaderboard.html").read_text()
    _said("docs/experiments.md", rf"the smallest p it can show is 2/{int(n_boot) + 1} = {2 / (int(n_boot) + 1):.4f}")
