"""Rule `train` -> cxr14.train.train: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.train import train
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    train(**snakemake.input, **snakemake.output, **snakemake.params, threads=snakemake.threads)  # noqa: F821
