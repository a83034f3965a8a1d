"""Rule `ensemble` -> cxr14.steps.ensemble.ensemble with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.ensemble import ensemble
from cxr14.workflow.step import run

run(ensemble, snakemake, per_run=["member_predictions", "member_calibrations"])  # noqa: F821
