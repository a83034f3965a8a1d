"""Rule `leaderboard` -> cxr14.leaderboard.leaderboard: the rule's named input, output and params are its keyword arguments."""
import _package  # noqa: F401  (makes cxr14 importable)
from cxr14.leaderboard import leaderboard
from cxr14.logs import logged

with logged(snakemake.log[0]):  # noqa: F821
    leaderboard(**snakemake.input, **snakemake.output, **snakemake.params)  # noqa: F821
