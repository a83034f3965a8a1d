"""Rule `clean` -> cxr14.steps.clean.clean with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.clean import clean
from cxr14.workflow.step import run

run(clean, snakemake)  # noqa: F821
