"""Snakemake entry point: write one TFRecord shard (cxr14.shards.write_shard)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import run_snakemake_script, write_shard

run_snakemake_script(
    snakemake,  # noqa: F821
    lambda config, sm: write_shard(config, sm.input.plan, sm.wildcards.split, int(sm.wildcards.shard),
                                   "results/images", sm.output.shard, sm.output.info),
)
