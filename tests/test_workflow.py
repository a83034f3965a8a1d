"""The Snakemake DAG itself: dry runs, a tiny real run of the data stages, and what a change reruns."""

import subprocess

import pandas as pd
import pytest
import yaml

from conftest import SHARD_TARGETS, SNAKEMAKE, planned_jobs, rerun_plan, run, tiny_config


# The dry runs (planning, refusing a bad config) are in the fast tier; the tests that run the workflow
# for real (the tiny run below, a second run beside a first) are marked `workflow` (docs/testing.md).
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A finished tiny run of the data and shard stages (module-scoped: it takes a few seconds)."""
    wd = tmp_path_factory.mktemp("wf")
    (wd / "test.yaml").write_text(yaml.safe_dump(tiny_config()))
    run(wd, *SHARD_TARGETS)
    return wd


def test_dry_run_plans_one_job_per_archive(tmp_path):
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tiny_config(archives=(1, 2, 3))))
    jobs = planned_jobs(run(tmp_path, "-n", "results/datasets/nih/images.parquet"))
    assert jobs["download_archive"] == 3 and jobs["extract"] == 3 and jobs["clean"] == 1


def test_dry_run_on_the_real_config_needs_no_network(tmp_path):
    (tmp_path / "test.yaml").write_text("{}\n")
    jobs = planned_jobs(run(tmp_path, "-n", "results/datasets/nih/images.parquet"))
    assert jobs["download_archive"] == 12 and jobs["extract"] == 12


@pytest.mark.parametrize(
    "config, message",
    [
        ({"archives": [13]}, "13 is greater than the maximum of 12"),
        ({"runs": {"a": {"train": {"learnig_rate": 0.1}}}}, "run 'a': unknown train key(s) ['learnig_rate']"),
        ({"runs": {"shards": {}}}, "run name 'shards' is not allowed"),
        ({"runs": {"a": {}, "e": {"ensemble": ["a", "b"]}}}, "ensemble 'e': member 'b' is not a trained run"),
        ({"train": {"epoch": 3}}, "'epoch' was unexpected"),
        ({"shards": {"image_size": "big"}}, "'big' is not of type 'integer'"),
    ],
)
def test_bad_config_is_refused_naming_the_key(tmp_path, config, message):
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(config))
    proc = run(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


def test_config_from_the_shell_is_read_as_the_schema_types(tmp_path):
    """`--config` values arrive as strings (Snakemake reads them with YAML's BaseLoader)."""
    (tmp_path / "test.yaml").write_text("{}\n")
    jobs = planned_jobs(
        run(
            tmp_path,
            "-n",
            "results/datasets/nih/images.parquet",
            "--config",
            "archives=[1,2]",
            "train={epochs: 2, cache: true, learning_rate: 1e-3}",
            "mirror=null",
        )
    )
    assert jobs["download_archive"] == 2 and jobs["extract"] == 2


@pytest.mark.workflow
def test_tiny_run_writes_the_table_and_report(workdir):
    table = pd.read_parquet(workdir / "results/datasets/nih/images.parquet")
    assert len(table) == 24 and set(table.archive) == {1, 2}
    assert (workdir / "results/download/images_01.sha256").read_text().endswith("images_01.tar.gz\n")
    assert sorted(p.name for p in (workdir / "results/extract").iterdir())[:2] == [
        "images_01",
        "images_01.manifest.tsv",
    ]
    assert (workdir / "logs/extract/images_02.log").exists()
    assert (workdir / "benchmarks/download/images_01.tsv").exists()


UPSTREAM_OF_CLEAN = {"download_archive", "download_metadata", "extract", "demo_mirror"}


@pytest.mark.workflow
def test_nothing_to_do_after_a_finished_run(workdir):
    assert planned_jobs(run(workdir, "-n", *SHARD_TARGETS)) == {}


@pytest.mark.workflow
def test_changing_a_clean_parameter_reruns_clean_and_what_follows(workdir):
    jobs = rerun_plan(workdir, {"clean": {"val_fraction": 0.3}})
    assert jobs.get("clean") == 1 and jobs.get("plan_shards") == 1
    assert not UPSTREAM_OF_CLEAN & set(jobs)


@pytest.mark.workflow
def test_a_new_image_size_is_sharded_once_beside_the_old_shards(workdir):
    new = [target.replace("32px", "48px") for target in SHARD_TARGETS]
    jobs = rerun_plan(workdir, {"shards": {"image_size": 48}}, new)
    assert planned_jobs(run(workdir, "-n", *SHARD_TARGETS)) == {}  # the 32-px shards stay as they are
    n_shards = sum(
        len(list((workdir / "results/datasets/nih/shards/32px-raw" / s).glob("*.tfrecord")))
        for s in ("train", "val", "test")
    )
    assert jobs.get("shard") == n_shards > 3 and jobs.get("shard_manifest") == 3
    assert not (UPSTREAM_OF_CLEAN | {"clean", "plan_shards"}) & set(jobs)


# The tiny run's data files, recorded before the redesign of #18 (which was to change no output) and
# kept: a change here is a change to every user's data, to be made on purpose. #28 moved them (NIH is a
# collection under results/datasets/) and gave NIH's tables an ingested collection's two more
# columns; #31 gave every collection's table a `study_date` (blank in NIH's). Without those, the tables
# are as recorded, and the shards did not change at all.
ADDED_IN_28 = ("path", "patient")
ADDED_IN_31 = ("study_date",)
WITH_THE_ADDED_COLUMNS = {  # (before #31's column: 2425612b3d081f56 and 42e39f30bc406a9e, unchanged without it)
    "results/datasets/nih/images.parquet": "9cd958ffce7b75f7",
    "results/datasets/nih/shards/plan.parquet": "7602e92607d565e5",
}
RECORDED = {
    "results/datasets/nih/images.parquet": "d7cee6f632a9242f",
    "results/datasets/nih/shards/plan.parquet": "d15dd4494a393d0d",
    "results/datasets/nih/shards/32px-raw/test/test-00000-of-00002.tfrecord": "14c53f6be68ef242",
    "results/datasets/nih/shards/32px-raw/test/test-00001-of-00002.tfrecord": "9d4f84d1db44d554",
    "results/datasets/nih/shards/32px-raw/train/train-00000-of-00003.tfrecord": "97881e0cdcc27e91",
    "results/datasets/nih/shards/32px-raw/train/train-00001-of-00003.tfrecord": "f411daea1f2ae18f",
    "results/datasets/nih/shards/32px-raw/train/train-00002-of-00003.tfrecord": "c1030df7e23c6132",
    "results/datasets/nih/shards/32px-raw/val/val-00000-of-00002.tfrecord": "a4a6931c403ea86c",
    "results/datasets/nih/shards/32px-raw/val/val-00001-of-00002.tfrecord": "69081665fe413965",
}


def content_digest(path, without=()) -> str:
    """A file's content, independent of the writer library's version: a Parquet table's columns (less
    those `without`), dtypes and values; a TFRecord shard's records, each feature's values in key order."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    if str(path).endswith(".parquet"):
        table = pd.read_parquet(path).drop(columns=list(without))
        digest.update(repr(list(table.dtypes.astype(str).items())).encode())
        digest.update(table.to_csv(index=False).encode())
    else:
        import tensorflow as tf

        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            for key in sorted(example.features.feature):
                feature = example.features.feature[key]
                kind = feature.WhichOneof("kind")
                digest.update(f"{key}:{kind}:{list(getattr(feature, kind).value)!r}".encode())
    return digest.hexdigest()[:16]


@pytest.mark.workflow
def test_the_data_files_are_as_recorded(workdir):
    made = sorted(
        str(p.relative_to(workdir)) for p in (workdir / "results/datasets/nih/shards/32px-raw").rglob("*.tfrecord")
    )
    assert made == sorted(k for k in RECORDED if k.endswith(".tfrecord"))
    assert {
        path: content_digest(workdir / path, ADDED_IN_28 + ADDED_IN_31 if path.endswith(".parquet") else ())
        for path in RECORDED
    } == RECORDED
    assert {path: content_digest(workdir / path) for path in WITH_THE_ADDED_COLUMNS} == WITH_THE_ADDED_COLUMNS


@pytest.mark.workflow
def test_shards_of_the_tiny_run(workdir):
    import json

    total = 0
    for split in ("train", "val", "test"):
        manifest = json.loads((workdir / f"results/datasets/nih/shards/32px-raw/{split}/manifest.json").read_text())
        assert manifest["image_size"] == 32 and all(s["images"] <= 4 for s in manifest["shards"])
        total += manifest["images"] + manifest["bad_images"]
    assert total == len(pd.read_parquet(workdir / "results/datasets/nih/images.parquet"))


@pytest.mark.workflow
def test_one_step_alone_is_a_snakemake_target(workdir):
    proc = run(workdir, "-n", "-f", "results/datasets/nih/shards/32px-raw/val/manifest.json")
    assert planned_jobs(proc) == {"shard_manifest": 1}


@pytest.mark.workflow
def test_a_second_run_in_the_same_folder_is_refused_and_the_first_finishes(tmp_path):
    import signal
    import time

    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tiny_config()))
    cmd = [
        *SNAKEMAKE,
        "-d",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "test.yaml"),
        "--cores",
        "1",
        "results/datasets/nih/images.parquet",
    ]
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    locks = tmp_path / ".snakemake/locks"
    deadline = time.time() + 120
    while not (locks.is_dir() and any(locks.iterdir())):  # the first run holds the lock once it has started
        assert first.poll() is None and time.time() < deadline, "the first run ended before it locked"
        time.sleep(0.2)
    first.send_signal(signal.SIGSTOP)  # paused, still holding the lock, however fast this machine is
    try:
        second = run(tmp_path, "results/datasets/nih/images.parquet", check=False)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode != 0 and "Directory cannot be locked" in second.stdout + second.stderr
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-3000:]
    assert len(pd.read_parquet(tmp_path / "results/datasets/nih/images.parquet")) == 24
