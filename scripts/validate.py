"""Rule `validate` -> cxr14.validate.validate with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.runs import EvaluateSettings
from cxr14.step import run
from cxr14.validate import validate

run(validate, snakemake, settings=EvaluateSettings)  # noqa: F821
