"""Step `ood_reference`: a run's out-of-distribution reference, fitted once on the embeddings of its own
training data (the score step keeps those of each collection's training images a run learns from:
NIH's, and a fine-tune's site's), with a patient half of the same collections' val images setting the
threshold and the other half checking it: what `monitor`, `cxr14 predict` and the app hold an image
against. A step of its own, so that a change to how the reference is fitted reruns this and the
monitor, never scoring."""

from __future__ import annotations

import logging

import numpy as np

from .. import ood, prediction_table

log = logging.getLogger(__name__)

REFERENCE, VAL = "train", "val"  # the splits of the run's features that fit it


def ood_reference(
    *, features: list, predictions: list, reference, quantile: float, seed: int, sources: list[str]
) -> dict:
    """The Mahalanobis reference (`ood.fit_reference`) of a run's `features` on each of its training
    `sources` (collection by collection, one file per network: an ensemble's members' embeddings side
    by side), its training images' embeddings pooled; its threshold the `quantile` of one seeded
    patient half of their val images' distances (each image's patient from `predictions`, one per
    source). To `reference` (npz)."""
    networks = len(features) // len(sources)
    train, val, patients = [], [], []
    for k, (source, table) in enumerate(zip(sources, predictions)):
        joined = ood.joined_features(features[k * networks : (k + 1) * networks])
        scored = prediction_table.read(table, VAL)
        at = ood.positions(scored.image_index, joined["image_index"][joined["split"] == VAL])
        parts = {REFERENCE: joined["embedding"][joined["split"] == REFERENCE], VAL: at}
        for name, part in parts.items():
            if not len(part):
                raise ValueError(f"{features[k * networks]}: no {source} {name} images' features (score the run first)")
        train.append(parts[REFERENCE])
        val.append(joined["embedding"][joined["split"] == VAL])
        patients.append(source + "/" + scored.patient_id.astype(str).to_numpy()[at])
    fitted = ood.fit_reference(
        np.concatenate(train), np.concatenate(val), quantile, val_patients=np.concatenate(patients), seed=seed
    )
    fitted["training_data"] = ", ".join(sources)
    ood.save_reference(fitted, reference)
    log.info(
        "reference of %d training embeddings of %s (%d wide); threshold %.2f, the %g quantile of %d val images' "
        "distances; %.1f%% of the other %d val images (other patients) past it",
        fitted["training_images"], fitted["training_data"], train[0].shape[1], fitted["threshold"], quantile,
        fitted["threshold_images"], 100 * fitted["heldout_share"], fitted["heldout_images"],
    )  # fmt: skip
    return fitted
