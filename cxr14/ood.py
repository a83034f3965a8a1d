"""What a run holds each image against, without a label: its pixel statistics and its penultimate-layer
embedding (the score step writes both for every image it scores), and the run's out-of-distribution
reference, the Mahalanobis distance to its NIH training embeddings with a threshold from NIH val. The
`ood_reference` step fits it once from the score step's NIH features; `monitor`, `cxr14 predict` and
the app read that one. (The pixel statistics themselves are `intensity.intensity_features`.)"""

from __future__ import annotations

import numpy as np


def fit_reference(train: np.ndarray, val: np.ndarray, quantile: float, *, val_patients, seed: int) -> dict:
    """The out-of-distribution reference of a run: the mean and Ledoit-Wolf shrunk precision of its
    training embeddings `train`, and the threshold, the `quantile` of the distances of one seeded
    patient-disjoint half of `val` (`shift.patient_halves` of `val_patients`). The other half is the
    yardstick: its share past the threshold (`heldout_share`) is what images like val's give when the
    threshold was not fitted on them (about 1 - quantile; on its own images a quantile is past by
    construction). `threshold_images` says how many images the quantile rests on. The quantile is the
    conformal one, the ceil((n + 1) quantile)-th smallest of the n distances (the largest where that is
    past n): an image like val's is past it at most 1 - quantile of the time, where np.quantile's
    interpolation gave 0.011 for a nominal 0.01 in simulation (docs/statistics.md)."""
    from sklearn.covariance import LedoitWolf

    from .shift import patient_halves

    fitted = LedoitWolf().fit(np.asarray(train, np.float64))
    reference = {"mean": fitted.location_, "precision": fitted.precision_, "quantile": quantile}
    distances = mahalanobis(reference, val)
    fitted_on = patient_halves(val_patients, seed)
    reference["threshold"] = conformal_quantile(distances[fitted_on], quantile)
    reference["threshold_images"] = int(fitted_on.sum())
    reference["heldout_images"] = int((~fitted_on).sum())
    reference["heldout_share"] = float(np.mean(distances[~fitted_on] > reference["threshold"]))
    reference["training_images"] = int(len(train))
    return reference


def conformal_quantile(values: np.ndarray, quantile: float) -> float:
    """The ceil((n + 1) quantile)-th smallest of `values` (the largest where that rank is past n)."""
    ordered = np.sort(np.asarray(values, np.float64))
    rank = min(int(np.ceil((len(ordered) + 1) * quantile)), len(ordered))
    return float(ordered[rank - 1])


def save_reference(reference: dict, path) -> None:
    """The reference as an npz of its arrays (`load_reference` reads it back)."""
    from .files import atomic

    with atomic(path) as staged, open(staged, "wb") as out:
        np.savez(out, **{k: np.asarray(v) for k, v in reference.items()})


def load_reference(path) -> dict:
    """The out-of-distribution reference of a run (the `ood_reference` step's)."""
    with np.load(path, allow_pickle=False) as stored:
        found = {k: stored[k] for k in stored.files}
    scalars = {k: v.item() for k, v in found.items() if v.ndim == 0 and v.dtype.kind in "fiuU"}
    return found | scalars


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
