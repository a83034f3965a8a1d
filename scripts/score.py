"""Rule `score` -> cxr14.steps.score.score with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.score import score
from cxr14.workflow.step import run

run(score, snakemake, threads=True)  # noqa: F821
