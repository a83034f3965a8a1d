"""Snakemake entry point: extract one archive's PNGs (cxr14.extract)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import extract, run_snakemake_script

run_snakemake_script(
    snakemake,  # noqa: F821
    lambda config, sm: extract(config, int(sm.wildcards.nn), sm.input[0], sm.output.images, sm.output.manifest),
)
