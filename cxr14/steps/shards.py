"""Steps `plan_shards`, `shard`, `shard_manifest` (and a collection's): see `cxr14.shard_io`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ..files import write_json
from ..shard_io import plan_table, shard_counts, write_manifest, write_shard
from ..workflow.runs import UNSPLIT

log = logging.getLogger(__name__)


def plan_shards(*, table, plan, images_per_shard: int, seed: int) -> dict[str, int]:
    """Step `plan_shards`: which image goes to which shard (`plan`, Parquet), from the clean `table`."""
    from ..tables import write_parquet

    planned = plan_table(pd.read_parquet(table), images_per_shard, seed)
    write_parquet(planned, plan)
    counts = shard_counts(planned)
    log.info("shards per split: %s", counts)
    return counts


def shard(
    *,
    plan,
    images: list,
    archives: list[int],
    tfrecord,
    info,
    split: str,
    index: int,
    image_size: int,
    encoding: str,
    max_bad_images: int,
) -> dict:
    """Step `shard`: shard `index` of `split` from the plan to `tfrecord`, and its sidecar `info`
    (counts, sha256, bad images). `images` are the extracted folders of `archives`, in order."""
    if len(images) != len(archives):
        raise ValueError(f"{len(images)} image folders for {len(archives)} archives")
    rows = pd.read_parquet(plan, filters=[("split", "==", split), ("shard", "==", index)])
    folders = dict(zip(archives, images))
    rows["file"] = [str(Path(folders[int(a)]) / name) for a, name in zip(rows.archive, rows.image_index)]
    written = write_shard(rows, tfrecord, image_size, encoding, max_bad_images)
    write_json(written, info)
    log.info(
        "%s: %d images, %d bad, %d bytes",
        written["file"],
        written["images"],
        len(written["bad_images"]),
        written["bytes"],
    )
    return written


def shard_manifest(
    *, infos: list, manifest, bad_images, split: str, image_size: int, encoding: str, max_bad_images: int
) -> dict:
    """Step `shard_manifest`: a split's manifest (counts, bytes, sha256 per shard) and bad-image list."""
    written = write_manifest(
        split,
        [json.loads(Path(p).read_text()) for p in sorted(infos)],
        image_size,
        encoding,
        manifest,
        bad_images,
        max_bad_images,
    )
    log.info(
        "%s: %d images in %d shards, %d bad", split, written["images"], len(written["shards"]), written["bad_images"]
    )
    return written


# An external collection's shards: per split (`train/train-00003-of-00012`) when it is split, else one
# group of every image (`images/images-00003-of-00012`), under the collection's own folder.


def plan_dataset_shards(*, table, report, plan, groups: list[str], images_per_shard: int, seed: int) -> dict[str, int]:
    """Step `plan_dataset_shards`: which image of an ingested collection (`table`) goes to which shard of
    which of its `groups` (`plan`, Parquet); returns the number of shards per group. The ingest `report`
    is an input for its fingerprint of the image files: images replaced under the same names reshard."""
    from ..tables import write_parquet

    log.info("image files %s", json.loads(Path(report).read_text())["image_files"][:16])

    frame = pd.read_parquet(table)
    if list(groups) == [UNSPLIT]:
        frame = frame.assign(split=UNSPLIT)
    planned = plan_table(frame, images_per_shard, seed, groups)
    write_parquet(planned, plan)
    counts = shard_counts(planned, groups)
    log.info("%d images; shards per group: %s", len(planned), counts)
    return counts


def dataset_shard(
    *, plan, tfrecord, info, group: str, index: int, root: str, image_size: int, encoding: str, max_bad_images: int
) -> dict:
    """Step `dataset_shard`: shard `index` of a collection's `group` to `tfrecord` and its sidecar `info`,
    each image read from `root`/its path, as the NIH shards are (same reader, resize and features)."""
    rows = pd.read_parquet(plan, filters=[("split", "==", group), ("shard", "==", index)])
    rows["file"] = [str(Path(root) / p) for p in rows.path]
    written = write_shard(rows, tfrecord, image_size, encoding, max_bad_images)
    write_json(written, info)
    log.info("%s: %d images, %d bad", written["file"], written["images"], len(written["bad_images"]))
    return written


def dataset_shard_manifest(
    *, infos: list, manifest, bad_images, group: str, image_size: int, encoding: str, max_bad_images: int
) -> dict:
    """Step `dataset_shard_manifest`: a collection group's manifest and bad-image list, as a split's."""
    return shard_manifest(infos=infos, manifest=manifest, bad_images=bad_images, split=group,
                          image_size=image_size, encoding=encoding, max_bad_images=max_bad_images)  # fmt: skip
