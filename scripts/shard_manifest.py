"""Rule `shard_manifest` -> cxr14.steps.shards.shard_manifest with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.shards import shard_manifest
from cxr14.workflow.step import run

run(shard_manifest, snakemake)  # noqa: F821
