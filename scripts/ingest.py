"""Rule `ingest` -> cxr14.steps.ingest.ingest with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.settings import DatasetSettings
from cxr14.steps.ingest import ingest
from cxr14.workflow.step import run

run(ingest, snakemake, settings=DatasetSettings)  # noqa: F821
