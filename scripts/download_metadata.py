"""Rule `download_metadata` -> cxr14.download.download_metadata: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.download import download_metadata
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    download_metadata(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
