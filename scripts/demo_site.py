"""Rule `demo_site` -> cxr14.steps.demo.demo_site with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.demo import demo_site
from cxr14.workflow.step import run

run(demo_site, snakemake)  # noqa: F821
