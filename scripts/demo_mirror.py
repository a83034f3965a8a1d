"""Rule `demo_mirror` -> cxr14.demo.demo_mirror: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.demo import demo_mirror
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    demo_mirror(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
