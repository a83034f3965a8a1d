"""Step `score`: a trained run's scores on a collection's shards, and what `monitor` compares without
labels: each image's penultimate-layer embedding and the statistics of its pixels. Scored through one
of the `engines` that `cxr14 predict` and the app use too: the Keras model, or the `convert` step's
ONNX model of it with ONNX Runtime, about twice as fast on a CPU (bench/README.md); the export step
checks that the two give the same scores."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import prediction_table
from ..data import Shards, dataset, use_threads
from ..engines import KerasEngine, OnnxEngine
from ..files import atomic
from ..intensity import intensity_features

log = logging.getLogger(__name__)


def predict(scorer, shards: Shards, batch_size: int, limit: int | None = None):
    """One row per image of `shards` (see `prediction_table`), sorted by image, from `scorer` (pixels to
    logits, the plain image's logits or None, embeddings: an engine of `engines`), and the
    images' features, in the same order. With `limit`, only the first `limit` images in shard order."""
    rows, features = [], []
    batches = dataset(shards, batch_size, with_metadata=True)
    if limit is not None:
        batches = batches.unbatch().take(limit).batch(batch_size)
    for x, y, meta in batches:
        scores, plain, embedding = scorer(x.numpy())
        info = {
            "image_index": [s.decode() for s in meta["image_index"].numpy()],
            "patient_id": meta["patient_id"].numpy(),
            "age_years": meta["age_years"].numpy().astype(np.float64),
            "sex": [s.decode() for s in meta["sex"].numpy()],
            "view": [s.decode() for s in meta["view"].numpy()],
        }
        rows.append(prediction_table.frame(info, y.numpy(), scores, plain))
        features.append({"image_index": np.array(info["image_index"], dtype=object), "embedding": embedding}
                        | intensity_features(x.numpy()))  # fmt: skip
    table = pd.concat(rows, ignore_index=True)
    order = np.argsort(table.image_index.to_numpy(), kind="stable")
    joined = {key: np.concatenate([f[key] for f in features])[order] for key in features[0]}
    return table.iloc[order].reset_index(drop=True), joined


ENGINES = ("keras", "onnx")


def engine_for(engine: str) -> tuple[str, str]:
    """The engine a score job uses and why: as set, or for `auto` ONNX Runtime where TensorFlow sees no
    GPU (where it is the faster, bench/README.md) and Keras where it sees one."""
    if engine in ENGINES:
        return engine, "as set (evaluate.engine)"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return ("keras", f"{len(gpus)} GPU(s) visible") if gpus else ("onnx", "no GPU visible")


REFERENCE = "train"  # the split of the training images whose features are a run's OOD reference


def score(
    *,
    model,
    onnx=None,
    manifests: list,
    reference=None,
    splits: list[str],
    predictions,
    features,
    batch_size: int,
    tta: bool,
    reference_images: int = 0,
    engine: str = "keras",
    threads=None,
) -> None:
    """Step `score`: a trained run's scores on a collection's shards, one row per image, to
    `predictions` (Parquet): the images of `manifests[k]` as split `splits[k]` (NIH's val and test;
    an external collection's test split or all of it, as `external`). With `tta`, test-time
    augmented, with the plain scores beside them. `features` (npz) gets each scored image's embedding
    and pixel statistics, and, on a collection some run trains on (NIH, or a fine-tune's site), those
    of the first `reference_images` of the `reference` (train) shards, in shard order, as split
    `train`: what the `ood_reference` step fits the run's out-of-distribution reference on. `engine`:
    keras, onnx (the `onnx` model, converted from `model` by the `convert` step) or auto (`engine_for`)."""
    if len(manifests) != len(splits):
        raise ValueError(f"{len(manifests)} manifests for the splits {splits}")
    use_threads(threads)
    used, why = engine_for(engine)
    if used == "onnx" and onnx is None:
        raise ValueError(f"evaluate.engine={engine} scores with the convert step's ONNX model, and none was given")
    scorer = OnnxEngine(onnx, tta, threads) if used == "onnx" else KerasEngine(model, tta)
    log.info("scoring with %s (%s)", scorer.name, why)
    sources = {split: Shards.from_manifest(manifest, verify=True) for split, manifest in zip(splits, manifests)}
    tables, found = [], {}
    for split, src in sources.items():
        table, features_of = predict(scorer, _checked(src, scorer.image_size, model, split), batch_size)
        tables.append(table.assign(split=split))
        found[split] = features_of
    if reference is not None:
        src = _checked(Shards.from_manifest(reference, verify=True), scorer.image_size, model, REFERENCE)
        # Only the plain images' embeddings are kept: with TTA, the ONNX graph would run all five views of
        # each, so the Keras model embeds them alone (loaded here only when it did not score).
        if used == "onnx" and not tta:
            plain = scorer
        else:
            plain = KerasEngine(scorer.model if used == "keras" else model, tta=False)
        found[REFERENCE] = predict(plain, src, batch_size, limit=reference_images)[1]
    prediction_table.write(pd.concat(tables, ignore_index=True), predictions)
    write_features(found, features)
    log.info("%s: scored %s", model, ", ".join(f"{len(f['image_index'])} {split}" for split, f in found.items()))


def _checked(shards: Shards, size: int, model, split: str) -> Shards:
    if shards.image_size != size:
        raise ValueError(f"{model} takes {size} px but the {split} shards are {shards.image_size} px")
    return shards


def write_features(by_split: dict, path) -> None:
    """The features of each split's images, as one npz: `split`, `image_index` and the arrays of
    `predict`'s features, row for row (`ood.per_image` reads them back)."""
    keys = next(iter(by_split.values())).keys()
    arrays = {key: np.concatenate([f[key] for f in by_split.values()]) for key in keys}
    arrays["split"] = np.concatenate([np.full(len(f["image_index"]), s, dtype=object) for s, f in by_split.items()])
    arrays = {k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()}
    with atomic(path) as staged, open(staged, "wb") as out:
        np.savez(out, **arrays)
