"""Rule `download_metadata` -> cxr14.download.download_metadata with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.download import download_metadata
from cxr14.step import run

run(download_metadata, snakemake)  # noqa: F821
