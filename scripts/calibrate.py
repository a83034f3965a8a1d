"""Rule `calibrate` -> cxr14.calibrate.calibrate: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.calibrate import calibrate
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    calibrate(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
