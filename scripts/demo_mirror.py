"""Rule `demo_mirror` -> cxr14.steps.demo.demo_mirror with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.demo import demo_mirror
from cxr14.workflow.step import run

run(demo_mirror, snakemake)  # noqa: F821
