"""Rule `ingest` -> cxr14.ingest.ingest with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.ingest import ingest
from cxr14.runs import DatasetSettings
from cxr14.step import run

run(ingest, snakemake, settings=DatasetSettings)  # noqa: F821
