"""Rule `clean` -> cxr14.clean.clean with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.clean import clean
from cxr14.step import run

run(clean, snakemake)  # noqa: F821
