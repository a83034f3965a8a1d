"""Rule `ood_reference` -> cxr14.steps.ood_reference.ood_reference with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.ood_reference import ood_reference
from cxr14.workflow.step import run

run(ood_reference, snakemake, lists=["features", "predictions"])  # noqa: F821
