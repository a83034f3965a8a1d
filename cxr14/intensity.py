"""What the score step records of each image besides the model's view of it: the intensity statistics
of the pixels the model sees, which `monitor` compares between collections. A module of its own, so
that a change here reruns scoring and what follows, never the shards or training."""

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
