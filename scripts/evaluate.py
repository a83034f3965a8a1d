"""Snakemake entry point: evaluate the model and render the report (cxr14.evaluate, cxr14.report)."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.stages import evaluate, run_snakemake_script


def _run(config, sm):
    i = sm.input
    evaluate(config, i.model, i.val, i.test, i.table, i.cleaning_report, i.boxes, i.expert or None,
             sm.output.figures.rsplit("/", 1)[0])


run_snakemake_script(snakemake, _run)  # noqa: F821
