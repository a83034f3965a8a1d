"""Rule `dataset_shard` -> cxr14.steps.shards.dataset_shard with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.shards import dataset_shard
from cxr14.workflow.step import run

run(dataset_shard, snakemake)  # noqa: F821
