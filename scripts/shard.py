"""Rule `shard` -> cxr14.steps.shards.shard with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.shards import shard
from cxr14.workflow.step import run

run(shard, snakemake)  # noqa: F821
