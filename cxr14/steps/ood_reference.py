"""Step `ood_reference`: a run's out-of-distribution reference, fitted once on its NIH features (the
score step's embeddings of NIH training images, with NIH val setting the threshold): what `monitor`,
`cxr14 predict` and the app hold an image against. A step of its own, so that a change to how the
reference is fitted reruns this and the monitor, never scoring."""

from __future__ import annotations

import logging

from .. import ood

log = logging.getLogger(__name__)

REFERENCE, VAL = "train", "val"  # the NIH splits of the run's features that fit it


def ood_reference(*, features: list, reference, quantile: float) -> dict:
    """The Mahalanobis reference (`ood.fit_reference`) of a run's NIH `features` (one file per network:
    an ensemble's members' embeddings side by side), its threshold the `quantile` of NIH val's
    distances, to `reference` (npz)."""
    joined = ood.joined_features(features)
    by_split = {s: joined["embedding"][joined["split"] == s] for s in (REFERENCE, VAL)}
    for name, part in by_split.items():
        if not len(part):
            raise ValueError(f"{features[0]}: no NIH {name} images' features (score the run on NIH first)")
    fitted = ood.fit_reference(by_split[REFERENCE], by_split[VAL], quantile)
    ood.save_reference(fitted, reference)
    log.info(
        "reference of %d NIH training embeddings (%d wide); threshold %.2f, the %g quantile of NIH val's distances",
        len(by_split[REFERENCE]), by_split[REFERENCE].shape[1], fitted["threshold"], quantile,
    )  # fmt: skip
    return fitted
