"""Every file the workflow writes, in one place: the rules, the steps, the CLI and the app spell their
`results/`, `logs/` and `benchmarks/` paths from here, and tests/test_paths.py fails on one spelt
anywhere else. Patterns hold Snakemake's wildcards: {nn} an archive, {name} a metadata file, {layout}
a shard layout (224px-raw), {split}/{group} a split or a collection's group, {shard}/{num} a shard's
number and count, {run} a run, {dataset} an external collection.

A job's log and benchmark sit at the same place under `logs/` and `benchmarks/` (`log(rule)`,
`benchmark(rule)`), so one name leads from a rule to everything it wrote.
"""

from __future__ import annotations

from pathlib import PurePath

# Download, extract, clean.
ARCHIVE = "results/download/images_{nn}.archive"
ARCHIVE_CHECKSUM = "results/download/images_{nn}.sha256"
METADATA = "results/download/metadata/{name}"
EXTRACTED = "results/extract/images_{nn}"
EXTRACT_MANIFEST = "results/extract/images_{nn}.manifest.tsv"
CLEAN_TABLE = "results/clean/images.parquet"
CLEANING_REPORT = "results/clean/cleaning_report.json"

# NIH's shards: a plan, then per layout and split the shards, a manifest and the bad images.
SHARDS = "results/shards"
SHARD_PLAN = f"{SHARDS}/plan.parquet"
SPLIT_SHARDS = SHARDS + "/{layout}/{split}"
MANIFEST = f"{SPLIT_SHARDS}/manifest.json"
BAD_IMAGES = f"{SPLIT_SHARDS}/bad_images.tsv"

# An external collection: its harmonised table, ingest report and shards (per group).
DATASETS = "results/datasets"
DATASET = DATASETS + "/{dataset}"
DATASET_TABLE = f"{DATASET}/images.parquet"
INGEST_REPORT = f"{DATASET}/ingest_report.json"
DATASET_SHARD_PLAN = f"{DATASET}/shards/plan.parquet"
GROUP_SHARDS = DATASET + "/shards/{layout}/{group}"
DATASET_MANIFEST = f"{GROUP_SHARDS}/manifest.json"
DATASET_BAD_IMAGES = f"{GROUP_SHARDS}/bad_images.tsv"

# A run's files.
RUN = "results/runs/{run}"
TRAIN = f"{RUN}/train"
MODEL = f"{TRAIN}/model.keras"
TRAINING_SUMMARY = f"{TRAIN}/training_summary.json"
HISTORY = f"{TRAIN}/history.csv"
CLASS_WEIGHTS = f"{TRAIN}/class_weights.json"
TENSORBOARD = f"{TRAIN}/tensorboard"
RESUME = f"{TRAIN}/resume"  # not an output: the state a killed training resumes from
EVALUATE = f"{RUN}/evaluate"
PREDICTIONS = f"{EVALUATE}/predictions.parquet"
METRICS = f"{EVALUATE}/metrics.json"
THRESHOLDS = f"{EVALUATE}/thresholds.json"
REPORT = f"{EVALUATE}/report.html"
FIGURES = f"{EVALUATE}/figures"
CALIBRATION = f"{RUN}/calibrate/calibration.json"
MODEL_CARD = f"{RUN}/model_card.md"
MODEL_CARD_HTML = f"{RUN}/model_card.html"
EXPORT = f"{RUN}/export"  # the run's model for serving outside cxr14
SAVED_MODEL = f"{EXPORT}/saved_model"
ONNX = f"{EXPORT}/model.onnx"
TFLITE = f"{EXPORT}/model.tflite"
SERVING = f"{EXPORT}/serving.json"
PARITY = f"{EXPORT}/parity.json"
# A run on an external collection.
EXTERNAL = RUN + "/external/{dataset}"
EXTERNAL_PREDICTIONS = f"{EXTERNAL}/predictions.parquet"
EXTERNAL_METRICS = f"{EXTERNAL}/metrics.json"
EXTERNAL_REPORT = f"{EXTERNAL}/report.html"
EXTERNAL_FIGURES = f"{EXTERNAL}/figures"

LEADERBOARD_CSV = "results/leaderboard.csv"
LEADERBOARD_HTML = "results/leaderboard.html"


def shard_stem(split, shard, num_shards) -> str:
    """`train-00003-of-00012`, the one spelling of a shard's name. Numbers are zero-padded and
    wildcard names pass through unchanged, so the rules build their patterns from it too."""
    return f"{split}-{shard:0>5}-of-{num_shards:0>5}"


def shard(layout, split, shard, num) -> str:
    """A shard's files, less the suffix: results/shards/224px-raw/train/train-00003-of-00012."""
    return f"{SHARDS}/{layout}/{split}/{shard_stem(split, shard, num)}"


def dataset_shard(dataset, layout, group, shard, num) -> str:
    """A collection's shard, less the suffix: results/datasets/site/shards/224px-raw/images/images-00000-of-00001."""
    return f"{DATASETS}/{dataset}/shards/{layout}/{group}/{shard_stem(group, shard, num)}"


SHARD = shard("{layout}", "{split}", "{shard}", "{num}")
DATASET_SHARD = dataset_shard("{dataset}", "{layout}", "{group}", "{shard}", "{num}")

# Each rule's job, as the place of its log and benchmark under logs/ and benchmarks/.
JOBS = {
    "demo_mirror": "demo/mirror",
    "demo_site": "demo/site",
    "download_archive": "download/images_{nn}",
    "download_metadata": "download/metadata/{name}",
    "extract": "extract/images_{nn}",
    "clean": "clean/clean",
    "plan_shards": "shards/plan",
    "shard": SHARD.removeprefix("results/"),
    "shard_manifest": "shards/{layout}/{split}/manifest",
    "ingest": "datasets/{dataset}/ingest",
    "plan_dataset_shards": "datasets/{dataset}/shards/plan",
    "dataset_shard": DATASET_SHARD.removeprefix("results/"),
    "dataset_shard_manifest": "datasets/{dataset}/shards/{layout}/{group}/manifest",
    "train": "runs/{run}/train/train",
    "score": "runs/{run}/evaluate/score",
    "ensemble": "runs/{run}/evaluate/ensemble",
    "calibrate": "runs/{run}/calibrate/calibrate",
    "evaluate": "runs/{run}/evaluate/evaluate",
    "score_external": "runs/{run}/external/{dataset}/score_external",
    "ensemble_external": "runs/{run}/external/{dataset}/ensemble_external",
    "validate": "runs/{run}/external/{dataset}/validate",
    "leaderboard": "leaderboard/leaderboard",
    "model_card": "runs/{run}/model_card/model_card",
    "export": "runs/{run}/export/export",
    "app": "app/app",
}


def log(rule: str) -> str:
    return f"logs/{JOBS[rule]}.log"


def benchmark(rule: str) -> str:
    return f"benchmarks/{JOBS[rule]}.tsv"


def run_of(path) -> str:
    """The run a file under results/runs/<run>/ belongs to."""
    prefix = RUN.split("{run}")[0]
    path = str(path)
    if not path.startswith(prefix):
        raise ValueError(f"{path} is not a run's file (under {prefix})")
    return path[len(prefix) :].split("/", 1)[0]


def dataset_of(path) -> str:
    """The collection a run's file under results/runs/<run>/external/<dataset>/ belongs to."""
    parts = PurePath(str(path)).parts
    if "external" not in parts[3:-1]:
        raise ValueError(f"{path} is not a run's file on an external collection ({EXTERNAL})")
    return parts[parts.index("external", 3) + 1]
