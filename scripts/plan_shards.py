"""Rule `plan_shards` -> cxr14.steps.shards.plan_shards with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.shards import plan_shards
from cxr14.workflow.step import run

run(plan_shards, snakemake)  # noqa: F821
