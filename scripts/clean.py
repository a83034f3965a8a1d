"""Snakemake entry point: clean the metadata to Parquet (cxr14.metadata)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import clean, run_snakemake_script


def _run(config, sm):
    manifests = {int(p.rsplit("images_", 1)[1][:2]): p for p in sm.input.manifests}
    clean(config, sm.input.data_entry, sm.input.train_val, sm.input.test, manifests, sm.output.table, sm.output.report)


run_snakemake_script(snakemake, _run)  # noqa: F821
