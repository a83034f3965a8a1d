"""The one tf.data reader for the shards, used by training, evaluation and the benchmarks.

Parallel interleave over (shuffled) shard files, shuffle, batch, then parse and decode a whole batch
at once (raw shards decode with one decode_raw per batch), augmentation for training only, the
channel count the model needs, optional caching and prefetch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from .constants import FINDINGS

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


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation. Horizontal flip is off by default: it moves the heart to the right."""

    rotation_deg: float = 5.0
    zoom: float = 0.1
    translate: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1
    horizontal_flip: bool = False

    @classmethod
    def from_config(cls, cfg: dict | None) -> "Augment | None":
        return None if cfg is None or cfg is False else cls(**cfg)


@dataclass(frozen=True)
class Shards:
    """The shard files of one split and how they were written (from its manifest.json)."""

    files: list[str]
    image_size: int
    encoding: str
    images: int
    manifest: dict = field(repr=False, default_factory=dict)

    @classmethod
    def from_manifest(cls, path: str | Path) -> "Shards":
        path = Path(path)
        manifest = json.loads(path.read_text())
        files = [str(path.parent / s["file"]) for s in manifest["shards"]]
        return cls(files, manifest["image_size"], manifest["encoding"], manifest["images"], manifest)


def _decode(encoding: str, size: int):
    if encoding == "raw":
        def decode_batch(images):
            pixels = tf.io.decode_raw(images, tf.uint8)
            return tf.reshape(pixels, [-1, size, size, 1])
        return decode_batch

    def decode_batch(images):
        return tf.map_fn(lambda b: tf.ensure_shape(tf.io.decode_png(b, channels=1), [size, size, 1]),
                         images, fn_output_signature=tf.TensorSpec([size, size, 1], tf.uint8))
    return decode_batch


def augmenter(aug: Augment, seed: int):
    """A Keras preprocessing pipeline applied to float batches in [0, 255]."""
    import keras

    layers = []
    if aug.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation_deg:
        layers.append(keras.layers.RandomRotation(aug.rotation_deg / 360.0, fill_mode="constant", seed=seed))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom(aug.zoom, fill_mode="constant", seed=seed))
    if aug.translate:
        layers.append(keras.layers.RandomTranslation(aug.translate, aug.translate, fill_mode="constant", seed=seed))
    if aug.brightness:
        layers.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255), seed=seed))
    if aug.contrast:
        layers.append(keras.layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="augment")


def dataset(
    shards: Shards,
    batch_size: int,
    *,
    training: bool = False,
    augment: Augment | None = None,
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
        cycle_length=min(len(shards.files), 8), num_parallel_calls=AUTOTUNE, deterministic=not training,
    )
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE, deterministic=not training)
    decode = _decode(shards.encoding, shards.image_size)
    aug = augmenter(augment, seed) if (training and augment) else None

    def parse(records):
        ex = tf.io.parse_example(records, FEATURES)
        images = tf.cast(decode(ex["image"]), tf.float32)
        if aug is not None:
            images = tf.clip_by_value(aug(images, training=True), 0.0, 255.0)
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
