"""Snakemake entry point: build the synthetic phantom mirror (cxr14.demo)."""
import _package  # noqa: F401  (makes cxr14 importable)
from pathlib import Path

from cxr14.stages import demo_mirror, run_snakemake_script

run_snakemake_script(snakemake, lambda config, sm: demo_mirror(config, Path(sm.output.archives[0]).parent))  # noqa: F821
