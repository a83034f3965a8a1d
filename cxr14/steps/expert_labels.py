"""Step `expert_labels`: a run's AUROC against Google's 2019 expert labels of NIH test images, beside
the NIH labels (`assess.expert_comparison`), a step of its own where the labels are configured, whose
page the evaluate step's report on NIH links."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import prediction_table
from ..assess import expert_comparison
from ..calibration import calibrated
from ..files import json_safe, write_json
from ..report import render_expert_labels

log = logging.getLogger(__name__)


def expert_labels(*, predictions, calibration, labels, comparison, page, run: str, synthetic: bool = False) -> dict:
    """The run's NIH test `predictions` (calibrated with its NIH `calibration`) against the expert
    `labels` (Google 2019) beside the NIH ones, to `comparison` (JSON) and `page` (HTML)."""
    numbers = json_safe({"run": run, **expert_comparison(_nih_test(predictions, calibration), labels)})
    write_json(numbers, comparison)
    render_expert_labels(numbers, page, title=f"cxr14 expert labels: run {run} on NIH test", synthetic=synthetic)
    log.info("%s: against the expert labels on %d NIH test images", run, numbers["images"])
    return numbers


def _nih_test(predictions, calibration):
    """The run's NIH test rows, calibrated with its NIH calibration."""
    scored = prediction_table.read(predictions)
    return calibrated(scored, json.loads(Path(calibration).read_text())).query("split == 'test'").reset_index(drop=True)
