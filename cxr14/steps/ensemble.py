"""Step `ensemble`: an ensemble run's scores on a collection, the (weighted) mean of its member runs'."""

from __future__ import annotations

import logging

import numpy as np

from .. import prediction_table

log = logging.getLogger(__name__)


def ensemble(*, member_predictions: dict, predictions, weights: dict | None) -> None:
    """The mean of the members' probabilities image by image, to `predictions`. `member_predictions`:
    {run: its predictions file}; `weights`: {run: weight}, or None for equal weights. The members must
    have scored the same images with the same findings."""
    names = list(member_predictions)
    frames = [
        prediction_table.read(path).sort_values(prediction_table.KEY, ignore_index=True)
        for path in member_predictions.values()
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
    w = np.asarray([weights[name] for name in names] if weights else [1.0] * len(frames), np.float64)
    scores = prediction_table.score_columns(first)  # with the plain scores of TTA'd members
    out = first.copy()
    out[scores] = (sum(wk * f[scores].to_numpy(np.float64) for wk, f in zip(w, frames)) / w.sum()).astype(np.float32)
    prediction_table.write(out, predictions)
    log.info("ensemble of %s (weights %s): %d images", ", ".join(names), w.tolist(), len(out))
