"""Step `calibrate`: a run's calibration (see `cxr14.calibration`) and operating points on one site,
both fitted on that collection's val split: NIH's, or a split collection's own (patients never in its
test split). `cxr14 predict --site`, the app, the exports and the reports all use them by site."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .. import metrics, prediction_table
from ..calibration import PRIOR_SD, apply, fit_table, loss_offsets
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
    transferred=None,
    prior_sd: float = PRIOR_SD,
) -> dict:
    """Step `calibrate`: per finding, the map fitted on the run's val predictions on `site` to
    `calibration` (JSON), with the training prevalence of each finding (from NIH's `table`: the base
    rate the app shows beside a probability), whether scores are test-time augmented, and the sha256
    of the model it belongs to (`summary`: the run's training summary; None for an ensemble, whose
    members are calibrated already); then the operating points chosen on the calibrated val
    probabilities to `thresholds`: max F1, Youden's J, and the sensitivity and specificity `targets`
    (with `targets["confidence"]`, met at that one-sided lower confidence bound). `transferred`: NIH's
    calibration.json at another site (None on NIH), towards whose map a finding with few val positives
    is shrunk (prior SD `prior_sd` in logit)."""
    val = prediction_table.read(predictions, "val")
    if val.empty:
        raise ValueError(f"{predictions}: no val rows to fit the calibration on")
    clean = pd.read_parquet(table, columns=["split", *FINDINGS])
    train = clean[clean.split == "train"]
    trained = json.loads(Path(summary).read_text()) if summary else None
    prior = json.loads(Path(transferred).read_text()) if transferred else None
    fitted = fit_table(val, method, min_positives, loss_offsets(trained), prior, prior_sd)
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
        **fitted,
    }
    write_json(result, calibration)
    write_json(operating_points(val, result, site, targets, min_positives), thresholds)
    log.info(
        "%s: %s calibration on %d val images; with the shared temperature (too few val positives): %s; "
        "own fit at an optimiser bound: %s; not labelled here (no map, no decision): %s",
        site,
        method,
        len(val),
        ", ".join(result["shared"]) or "none",
        ", ".join(result["at_bound"]) or "none",
        ", ".join(result["unlabelled"]) or "none",
    )
    return result


def operating_points(val: pd.DataFrame, calibration: dict, site: str, targets: dict, min_positives: int) -> dict:
    """{rule: {finding: threshold, or None where none can be chosen}} on the val rows' calibrated
    probabilities, with why for each None (`reasons`: {rule: {finding: why}}), each finding's val
    positives and negatives, and `few_positives`: the findings whose points rest on fewer than
    `min_positives` val positives (flagged wherever the points are shown); with where and for which
    `targets` ({"sensitivity", "specificity", optional "confidence"})."""
    probabilities = apply(calibration, prediction_table.logits(val))
    goals = {"sensitivity": targets["sensitivity"], "specificity": targets["specificity"]}
    confidence = targets.get("confidence")
    chosen = {rule: {} for rule in metrics.OPERATING_RULES}
    reasons = {rule: {} for rule in metrics.OPERATING_RULES}
    positives, negatives = {}, {}
    for k, f in enumerate(FINDINGS):
        y = val[prediction_table.label(f)].to_numpy()
        known = metrics.labelled(y)
        positives[f], negatives[f] = int((y[known] == 1).sum()), int((y[known] == 0).sum())
        points = metrics.thresholds(y[known], probabilities[known, k], **goals, confidence=confidence)
        why = metrics.no_point_reason(y[known])
        for rule, t in points.items():
            chosen[rule][f] = t
            if t is None:
                reasons[rule][f] = why or (
                    f"no threshold reaches val {rule} {goals[rule]:g}"
                    + (f" at the {confidence:.0%} lower confidence bound" if confidence else "")
                    + f" ({positives[f] if rule == 'sensitivity' else negatives[f]} val "
                    + ("positives)" if rule == "sensitivity" else "negatives)")
                )
    few = [f for f in FINDINGS if 0 < positives[f] < min_positives and negatives[f]]
    return {
        **chosen,
        "reasons": reasons,
        "val_positives": positives,
        "val_negatives": negatives,
        "min_positives": min_positives,
        "few_positives": few,
        "targets": {name: value for name, value in targets.items() if value is not None},  # (confidence: when set)
        "chosen_on": f"{site} val",
        "site": site,
        "val_images": int(len(val)),
    }
