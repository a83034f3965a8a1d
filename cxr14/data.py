"""The one tf.data reader for the shards, used by training, evaluation and the benchmarks.

Parallel interleave over (shuffled) shard files, shuffle, batch, then parse and decode a whole batch
at once (raw shards decode with one decode_raw per batch), augmentation for training only, the
channel count the model needs, optional caching and prefetch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from .constants import FINDINGS
from .shard_io import verify_shards

if TYPE_CHECKING:  # the settings' type only: the library never imports the run resolution
    from .settings import AugmentSettings

AUTOTUNE = tf.data.AUTOTUNE

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "labels": tf.io.FixedLenFeature([len(FINDINGS)], tf.int64),
    "image_index": tf.io.FixedLenFeature([], tf.string),
    "patient_id": tf.io.FixedLenFeature([], tf.int64),
    "age_years": tf.io.FixedLenFeature([], tf.float32),
    "sex": tf.io.FixedLenFeature([], tf.string),
    "view": tf.io.FixedLenFeature([], tf.string),
}


def use_threads(threads: int | None) -> None:
    """Run TensorFlow on the rule's `threads` (all cores when None); call before any TF op."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


@dataclass(frozen=True)
class Shards:
    """The shard files of one split and how they were written (from its manifest.json)."""

    files: list[str]
    image_size: int
    encoding: str
    images: int
    manifest: dict = field(repr=False, default_factory=dict)

    @classmethod
    def from_manifest(cls, path: str | Path, verify: bool = False) -> Shards:
        """The split's shards; with `verify`, each file's size and sha256 are checked against the
        manifest first (seconds per GB), so a damaged shard fails here, by name, and not hours
        into training with a bare TFRecord CRC error."""
        path = Path(path)
        manifest = json.loads(path.read_text())
        files = [str(path.parent / s["file"]) for s in manifest["shards"]]
        if verify:
            verify_shards(path)
        return cls(files, manifest["image_size"], manifest["encoding"], manifest["images"], manifest)

    @classmethod
    def pooled(cls, paths, verify: bool = False) -> Shards:
        """The shards of several manifests (a run's training sources: NIH's split, a collection's) as
        one set; they must share image size and encoding."""
        parts = [cls.from_manifest(p, verify) for p in paths]
        layouts = {(s.image_size, s.encoding) for s in parts}
        if len(layouts) > 1:
            raise ValueError(
                "the training sources have different shard layouts: "
                + ", ".join(f"{p} ({s.image_size} px, {s.encoding})" for p, s in zip(paths, parts))
            )
        if len(parts) == 1:
            return parts[0]
        shards = [shard for s in parts for shard in s.manifest["shards"]]
        manifest = {"shards": shards, "sources": [str(p) for p in paths]}
        return cls([f for s in parts for f in s.files], parts[0].image_size, parts[0].encoding,
                   sum(s.images for s in parts), manifest)  # fmt: skip


def _decode(encoding: str, size: int):
    if encoding == "raw":

        def decode_batch(images):
            pixels = tf.io.decode_raw(images, tf.uint8)
            return tf.reshape(pixels, [-1, size, size, 1])

        return decode_batch

    def decode_batch(images):
        return tf.map_fn(
            lambda b: tf.ensure_shape(tf.io.decode_png(b, channels=1), [size, size, 1]),
            images,
            fn_output_signature=tf.TensorSpec([size, size, 1], tf.uint8),
        )

    return decode_batch


def augment_batch(images, aug: AugmentSettings, seed: int):
    """Random rotation, zoom and translation as one fused affine warp per image (one op for the
    batch, far cheaper than a layer each), then brightness and contrast; images in 0..255."""
    shape = tf.shape(images)
    batch, size = shape[0], tf.cast(shape[1], tf.float32)

    offsets = {"angle": 1, "zoom": 2, "tx": 3, "ty": 4, "contrast": 5, "brightness": 6}

    def uniform(limit, name):
        return tf.random.uniform([batch], -limit, limit, seed=seed * 10 + offsets[name])

    angle = uniform(aug.rotation_deg * 3.141592653589793 / 180.0, "angle")
    scale = 1.0 / (1.0 + uniform(aug.zoom, "zoom"))  # output -> input coordinates
    tx, ty = uniform(aug.translate, "tx") * size, uniform(aug.translate, "ty") * size
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    c = (size - 1.0) / 2.0
    zeros = tf.zeros_like(cos)
    transforms = tf.stack(
        [cos, -sin, c - cos * c + sin * c + tx, sin, cos, c - sin * c - cos * c + ty, zeros, zeros], axis=1
    )
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    if aug.horizontal_flip:
        flip = tf.random.uniform([batch, 1, 1, 1], seed=seed * 10 + 7) < 0.5
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if aug.contrast:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        factor = 1.0 + tf.reshape(uniform(aug.contrast, "contrast"), [-1, 1, 1, 1])
        images = (images - mean) * factor + mean
    if aug.brightness:
        images = images + 255.0 * tf.reshape(uniform(aug.brightness, "brightness"), [-1, 1, 1, 1])
    return tf.clip_by_value(images, 0.0, 255.0)


def dataset(
    shards: Shards,
    batch_size: int,
    *,
    training: bool = False,
    augment: AugmentSettings | None = None,
    channels: int = 1,
    scale: str = "none",
    with_metadata: bool = False,
    cache: bool | str = False,
    shuffle_buffer: int = 2048,
    seed: int = 0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of (images float32 [B, S, S, channels], labels float32 [B, 14]) for one split.

    `scale`: "none" keeps 0..255 (models that scale inside, as cxr14's do), "unit" gives 0..1.
    With `with_metadata` a third element holds image_index, patient_id, age_years, sex and view.
    Training shuffles the files, the records (seeded) and drops the last partial batch; evaluation
    reads in the same order every time.
    """
    files = tf.data.Dataset.from_tensor_slices(shards.files)
    if training:
        files = files.shuffle(len(shards.files), seed=seed, reshuffle_each_iteration=True)
    ds = files.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
        cycle_length=min(len(shards.files), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=not training,
    )
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE, deterministic=not training)
    decode = _decode(shards.encoding, shards.image_size)
    aug = augment if training else None

    def parse(records):
        ex = tf.io.parse_example(records, FEATURES)
        images = tf.cast(decode(ex["image"]), tf.float32)
        if aug is not None:
            images = augment_batch(images, aug, seed)
        if scale == "unit":
            images = images / 255.0
        elif scale != "none":
            raise ValueError(f"scale must be 'none' or 'unit', not {scale!r}")
        if channels == 3:
            images = tf.image.grayscale_to_rgb(images)
        labels = tf.cast(ex["labels"], tf.float32)
        if with_metadata:
            meta = {k: ex[k] for k in ("image_index", "patient_id", "age_years", "sex", "view")}
            return images, labels, meta
        return images, labels

    return ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=not training).prefetch(AUTOTUNE)


def label_counts(shards) -> tuple[np.ndarray, np.ndarray, int]:
    """Positives and labelled images per finding, and the number of images, of a split's shards (a
    collection's -1 labels are counted as neither)."""
    spec = {"labels": tf.io.FixedLenFeature([len(FINDINGS)], tf.int64)}
    ds = tf.data.TFRecordDataset(shards.files).batch(4096).map(lambda r: tf.io.parse_example(r, spec)["labels"])
    pos, labelled, total = np.zeros(len(FINDINGS), np.int64), np.zeros(len(FINDINGS), np.int64), 0
    for labels in ds:
        labels = labels.numpy()
        pos += (labels == 1).sum(axis=0)
        labelled += (labels >= 0).sum(axis=0)
        total += int(labels.shape[0])
    return pos, labelled, total
