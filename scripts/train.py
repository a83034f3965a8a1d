"""Rule `train` -> cxr14.train.train with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.runs import TrainSettings
from cxr14.step import run
from cxr14.train import train

run(train, snakemake, settings=TrainSettings, threads=True, lists=["train_manifests", "val_manifests"])  # noqa: F821
