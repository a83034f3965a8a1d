"""Rule `score` -> cxr14.evaluate.score: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.evaluate import score
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    score(**snakemake.input, **snakemake.output, **snakemake.params, threads=snakemake.threads)  # noqa: F821
