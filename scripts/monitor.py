"""Rule `monitor` -> cxr14.steps.monitor.monitor with its rule's named files and params."""

import _package  # noqa: F401  (makes cxr14 importable)

from cxr14.settings import MonitorSettings
from cxr14.steps.monitor import monitor
from cxr14.workflow.step import run

run(monitor, snakemake, settings=MonitorSettings, lists=["features", "nih_features"])  # noqa: F821
