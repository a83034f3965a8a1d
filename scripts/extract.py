"""Rule `extract` -> cxr14.extract.extract: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.extract import extract
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    extract(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
