"""Step `score`: a trained run's scores on a collection's shards, through the one inference path
that `cxr14 predict` and the app use too (`inference.forward`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import models, prediction_table
from ..data import Shards, dataset, use_threads
from ..inference import forward, tta_scores

log = logging.getLogger(__name__)


def predict(model, shards: Shards, batch_size: int, tta: bool = False) -> pd.DataFrame:
    """One row per image of `shards` (see `prediction_table`), sorted by image, from `model` (a
    `models.logits_model`); with `tta` the logits are the mean over the TTA views and the plain
    image's come from the same pass."""
    rows = []
    for x, y, meta in dataset(shards, batch_size, with_metadata=True):
        plain = None
        if tta:
            scores, plain = tta_scores(model, x)
        else:
            scores = forward(model, x, tta=False)
        info = {
            "image_index": [s.decode() for s in meta["image_index"].numpy()],
            "patient_id": meta["patient_id"].numpy(),
            "age_years": meta["age_years"].numpy().astype(np.float64),
            "sex": [s.decode() for s in meta["sex"].numpy()],
            "view": [s.decode() for s in meta["view"].numpy()],
        }
        rows.append(prediction_table.frame(info, y.numpy(), scores, plain))
    return pd.concat(rows, ignore_index=True).sort_values("image_index", ignore_index=True)


def score(*, model, manifests: list, splits: list[str], predictions, batch_size: int, tta: bool, threads=None) -> None:
    """Step `score`: a trained run's scores on a collection's shards, one row per image, to
    `predictions` (Parquet): the images of `manifests[k]` as split `splits[k]` (NIH's val and test;
    an external collection's test split or all of it, as `external`). With `tta`, test-time
    augmented, with the plain scores beside them."""
    if len(manifests) != len(splits):
        raise ValueError(f"{len(manifests)} manifests for the splits {splits}")
    _score_splits(model, dict(zip(splits, manifests)), predictions, batch_size, tta, threads)


def _score_splits(model, manifests: dict, predictions, batch_size: int, tta: bool, threads) -> None:
    use_threads(threads)
    net = models.logits_model(models.load(model))
    size = models.info(net)["image_size"]
    sources = {split: Shards.from_manifest(manifest, verify=True) for split, manifest in manifests.items()}
    for split, src in sources.items():
        if src.image_size != size:
            raise ValueError(f"{model} takes {size} px but the {split} shards are {src.image_size} px")
    table = pd.concat(
        [predict(net, src, batch_size, tta).assign(split=split) for split, src in sources.items()], ignore_index=True
    )
    prediction_table.write(table, predictions)
    log.info("%s: scored %s", model, ", ".join(f"{src.images} {split}" for split, src in sources.items()))
