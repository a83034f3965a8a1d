"""Rule `export` -> cxr14.steps.export.export with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.export import export
from cxr14.workflow.step import run

run(export, snakemake, threads=True, lists=["calibrations", "thresholds"])  # noqa: F821
