"""Snakemake entry point: download one archive (cxr14.download)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import download_archive, run_snakemake_script

run_snakemake_script(
    snakemake,  # noqa: F821
    lambda config, sm: download_archive(config, int(sm.wildcards.nn), sm.output.archive, sm.output.checksum),
)
