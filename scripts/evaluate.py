"""Rule `evaluate` -> cxr14.evaluate.evaluate with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.evaluate import evaluate
from cxr14.runs import EvaluateSettings
from cxr14.step import run

run(evaluate, snakemake, settings=EvaluateSettings, threads=True)  # noqa: F821
