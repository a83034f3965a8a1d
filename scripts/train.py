"""Rule `train` -> cxr14.steps.train.train with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.settings import TrainSettings
from cxr14.steps.train import train
from cxr14.workflow.step import run

run(train, snakemake, settings=TrainSettings, threads=True, lists=["train_manifests", "val_manifests"])  # noqa: F821
