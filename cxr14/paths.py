"""Every file the workflow writes, in one place: the rules, the steps, the CLI and the app spell their
`results/`, `logs/` and `benchmarks/` paths from here, and tests/test_paths.py fails on one spelt
anywhere else. Patterns hold Snakemake's wildcards: {nn} an archive, {name} a metadata file, {layout}
a shard layout (224px-raw), {group} a collection's split or its one group, {shard}/{num} a shard's
number and count, {run} a run, {dataset} a collection (`nih`, or one under the config's `datasets`).

A job's log and benchmark sit at the same place under `logs/` and `benchmarks/` (`log(rule)`,
`benchmark(rule)`), so one name leads from a rule to everything it wrote.
"""

from __future__ import annotations

from pathlib import PurePath

from .constants import NIH

# Download and extract NIH's archives.
ARCHIVE = "results/download/images_{nn}.archive"
ARCHIVE_CHECKSUM = "results/download/images_{nn}.sha256"
METADATA = "results/download/metadata/{name}"
EXTRACT = "results/extract"  # NIH's `root`: the folder its table's image paths are relative to
EXTRACTED = EXTRACT + "/images_{nn}"
EXTRACT_MANIFEST = EXTRACT + "/images_{nn}.manifest.tsv"

# A collection (NIH, made by `clean`, or an external one, made by `ingest`): its table, the report of
# what was kept, its shard plan and, per layout (224px-raw) and group (a split, or `images`), its
# shards, their manifest and the images that could not be read.
DATASETS = "results/datasets"
DATASET = DATASETS + "/{dataset}"
DATASET_TABLE = f"{DATASET}/images.parquet"
CLEANING_REPORT = f"{DATASET}/cleaning_report.json"  # NIH's
INGEST_REPORT = f"{DATASET}/ingest_report.json"  # an external collection's
# What ingest read from the DICOM headers of a collection whose tables give no sex or age: a cache, not
# an output (Snakemake would delete an output before the rerun that the cache is there to spare).
HEADER_CACHE = f"{DATASET}/dicom_headers.parquet"
SHARD_PLAN = f"{DATASET}/shards/plan.parquet"
GROUP_SHARDS = DATASET + "/shards/{layout}/{group}"
MANIFEST = f"{GROUP_SHARDS}/manifest.json"
BAD_IMAGES = f"{GROUP_SHARDS}/bad_images.tsv"

# A run's files: its training, its calibration and export, and per collection its scores and report.
RUN = "results/runs/{run}"
TRAIN = f"{RUN}/train"
MODEL = f"{TRAIN}/model.keras"
TRAINING_SUMMARY = f"{TRAIN}/training_summary.json"
HISTORY = f"{TRAIN}/history.csv"
CLASS_WEIGHTS = f"{TRAIN}/class_weights.json"
TENSORBOARD = f"{TRAIN}/tensorboard"
RESUME = f"{TRAIN}/resume"  # not an output: the state a killed training resumes from
MODEL_CARD = f"{RUN}/model_card.md"
MODEL_CARD_HTML = f"{RUN}/model_card.html"
CONVERTED = f"{RUN}/convert/model.onnx"  # the run's model as one ONNX graph: `score` runs it, `export` serves it
EXPORT = f"{RUN}/export"  # the run's model for serving outside cxr14
SAVED_MODEL = f"{EXPORT}/saved_model"
ONNX = f"{EXPORT}/model.onnx"
TFLITE = f"{EXPORT}/model.tflite"
SERVING = f"{EXPORT}/serving.json"
PARITY = f"{EXPORT}/parity.json"
# The run's out-of-distribution reference, from its (an ensemble's: its members') NIH features.
OOD_REFERENCE = f"{RUN}/ood_reference.npz"
ON = RUN + "/datasets/{dataset}"  # a run on a collection
PREDICTIONS = f"{ON}/predictions.parquet"
FEATURES = f"{ON}/features.npz"  # each scored image's embedding and pixel statistics (a trained run's)
MONITORING = f"{ON}/monitor.json"
MONITOR_REPORT = f"{ON}/monitor.html"
METRICS = f"{ON}/metrics.json"
REPORT = f"{ON}/report.html"
FIGURES = f"{ON}/figures"
# What only NIH has, each a step beside the judgement: a trained run's Grad-CAM and localisation against
# the boxes (`explain`), and its AUROC against the expert labels (`expert_labels`).
EXPLANATION = f"{ON}/explanation.json"
EXPLANATION_PAGE = f"{ON}/explanation.html"
EXPERT_LABELS = f"{ON}/expert_labels.json"
EXPERT_LABELS_PAGE = f"{ON}/expert_labels.html"
# A run's calibration and operating points on a site (NIH, or a split collection), fitted on its val split.
CALIBRATION = f"{ON}/calibration.json"
OPERATING_POINTS = f"{ON}/thresholds.json"

LEADERBOARD_CSV = "results/leaderboard.csv"
LEADERBOARD_HTML = "results/leaderboard.html"


def on(pattern: str, dataset: str) -> str:
    """A per-collection pattern for one collection, its other wildcards left: on(METRICS, "nih")."""
    return pattern.replace("{dataset}", dataset)


NIH_CALIBRATION = on(CALIBRATION, NIH)  # the run's own: every collection is judged with it too
THRESHOLDS = on(OPERATING_POINTS, NIH)


def shard_stem(split, shard, num_shards) -> str:
    """`train-00003-of-00012`, the one spelling of a shard's name. Numbers are zero-padded and
    wildcard names pass through unchanged, so the rules build their patterns from it too."""
    return f"{split}-{shard:0>5}-of-{num_shards:0>5}"


def shard(dataset, layout, group, shard, num) -> str:
    """A shard's files, less the suffix: results/datasets/nih/shards/224px-raw/train/train-00003-of-00012."""
    return GROUP_SHARDS.format(dataset=dataset, layout=layout, group=group) + "/" + shard_stem(group, shard, num)


SHARD = shard("{dataset}", "{layout}", "{group}", "{shard}", "{num}")

# Each rule's job, as the place of its log and benchmark under logs/ and benchmarks/.
JOBS = {
    "demo_mirror": "demo/mirror",
    "demo_site": "demo/site",
    "download_archive": "download/images_{nn}",
    "download_metadata": "download/metadata/{name}",
    "extract": "extract/images_{nn}",
    "clean": f"datasets/{NIH}/clean",
    "ingest": "datasets/{dataset}/ingest",
    "plan_shards": "datasets/{dataset}/shards/plan",
    "shard": SHARD.removeprefix("results/"),
    "shard_manifest": "datasets/{dataset}/shards/{layout}/{group}/manifest",
    "train": "runs/{run}/train/train",
    "score": "runs/{run}/datasets/{dataset}/score",
    "ensemble": "runs/{run}/datasets/{dataset}/ensemble",
    "calibrate": "runs/{run}/datasets/{dataset}/calibrate",
    "evaluate": "runs/{run}/datasets/{dataset}/evaluate",
    "explain": f"runs/{{run}}/datasets/{NIH}/explain",
    "expert_labels": f"runs/{{run}}/datasets/{NIH}/expert_labels",
    "monitor": "runs/{run}/datasets/{dataset}/monitor",
    "ood_reference": "runs/{run}/ood_reference",
    "leaderboard": "leaderboard/leaderboard",
    "model_card": "runs/{run}/model_card/model_card",
    "convert": "runs/{run}/convert/convert",
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
    """The collection a run's file under results/runs/<run>/datasets/<dataset>/ belongs to."""
    parts = PurePath(str(path)).parts
    if "datasets" not in parts[3:-1]:
        raise ValueError(f"{path} is not a run's file on a collection ({ON})")
    return parts[parts.index("datasets", 3) + 1]
