"""Snakemake entry point: fetch one metadata file (cxr14.download)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import download_metadata, run_snakemake_script

run_snakemake_script(snakemake, lambda config, sm: download_metadata(config, sm.wildcards.name, sm.output[0]))  # noqa: F821
