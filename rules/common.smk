import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The Snakefile itself imports the cxr14 package from this checkout.
sys.path.insert(0, workflow.basedir)

from cxr14 import config as cxr14_config
from cxr14.stages import metadata_files

cxr14_config.validate(config)

ARCHIVES = [f"{i:02d}" for i in sorted(config["archives"])]
METADATA_FILES = metadata_files(config)
DEMO = bool(config.get("demo"))


wildcard_constraints:
    nn=r"\d{2}",


def demo_source(name):
    """In the demo the mirror is made by the workflow, so the download depends on it."""
    return os.path.join(config["mirror"], name) if DEMO else []


wildcard_constraints:
    split="train|val|test",
    shard=r"\d{5}",
    num=r"\d{5}",


def shard_infos(wildcards):
    """The shard sidecars of a split, known once the plan checkpoint has run."""
    import pandas as pd

    plan = pd.read_parquet(
        checkpoints.plan_shards.get().output[0], columns=["split", "num_shards"]
    )
    num = plan.loc[plan.split == wildcards.split, "num_shards"]
    if num.empty:
        raise ValueError(f"split {wildcards.split} has no images: nothing to shard")
    n = int(num.iloc[0])
    s = wildcards.split
    return [f"results/shards/{s}/{s}-{i:05d}-of-{n:05d}.json" for i in range(n)]


SHARD_MANIFESTS = expand(
    "results/shards/{split}/manifest.json", split=["train", "val", "test"]
)

EXPERT_INPUT = (
    f"results/download/metadata/{config['expert_labels']}"
    if config.get("expert_labels")
    else []
)
