"""Rule `evaluate` -> cxr14.steps.evaluate.evaluate with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.settings import EvaluateSettings
from cxr14.steps.evaluate import evaluate
from cxr14.workflow.step import run

run(evaluate, snakemake, settings=EvaluateSettings)  # noqa: F821
