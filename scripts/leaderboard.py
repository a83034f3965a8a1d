"""Rule `leaderboard` -> cxr14.steps.leaderboard.leaderboard with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.leaderboard import leaderboard
from cxr14.workflow.step import run

run(
    leaderboard,
    snakemake,  # noqa: F821
    per_run=["evaluations", "predictions", "calibrations", "summaries", "reports"],
    per_dataset=["external_evaluations", "external_predictions", "external_reports", "monitors", "monitor_reports"],
)
