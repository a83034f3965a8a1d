"""Rule `expert_labels` -> cxr14.steps.expert_labels.expert_labels with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.expert_labels import expert_labels
from cxr14.workflow.step import run

run(expert_labels, snakemake)  # noqa: F821
