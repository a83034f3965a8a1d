"""What a run holds each image against, without a label: its pixel statistics and its penultimate-layer
embedding (the score step writes both for every image it scores), and the run's out-of-distribution
reference, the Mahalanobis distance to its NIH training embeddings with a threshold from NIH val. The
score step fits the reference once; `monitor`, `cxr14 predict` and the app read that one."""

from __future__ import annotations

import numpy as np

BINS = 32  # intensity histogram bins over 0..255 (the model's input pixels)


def intensity_features(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of a (B, S, S[, 1]) batch of 0..255 pixels: its mean, its standard deviation and its
    histogram (BINS bins, fractions of its pixels)."""
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    bins = np.minimum((flat * (BINS / 256.0)).astype(np.int64), BINS - 1)
    offsets = bins + BINS * np.arange(len(flat))[:, None]
    counts = np.bincount(offsets.ravel(), minlength=BINS * len(flat)).reshape(len(flat), BINS)
    return {
        "pixel_mean": flat.mean(axis=1),
        "pixel_std": flat.std(axis=1),
        "histogram": (counts / flat.shape[1]).astype(np.float32),
    }


def fit_reference(train: np.ndarray, val: np.ndarray, quantile: float) -> dict:
    """The out-of-distribution reference of a run: the mean and Ledoit-Wolf shrunk precision of its NIH
    training embeddings, and the threshold, the `quantile` of NIH val's distances to them (so about
    1 - quantile of images like NIH val's are past it)."""
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(np.asarray(train, np.float64))
    reference = {"mean": fitted.location_, "precision": fitted.precision_, "quantile": quantile}
    reference["threshold"] = float(np.quantile(mahalanobis(reference, val), quantile))
    return reference


REFERENCE_PREFIX = "reference_"  # the reference's arrays in a features file (the score step's on NIH)


def load_reference(features) -> dict | None:
    """The out-of-distribution reference stored in a features file (`score` on NIH), or None."""
    with np.load(features, allow_pickle=False) as stored:
        found = {k.removeprefix(REFERENCE_PREFIX): stored[k] for k in stored.files if k.startswith(REFERENCE_PREFIX)}
    if not found:
        return None
    return found | {"threshold": float(found["threshold"]), "quantile": float(found["quantile"])}


def per_image(features) -> dict[str, np.ndarray]:
    """A features file's arrays of one row per image (the reference's left out)."""
    with np.load(features, allow_pickle=False) as stored:
        return {k: stored[k] for k in stored.files if not k.startswith(REFERENCE_PREFIX)}


def mahalanobis(reference: dict, embeddings: np.ndarray) -> np.ndarray:
    """Each embedding's Mahalanobis distance to the reference's training embeddings."""
    centred = np.asarray(embeddings, np.float64) - reference["mean"]
    return np.sqrt(np.maximum(np.sum((centred @ reference["precision"]) * centred, axis=1), 0))
