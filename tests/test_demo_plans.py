"""What a change reruns, planned (`snakemake -n`) against the finished test demo (conftest's
`workflow_run`, shared with tests/test_demo.py and tests/test_matrix.py): a change to one run must rerun
that run alone (with its ensembles and the leaderboard), a change to the package's code must rerun the
steps that run it, and a config written differently must rerun nothing. Nothing here writes to the
run's folder: a change that is run for real runs on a copy."""

import copy
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import ENSEMBLES, REPO, RUNS, SHARED_RUN_TIMEOUT, SNAKEMAKE, TRAINED, planned_jobs, run

pytestmark = [pytest.mark.workflow, SHARED_RUN_TIMEOUT]

COLLECTIONS, SITES, EXTERNAL = 4, 2, 3  # nih, site, site_images, site_all; calibrated on nih and site
# A change to every calibration (the method, or the metrics code calibrate runs): every run recalibrated
# on each site, the ensembles (of calibrated members) averaged again, everything downstream redone.
EVERY_CALIBRATION = {
    "calibrate": len(RUNS) * SITES, "ensemble": len(ENSEMBLES) * COLLECTIONS, "evaluate": len(RUNS) * COLLECTIONS,
    "monitor": len(RUNS) * EXTERNAL, "leaderboard": 1, "model_card": len(RUNS), "export": len(TRAINED), "all": 1,
    # NIH's Grad-CAM (at the operating points calibrate chose) and the expert-label comparison.
    "explain": len(TRAINED), "expert_labels": len(RUNS),
    # An ensemble's reference reads its predictions (made from its members' calibrated logits) for the
    # patients of the val images that set its threshold.
    "ood_reference": len(ENSEMBLES),
}  # fmt: skip


# One trained run retrained, with the one ensemble that holds it: everything after training for both
# (Grad-CAM for the trained run alone).
ONE_RUN_AND_ITS_ENSEMBLE = {
    "train": 1, "convert": 1, "score": COLLECTIONS, "ensemble": COLLECTIONS, "calibrate": 2 * SITES,
    "evaluate": 2 * COLLECTIONS, "monitor": 2 * EXTERNAL, "leaderboard": 1, "model_card": 2, "export": 1, "all": 1,
    "ood_reference": 2, "explain": 1, "expert_labels": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(workflow_run):
    return workflow_run


def plan(demo_run, change: dict) -> dict[str, int]:
    """The jobs `snakemake -n` plans for the finished run with its test.yaml overridden by `change` (the
    change written outside the run's folder: other workers read it at the same time)."""
    with tempfile.TemporaryDirectory() as folder:
        changed = Path(folder) / "change.yaml"
        changed.write_text(yaml.safe_dump(change))
        return planned_jobs(run(demo_run, "-n", "--configfile", str(demo_run / "test.yaml"), str(changed)))


def test_nothing_to_do_after_the_demo(demo_run):
    assert planned_jobs(run(demo_run, "-n")) == {}


def test_adding_a_run_trains_and_evaluates_that_run_only(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_lr": {"train": {"learning_rate": 0.004}}}})
    assert jobs == {
        "train": 1, "convert": 1, "score": COLLECTIONS, "calibrate": SITES, "evaluate": COLLECTIONS,
        "monitor": EXTERNAL, "leaderboard": 1, "model_card": 1, "export": 1, "all": 1,
        "ood_reference": 1, "explain": 1, "expert_labels": 1,  # its reference, NIH's Grad-CAM, the expert labels
    }  # fmt: skip


def test_changing_one_runs_learning_rate_reruns_it_its_ensemble_and_the_leaderboard(demo_run):
    """cnn_80px (a member of mean4, not of mixed). (The demo changed cnn_focal's; here the focal-loss run
    is a sweep's, and a sweep's run changed is a run of another name.)"""
    jobs = plan(demo_run, {"runs": {"cnn_80px": {"train": {"learning_rate": 0.004}}}})
    assert jobs == ONE_RUN_AND_ITS_ENSEMBLE


def test_changing_the_starting_run_retrains_the_fine_tune_too(demo_run):
    """`cnn`'s two repeats (the second the fine-tune's start), the fine-tune, and both ensembles."""
    jobs = plan(demo_run, {"runs": {"cnn": {"train": {"learning_rate": 0.004}}}})
    runs = 3 + len(ENSEMBLES)
    assert jobs == {
        "train": 3, "convert": 3, "score": 3 * COLLECTIONS, "ensemble": len(ENSEMBLES) * COLLECTIONS,
        "calibrate": runs * SITES, "evaluate": runs * COLLECTIONS, "monitor": runs * EXTERNAL, "leaderboard": 1,
        "model_card": runs, "export": 3, "all": 1, "ood_reference": runs, "explain": 3, "expert_labels": runs,
    }  # fmt: skip


def test_changing_only_the_fine_tune_leaves_its_starting_run_alone(demo_run):
    config = yaml.safe_load((demo_run / "test.yaml").read_text())
    tuned = config["runs"]["cnn_site"]
    tuned["train"]["learning_rate"] = 0.001
    jobs = plan(demo_run, {"runs": {**config["runs"], "cnn_site": tuned}})
    assert jobs == ONE_RUN_AND_ITS_ENSEMBLE  # the fine-tune and `mixed`, the ensemble that holds it


def test_changing_one_runs_image_size_shards_that_size_once(demo_run):
    jobs = plan(demo_run, {"runs": {"cnn_80px": {"shards": {"image_size": 48}}}})
    shards = jobs.pop("shard")
    nih = demo_run / "results/datasets/nih/shards/80px-raw"
    site = demo_run / "results/datasets/site/shards/80px-raw"
    folders = [demo_run / f"results/datasets/{name}/shards/80px-raw/images" for name in ("site_images", "site_all")]
    assert shards == sum(len(list((nih / s).glob("*.tfrecord"))) for s in ("train", "val", "test")) + sum(
        len(list((site / s).glob("*.tfrecord"))) for s in ("train", "val", "test")
    ) + sum(len(list(folder.glob("*.tfrecord"))) for folder in folders)
    # NIH's splits, the site's (its train split: a run trains on the site, so every run keeps the embeddings of
    # its training images, for the references of the fine-tune's ensembles), the unsplit collections' one
    # group; then the run and its ensemble.
    assert jobs == {"shard_manifest": 3 + 3 + 1 + 1, **ONE_RUN_AND_ITS_ENSEMBLE}


def test_changing_the_calibration_method_recalibrates_without_retraining(demo_run):
    jobs = plan(demo_run, {"calibration": {"method": "platt"}})
    assert jobs == EVERY_CALIBRATION


def test_removing_a_run_removes_its_row_from_the_leaderboard(demo_run, tmp_path):
    """On a copy of the finished demo, so the other tests keep theirs as it was."""
    import pandas as pd

    copy = tmp_path / "demo"
    shutil.copytree(demo_run, copy, symlinks=True)
    config = yaml.safe_load((copy / "test.yaml").read_text())
    del config["runs"]["mean4"]
    (copy / "test.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert planned_jobs(run(copy, "-n")) == {"leaderboard": 1, "all": 1}
    run(copy)
    assert list(pd.read_csv(copy / "results/leaderboard.csv").run) == [r for r in RUNS if r != "mean4"]
    assert list(pd.read_csv(demo_run / "results/leaderboard.csv").run) == RUNS


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
    assert _plan_with(demo_run, variant)["train"] == len(TRAINED)


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory, workflow_run):
    """A copy of the workflow's source (Snakefile, rules, scripts, the package, profiles) to edit; as
    copied, it plans nothing for the finished run (each edit is undone after its test)."""
    src = tmp_path_factory.mktemp("source")
    for name in ("Snakefile", "config.yaml", "rules", "scripts", "cxr14", "profiles", "envs", "report"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(
            REPO / name,
            src / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if (REPO / name).is_dir() else {}),
        )
    assert _plan_with(workflow_run, workflow_run / "test.yaml", src / "Snakefile") == {}  # the copy is the same code
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
            # calibrate chooses its operating points with metrics, and the ensembles average calibrated scores;
            # every reference splits its val patients with the monitor's statistics (shift, on metrics)
            {**EVERY_CALIBRATION, "ood_reference": len(RUNS)},
        ),
        # The calibration maths (a change of code, not of behaviour): calibrate and what follows it, no
        # shard, training, conversion or scoring job.
        (
            "calibration",
            ('METHODS = ("temperature", "platt", "isotonic")', 'METHODS = tuple(["temperature", "platt", "isotonic"])'),
            EVERY_CALIBRATION,
        ),
        # A new path: no step's code holds paths.py (the rules hand every path to the steps).
        (
            "paths",
            (
                'OOD_REFERENCE = f"{RUN}/ood_reference.npz"\n',
                'OOD_REFERENCE = f"{RUN}/ood_reference.npz"\nNEW = f"{RUN}/new.json"\n',
            ),
            {},
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
    ids=[
        "metrics-code",
        "calibration-code",
        "paths-new-name",
        "app-code",
        "metrics-docstring-and-comment",
        "metrics-formatting",
    ],  # fmt: skip
)
def test_a_change_to_the_package_reruns_the_steps_that_run_it(demo_run, source_copy, module, edit, expected):
    path = source_copy / "cxr14" / f"{module}.py"
    original = path.read_text()
    old, new = edit
    assert original.count(old) == 1, f"{module}.py no longer has {old!r}: update this test"
    path.write_text(original.replace(old, new))
    try:
        assert _plan_with(demo_run, demo_run / "test.yaml", source_copy / "Snakefile") == expected
    finally:
        path.write_text(original)
