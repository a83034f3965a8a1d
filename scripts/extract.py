"""Rule `extract` -> cxr14.steps.extract.extract with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.extract import extract
from cxr14.workflow.step import run

run(extract, snakemake)  # noqa: F821
