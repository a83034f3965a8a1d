"""Rule `extract` -> cxr14.extract.extract with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.extract import extract
from cxr14.step import run

run(extract, snakemake)  # noqa: F821
