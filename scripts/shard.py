"""Rule `shard` -> cxr14.shards.shard with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.shards import shard
from cxr14.step import run

run(shard, snakemake)  # noqa: F821
