"""Rule `download_archive` -> cxr14.download.download_archive: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.download import download_archive
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    download_archive(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
