"""What a run holds each image against, without a label: its pixel statistics and its penultimate-layer
embedding (the score step writes both for every image it scores), and the run's out-of-distribution
reference, the Mahalanobis distance to its NIH training embeddings with a threshold from NIH val. The
`ood_reference` step fits it once from the score step's NIH features; `monitor`, `cxr14 predict` and
the app read that one. (The pixel statistics themselves are `intensity.intensity_features`.)"""

from __future__ import annotations

import numpy as np


def fit_reference(train: np.ndarray, val: np.ndarray, quantile: float) -> dict:
    """The out-of-distribution reference of a run: the mean and Ledoit-Wolf shrunk precision of its NIH
    training embeddings, and the threshold, the `quantile` of NIH val's distances to them (so about
    1 - quantile of images like NIH val's are past it)."""
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(np.asarray(train, np.float64))
    reference = {"mean": fitted.location_, "precision": fitted.precision_, "quantile": quantile}
    reference["threshold"] = float(np.quantile(mahalanobis(reference, val), quantile))
    return reference


def save_reference(reference: dict, path) -> None:
    """The reference as an npz of its arrays (`load_reference` reads it back)."""
    from .files import atomic

    with atomic(path) as staged, open(staged, "wb") as out:
        np.savez(out, **{k: np.asarray(v) for k, v in reference.items()})


def load_reference(path) -> dict:
    """The out-of-distribution reference of a run (the `ood_reference` step's)."""
    with np.load(path, allow_pickle=False) as stored:
        found = {k: stored[k] for k in stored.files}
    return found | {"threshold": float(found["threshold"]), "quantile": float(found["quantile"])}


LEGACY_REFERENCE = "reference_"  # the reference's arrays in a features file scored before ood_reference was a step


def per_image(features) -> dict[str, np.ndarray]:
    """A features file's arrays, one row per image (the score step's; the reference a file scored
    before the `ood_reference` step held is left out, so results kept with `--touch` read as new ones)."""
    with np.load(features, allow_pickle=False) as stored:
        return {k: stored[k] for k in stored.files if not k.startswith(LEGACY_REFERENCE)}


def positions(keys: np.ndarray, wanted) -> np.ndarray:
    """Where each of `wanted` is in `keys` (every one must be there)."""
    import pandas as pd

    index = pd.Index(keys)
    at = index.get_indexer(pd.Index(wanted))
    if (at < 0).any():
        raise ValueError(f"{int((at < 0).sum())} images have predictions but no features, e.g. {list(wanted)[0]}")
    return at


def joined_features(paths: list) -> dict[str, np.ndarray]:
    """The features `score` wrote, one file per network: a run's own, or an ensemble's members' with
    their embeddings side by side (the ensemble's representation) on the images all of them scored,
    the pixel statistics of the first."""
    loaded = [per_image(path) for path in paths]
    first = loaded[0]
    keys = [np.char.add(np.char.add(f["split"], "/"), f["image_index"]) for f in loaded]
    common = keys[0]
    for other in keys[1:]:
        common = common[np.isin(common, other)]
    rows = [positions(k, common) for k in keys]
    out = {name: values[rows[0]] for name, values in first.items()}
    out["embedding"] = np.concatenate([f["embedding"][r] for f, r in zip(loaded, rows)], axis=1)
    return out


def mahalanobis(reference: dict, embeddings: np.ndarray) -> np.ndarray:
    """Each embedding's Mahalanobis distance to the reference's training embeddings."""
    centred = np.asarray(embeddings, np.float64) - reference["mean"]
    return np.sqrt(np.maximum(np.sum((centred @ reference["precision"]) * centred, axis=1), 0))
