"""Rule `convert` -> cxr14.steps.convert.convert with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.convert import convert
from cxr14.workflow.step import run

run(convert, snakemake)  # noqa: F821
