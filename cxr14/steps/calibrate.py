"""Step `calibrate`: a run's calibration (see `cxr14.calibration`) and operating points on one site,
both fitted on that collection's val split: NIH's, or a split collection's own (patients never in its
test split). `cxr14 predict --site`, the app, the exports and the reports all use them by site."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .. import metrics, prediction_table
from ..calibration import apply, fit_table, loss_offsets
from ..constants import FINDINGS
from ..files import sha256_file, write_json

log = logging.getLogger(__name__)


def calibrate(
    *,
    predictions,
    table,
    summary,
    calibration,
    thresholds,
    site: str,
    method: str,
    min_positives: int,
    tta: bool,
    targets: dict,
) -> dict:
    """Step `calibrate`: per finding, the map fitted on the run's val predictions on `site` to
    `calibration` (JSON), with the training prevalence of each finding (from NIH's `table`: the base
    rate the app shows beside a probability), whether scores are test-time augmented, and the sha256
    of the model it belongs to (`summary`: the run's training summary; None for an ensemble, whose
    members are calibrated already); then the operating points chosen on the calibrated val
    probabilities to `thresholds`: max F1, Youden's J, and the sensitivity and specificity `targets`."""
    val = prediction_table.read(predictions, "val")
    if val.empty:
        raise ValueError(f"{predictions}: no val rows to fit the calibration on")
    clean = pd.read_parquet(table, columns=["split", *FINDINGS])
    train = clean[clean.split == "train"]
    trained = json.loads(Path(summary).read_text()) if summary else None
    fitted = fit_table(val, method, min_positives, loss_offsets(trained))
    result = {
        "site": site,
        "method": method,
        "fitted_on": f"{site} val",
        "val_images": int(len(val)),
        "min_positives": min_positives,
        "tta": tta,
        "model_sha256": trained and trained["model_sha256"],
        "loss": trained and trained["config"]["loss"],
        "predictions_sha256": sha256_file(predictions),
        "base_rate": {f: float(train[f].mean()) for f in FINDINGS},
        "train_images": int(len(train)),
        "shared": fitted["shared"],  # every other finding has a map of its own
        "shared_temperature": fitted["shared_temperature"],
        "findings": fitted["findings"],
    }
    write_json(result, calibration)
    write_json(operating_points(val, result, site, targets), thresholds)
    log.info(
        "%s: %s calibration on %d val images; with the shared temperature (too few val positives): %s",
        site,
        method,
        len(val),
        ", ".join(result["shared"]) or "none",
    )
    return result


def operating_points(val: pd.DataFrame, calibration: dict, site: str, targets: dict) -> dict:
    """{rule: {finding: threshold}} chosen on the val rows' calibrated probabilities (a finding
    nobody in val labels gets 0.5), with where and for which targets."""
    probabilities = apply(calibration, prediction_table.logits(val))
    chosen = {rule: {} for rule in metrics.OPERATING_RULES}
    for k, f in enumerate(FINDINGS):
        y = val[prediction_table.label(f)].to_numpy()
        known = metrics.labelled(y)
        points = (
            metrics.thresholds(y[known], probabilities[known, k], **targets)
            if known.any()
            else dict.fromkeys(metrics.OPERATING_RULES, 0.5)
        )
        for rule, t in points.items():
            chosen[rule][f] = t
    return {**chosen, "targets": dict(targets), "chosen_on": f"{site} val", "site": site, "val_images": int(len(val))}
