"""Step `ensemble`: an ensemble run's scores on a collection, from its member runs' calibrated scores.

Each member's logits are first mapped through its own NIH calibration, which takes out what differs
between members (the class-weight inflation of a weighted loss, a focal loss's flatter scores), then
averaged as calibrated logits (weighted): the mean log-odds, which stays in the space every calibration
maps, so the ensemble's own calibration (fitted on val like any run's) finds only what averaging
leaves. The mean calibrated probability would be the other choice; it is pulled towards 0.5 whenever
members disagree, which the ensemble's temperature would then have to undo.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from .. import prediction_table
from ..calibration import apply_logits

log = logging.getLogger(__name__)


def ensemble(*, member_predictions: dict, member_calibrations: dict, predictions, weights: dict | None) -> None:
    """The weighted mean of the members' calibrated logits image by image, to `predictions`.
    `member_predictions` and `member_calibrations`: {run: its predictions file / its NIH
    calibration.json}; `weights`: {run: weight}, or None for equal weights. The members must have
    scored the same images with the same findings."""
    names = list(member_predictions)
    frames = [
        prediction_table.read(member_predictions[name]).sort_values(prediction_table.KEY, ignore_index=True)
        for name in names
    ]
    first = frames[0]
    for name, frame in zip(names[1:], frames[1:]):
        if list(frame.columns) != list(first.columns):
            raise ValueError(
                f"ensemble member {name} has other findings or columns than {names[0]}: "
                f"{sorted(set(frame.columns) ^ set(first.columns))}"
            )
        if not frame[prediction_table.KEY].equals(first[prediction_table.KEY]):
            raise ValueError(f"ensemble members {names[0]} and {name} were scored on different images")
    calibrations = {name: json.loads(Path(member_calibrations[name]).read_text()) for name in names}
    w = np.asarray([weights[name] for name in names] if weights else [1.0] * len(frames), np.float64)

    def mean(logits_of) -> np.ndarray:
        return sum(wk * apply_logits(calibrations[n], logits_of(f)) for wk, n, f in zip(w, names, frames)) / w.sum()

    tta = prediction_table.with_tta(first)
    meta = first.drop(columns=[c for c in first.columns if c[:2] in ("y_", "z_", "p_")])
    labels = first[prediction_table.LABELS].to_numpy()
    plain = mean(prediction_table.plain_logits) if tta else None
    out = prediction_table.frame(meta.to_dict("list"), labels, mean(prediction_table.logits), plain)
    prediction_table.write(out, predictions)
    log.info("ensemble of %s (weights %s), mean calibrated logits: %d images", ", ".join(names), w.tolist(), len(out))
