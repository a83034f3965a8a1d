"""Snakemake entry point: a split's shard manifest and bad-image list (cxr14.shards.write_manifest)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import run_snakemake_script, shard_manifest

run_snakemake_script(
    snakemake,  # noqa: F821
    lambda config, sm: shard_manifest(config, sm.wildcards.split, sm.input, sm.output.manifest, sm.output.bad),
)
