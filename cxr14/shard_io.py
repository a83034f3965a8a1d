"""Shard files: the deterministic plan, one TFRecord shard written and verified, a split's manifest.

Each tf.train.Example holds the resized image (raw uint8 pixels by default, or PNG bytes), the 14
labels and the metadata evaluation needs per subgroup (image_index, patient_id, age_years, sex,
view), so no stage after this one needs the Parquet table. Shards are written to a `.partial`
name and renamed when complete; the same plan and images give byte-identical shards.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import FINDINGS, SPLITS
from .files import atomic, disk_full, sha256_file, write_json
from .images import DEFAULT_MAX_MEGAPIXELS, BadImage, load

ENCODINGS = ("raw", "png")
UNSPLIT = "images"  # the one shard group of a collection that is not split (else train, val, test)


class TooManyBadImages(RuntimeError):
    """More images failed to decode than `max_bad_images` allows."""


def plan_table(table: pd.DataFrame, images_per_shard: int, seed: int, groups=SPLITS) -> pd.DataFrame:
    """Assign every image to a shard: a seeded order within each split (group), then contiguous slices."""
    return pd.concat(
        [plan_group(table[table.split == split], images_per_shard, [seed, k]) for k, split in enumerate(groups)],
        ignore_index=True,
    )


def plan_group(part: pd.DataFrame, images_per_shard: int, seed) -> pd.DataFrame:
    """One group of images (a split, a collection) in a seeded order, cut into contiguous shards."""
    part = part.sort_values("image_index", ignore_index=True)
    order = np.random.default_rng(seed).permutation(len(part))
    part = part.iloc[order].reset_index(drop=True)
    num = max(1, math.ceil(len(part) / images_per_shard))
    part["shard"] = (np.arange(len(part)) * num // max(len(part), 1)).astype("int32")
    part["num_shards"] = np.int32(num)
    part["position"] = np.arange(len(part), dtype="int32")
    return part


def shard_counts(plan_table: pd.DataFrame, groups=SPLITS) -> dict[str, int]:
    """Number of shards per split or group (0 for an empty one)."""
    return {
        s: int(plan_table.loc[plan_table.split == s, "num_shards"].max()) if (plan_table.split == s).any() else 0
        for s in groups
    }


def _example(row, pixels: np.ndarray, encoding: str):
    import tensorflow as tf

    from .images import encode_png

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def f(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[v]))

    age = float(row.age_years) if pd.notna(row.age_years) else float("nan")
    data = pixels.tobytes() if encoding == "raw" else encode_png(pixels)
    feature = {
        "image": b(data),
        "encoding": b(encoding.encode()),
        "height": i([pixels.shape[0]]),
        "width": i([pixels.shape[1]]),
        "labels": i([int(getattr(row, name)) for name in FINDINGS]),
        "image_index": b(row.image_index.encode()),
        "patient_id": i([int(row.patient_id)]),
        "age_years": f(age),
        "sex": b(row.sex.encode()),
        "view": b(row.view.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shard(
    rows: pd.DataFrame,
    out: str | Path,
    image_size: int,
    encoding: str,
    max_bad_images: int,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> dict:
    """Write one shard from `rows` of a plan, each image read from its `file` (PNG, JPEG or DICOM).

    Bad images are skipped and listed; more than `max_bad_images` of them fails without output.
    """
    import tensorflow as tf

    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
    out = Path(out)
    bad, count = [], 0
    with atomic(out) as staged:
        try:
            with tf.io.TFRecordWriter(str(staged)) as writer:
                for row in rows.sort_values("position").itertuples(index=False):
                    try:
                        pixels = load(row.file, image_size, max_megapixels)
                    except (BadImage, OSError) as exc:
                        bad.append({"image_index": row.image_index, "reason": str(exc)})
                        continue
                    writer.write(_example(row, pixels, encoding).SerializeToString(deterministic=True))
                    count += 1
        except tf.errors.ResourceExhaustedError as exc:  # how TensorFlow reports a full disk
            raise disk_full(out) from exc
        if len(bad) > max_bad_images:
            raise TooManyBadImages(
                f"{out.name}: {len(bad)} bad images (max_bad_images={max_bad_images}), e.g. "
                + "; ".join(f"{b['image_index']}: {b['reason']}" for b in bad[:5])
            )
    return {
        "file": out.name,
        "images": count,
        "bytes": out.stat().st_size,
        "sha256": sha256_file(out),
        "bad_images": bad,
    }


def write_manifest(
    split: str,
    shard_infos: list[dict],
    image_size: int,
    encoding: str,
    out: str | Path,
    bad_out: str | Path,
    max_bad_images: int,
) -> dict:
    """Per-split manifest (counts, bytes, sha256 per shard, image size) and the list of bad images."""
    bad = [b for info in shard_infos for b in info["bad_images"]]
    with atomic(bad_out) as staged:
        pd.DataFrame(bad, columns=["image_index", "reason"]).to_csv(staged, sep="\t", index=False)
    if len(bad) > max_bad_images:
        raise TooManyBadImages(f"split {split}: {len(bad)} bad images (max_bad_images={max_bad_images}); see {bad_out}")
    manifest = {
        "split": split,
        "image_size": image_size,
        "encoding": encoding,
        "labels": list(FINDINGS),
        "images": sum(i["images"] for i in shard_infos),
        "bytes": sum(i["bytes"] for i in shard_infos),
        "bad_images": len(bad),
        "shards": [{k: i[k] for k in ("file", "images", "bytes", "sha256")} for i in shard_infos],
    }
    write_json(manifest, out)
    return manifest


class CorruptShard(RuntimeError):
    """A shard is missing or differs from what its manifest recorded."""


def verify_shards(manifest: str | Path) -> list[Path]:
    """Check each shard of a split against its manifest (size, then sha256; seconds per GB), so a
    damaged shard is named before a long run starts rather than met as a TFRecord CRC error hours in.
    Returns the shard files; raises CorruptShard naming every bad one."""
    manifest = Path(manifest)
    files, problems = [], []
    for entry in json.loads(manifest.read_text())["shards"]:
        file = manifest.parent / entry["file"]
        files.append(file)
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif (size := file.stat().st_size) != entry["bytes"] or sha256_file(file) != entry["sha256"]:
            problems.append(
                f"{file}: damaged (size {size} bytes, manifest {entry['bytes']}; sha256 differs "
                f"from the manifest's {entry['sha256'][:12]}...)"
            )
    if problems:
        raise CorruptShard(
            "; ".join(problems) + f"; delete the shard(s) and run Snakemake again to rewrite them (manifest {manifest})"
        )
    return files
