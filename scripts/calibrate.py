"""Rule `calibrate` -> cxr14.steps.calibrate.calibrate with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.calibrate import calibrate
from cxr14.workflow.step import run

run(calibrate, snakemake)  # noqa: F821
