# Helpers shared by the rule files (the validated config, the archives in use, file names).
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The workflow imports the cxr14 package from this checkout.
sys.path.insert(0, workflow.basedir)

from cxr14 import config as cxr14_config
from cxr14.constants import (
    BBOX_LIST,
    EXPERT_LABELS,
    TEST_LIST,
    TRAIN_VAL_LIST,
    box_name,
)
from cxr14.download import archive_candidates, metadata_candidates
from cxr14.shards import shard_stem

# Once, for every job: strings from `--config` read as the schema's types, checked, defaults filled in.
cxr14_config.validate(config)

ARCHIVES = sorted(config["archives"])
NN = [f"{i:02d}" for i in ARCHIVES]  # the {nn} wildcard of each
DEMO = config.get("demo") is not None

# The metadata files by role; each is fetched to results/download/metadata/<name>.
METADATA = {
    "data_entry": config["data_entry"],
    "train_val_list": TRAIN_VAL_LIST,
    "test_list": TEST_LIST,
    "bbox_list": BBOX_LIST,
}
if config["expert_labels"]:
    METADATA["expert_labels"] = config["expert_labels"]


def metadata(role):
    """The downloaded metadata file of a role (`data_entry`, `test_list`, ...)."""
    return f"results/download/metadata/{METADATA[role]}"


def demo_source(name):
    """In the demo the mirror is made by the workflow, so a download depends on it."""
    return os.path.join(config["mirror"], name) if DEMO else []


def archive_entry(wildcards):
    return cxr14_config.catalog_entry(config, int(wildcards.nn))


def archive_sources(wildcards):
    """Where archive NN is fetched from: its official URL, or its Box then Kaggle name on the mirror."""
    return archive_candidates(
        int(wildcards.nn), archive_entry(wildcards), config["mirror"]
    )


def metadata_sources(wildcards):
    return metadata_candidates(wildcards.name, config["mirror"], config["metadata_dir"])


def shard_path(split, shard, num, root="results"):
    """A shard's files, less the suffix: results/shards/train/train-00003-of-00012 (or its log's)."""
    return f"{root}/shards/{split}/{shard_stem(split, shard, num)}"


SHARD = shard_path("{split}", "{shard}", "{num}")
SHARD_LOG = shard_path("{split}", "{shard}", "{num}", root="logs")
SHARD_BENCHMARK = shard_path("{split}", "{shard}", "{num}", root="benchmarks")
SHARD_MANIFESTS = expand(
    "results/shards/{split}/manifest.json", split=["train", "val", "test"]
)


def shard_infos(wildcards):
    """The shard sidecars of a split, known once the plan checkpoint has run."""
    import pandas as pd

    plan = pd.read_parquet(
        checkpoints.plan_shards.get().output.plan, columns=["split", "num_shards"]
    )
    num = plan.loc[plan.split == wildcards.split, "num_shards"]
    if num.empty:
        raise ValueError(f"split {wildcards.split} has no images: nothing to shard")
    n = int(num.iloc[0])
    return [f"{shard_path(wildcards.split, i, n)}.json" for i in range(n)]
