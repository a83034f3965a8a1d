"""Snakemake entry point: train the model (cxr14.train)."""
import _package  # noqa: F401  (makes cxr14 importable)
from pathlib import Path

from cxr14.stages import run_snakemake_script, train

run_snakemake_script(
    snakemake,  # noqa: F821
    lambda config, sm: train(config, sm.input.train, sm.input.val, Path(sm.output.model).parent),
)
