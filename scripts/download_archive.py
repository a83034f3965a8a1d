"""Rule `download_archive` -> cxr14.steps.download.download_archive with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.steps.download import download_archive
from cxr14.workflow.step import run

run(download_archive, snakemake)  # noqa: F821
