"""Rule `explain` -> cxr14.steps.explain.explain with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.settings import EvaluateSettings
from cxr14.steps.explain import explain
from cxr14.workflow.step import run

run(explain, snakemake, settings=EvaluateSettings, threads=True)  # noqa: F821
