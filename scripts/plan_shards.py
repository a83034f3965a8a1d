"""Snakemake entry point: assign images to shards (cxr14.shards.plan)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import plan_shards, run_snakemake_script

run_snakemake_script(snakemake, lambda config, sm: plan_shards(config, sm.input[0], sm.output[0]))  # noqa: F821
