"""Rule `model_card` -> cxr14.steps.model_card.model_card with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.model_card import model_card
from cxr14.workflow.step import run

run(
    model_card,
    snakemake,  # noqa: F821
    per_dataset=["external_evaluations", "monitors"],
    lists=["calibrations", "thresholds"],
)
