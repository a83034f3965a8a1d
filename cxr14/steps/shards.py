"""Steps `plan_shards`, `shard` and `shard_manifest`: a collection's images (NIH's or another's, alike)
in resized TFRecord shards, per group (its splits, or one group of every image); see `cxr14.shard_io`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ..files import write_json
from ..shard_io import UNSPLIT, plan_table, shard_counts, write_manifest, write_shard
from ..tables import write_parquet

log = logging.getLogger(__name__)


def plan_shards(*, table, report, plan, groups: list[str], images_per_shard: int, seed: int) -> dict[str, int]:
    """Step `plan_shards`: which image of a collection's `table` goes to which shard of which of its
    `groups` (`plan`, Parquet); returns the number of shards per group. An ingested collection's
    `report` is an input for its fingerprint of the image files, so that images replaced under the
    same names reshard (None for NIH, whose extracted images are the shard jobs' inputs)."""
    if report is not None:
        log.info("image files %s", json.loads(Path(report).read_text())["image_files"][:16])
    frame = pd.read_parquet(table)
    if list(groups) == [UNSPLIT]:
        frame = frame.assign(split=UNSPLIT)
    planned = plan_table(frame, images_per_shard, seed, groups)
    write_parquet(planned, plan)
    counts = shard_counts(planned, groups)
    log.info("%d images; shards per group: %s", len(planned), counts)
    return counts


def shard(
    *,
    plan,
    images: list | None,
    tfrecord,
    info,
    group: str,
    index: int,
    root: str,
    image_size: int,
    encoding: str,
    max_bad_images: int,
    max_megapixels: float,
) -> dict:
    """Step `shard`: shard `index` of a collection's `group` from the plan to `tfrecord`, and its
    sidecar `info` (counts, sha256, bad images), each image read from `root`/its path. `images`: the
    folders under root the workflow made (NIH's extracted archives), inputs so that they are there;
    None for a collection published as it is. An image whose header promises more than
    `max_megapixels` million values is bad, as an undecodable one is."""
    rows = pd.read_parquet(plan, filters=[("split", "==", group), ("shard", "==", index)])
    rows["file"] = [str(Path(root) / p) for p in rows.path]
    written = write_shard(rows, tfrecord, image_size, encoding, max_bad_images, max_megapixels)
    write_json(written, info)
    log.info(
        "%s: %d images, %d bad, %d bytes", written["file"], written["images"], len(written["bad_images"]),
        written["bytes"],
    )  # fmt: skip
    return written


def shard_manifest(
    *, infos: list, manifest, bad_images, group: str, image_size: int, encoding: str, max_bad_images: int
) -> dict:
    """Step `shard_manifest`: a group's manifest (counts, bytes, sha256 per shard) and bad-image list."""
    written = write_manifest(
        group,
        [json.loads(Path(p).read_text()) for p in sorted(infos)],
        image_size,
        encoding,
        manifest,
        bad_images,
        max_bad_images,
    )
    log.info(
        "%s: %d images in %d shards, %d bad", group, written["images"], len(written["shards"]), written["bad_images"]
    )
    return written
