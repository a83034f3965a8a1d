"""The one score space: logits, and the probabilities the logistic function makes of them, in float64.
Low in the package so that the predictions table and the calibrations share it without importing
each other (a step's code fingerprint follows imports: docs/rerunning.md)."""

from __future__ import annotations

import numpy as np

EPS = 1e-15  # only exact 0 and 1 are clipped: they were tied already


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))
