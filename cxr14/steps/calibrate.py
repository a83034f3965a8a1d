"""Step `calibrate`: each run's calibration (see `cxr14.calibration`) fitted on its val predictions."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .. import prediction_table
from ..calibration import fit, loss_offsets, shared
from ..constants import FINDINGS
from ..files import sha256_file, write_json

log = logging.getLogger(__name__)


def calibrate(*, predictions, table, summary, calibration, method: str, min_positives: int, tta: bool) -> dict:
    """Step `calibrate`: per finding, the map fitted on the run's val predictions to `calibration`
    (JSON), with the training prevalence of each finding (the base rate the app shows beside a
    probability), whether scores are test-time augmented, and the sha256 of the model it belongs to
    (`summary`: the run's training summary; None for an ensemble, which has no model of its own)."""
    val = prediction_table.read(predictions, "val")
    if val.empty:
        raise ValueError(f"{predictions}: no val rows to fit the calibration on")
    clean = pd.read_parquet(table, columns=["split", *FINDINGS])
    train = clean[clean.split == "train"]
    trained = json.loads(Path(summary).read_text()) if summary else None
    offsets = loss_offsets(trained)
    fitted = {
        f: fit(val[prediction_table.label(f)], val[prediction_table.score(f)], method, min_positives, offsets[f])
        for f in FINDINGS
    }
    skipped = [f for f, v in fitted.items() if v["method"] == "none"]
    fitted, temperature = shared(fitted, val, offsets, min_positives)
    result = {
        "method": method,
        "fitted_on": "val",
        "val_images": int(len(val)),
        "min_positives": min_positives,
        "tta": tta,
        "model_sha256": trained and trained["model_sha256"],
        "loss": trained and trained["config"]["loss"],
        "predictions_sha256": sha256_file(predictions),
        "base_rate": {f: float(train[f].mean()) for f in FINDINGS},
        "train_images": int(len(train)),
        "shared": skipped,  # every other finding has a map of its own
        "shared_temperature": temperature,
        "findings": fitted,
    }
    write_json(result, calibration)
    log.info(
        "%s calibration on %d val images; with the shared temperature (too few val positives): %s",
        method,
        len(val),
        ", ".join(skipped) or "none",
    )
    return result
