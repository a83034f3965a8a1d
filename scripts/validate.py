"""Rule `validate` -> cxr14.steps.validate.validate with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.validate import validate
from cxr14.workflow.runs import EvaluateSettings
from cxr14.workflow.step import run

run(validate, snakemake, settings=EvaluateSettings)  # noqa: F821
