"""Rule `plan_dataset_shards` -> cxr14.steps.shards.plan_dataset_shards with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.shards import plan_dataset_shards
from cxr14.workflow.step import run

run(plan_dataset_shards, snakemake)  # noqa: F821
