"""Rule `score_external` -> cxr14.steps.score.score_external with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.score import score_external
from cxr14.workflow.step import run

run(score_external, snakemake, threads=True)  # noqa: F821
