"""Rule `download_metadata` -> cxr14.steps.download.download_metadata with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.download import download_metadata
from cxr14.workflow.step import run

run(download_metadata, snakemake)  # noqa: F821
