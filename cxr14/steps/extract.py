"""Safe extraction of the NIH image archives (Box tar.gz or Kaggle zip) into one flat folder each.

Only PNG members are taken; absolute paths, `..` components, links and devices refuse the whole
archive, and so does a member that would expand past MAX_IMAGE_BYTES or more PNGs than the catalog
says the archive holds (so a crafted archive cannot fill the disk: at most images x MAX_IMAGE_BYTES).
Images land in `<out_dir>.partial/` and the folder is renamed into place only when the archive is
fully read and its image count checks out, so a failed run leaves nothing that looks finished.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import pandas as pd

from ..files import atomic, reporting_disk_full
from ..tables import read_manifest

log = logging.getLogger(__name__)


class UnsafeArchive(RuntimeError):
    """The archive holds a member that would escape the target folder, a link or a device, or one that
    expands past any real image's size."""


# A 1024 x 1024 NIH PNG is at most 4 MiB even as raw RGBA (the largest real ones are under 1 MiB).
MAX_IMAGE_BYTES = 8 * 2**20


class ImageCountError(RuntimeError):
    """The archive does not hold the number of images the config expects."""


def _check_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchive(f"{archive}: refusing member {name!r} (path traversal)")


def _check_size(archive: Path, name: str, size: int) -> None:
    if size > MAX_IMAGE_BYTES:
        raise UnsafeArchive(
            f"{archive}: refusing member {name!r}: it expands to {size} bytes, past {MAX_IMAGE_BYTES} "
            "(no chest X-ray of the archive is that large)"
        )


def _tar_members(archive: Path) -> Iterator[tuple[str, BinaryIO]]:
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            _check_name(archive, member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchive(f"{archive}: refusing link member {member.name!r} -> {member.linkname!r}")
            if member.isdev():
                raise UnsafeArchive(f"{archive}: refusing device member {member.name!r} (character, block or fifo)")
            if member.isfile():
                _check_size(archive, member.name, member.size)
                yield member.name, tar.extractfile(member)


def _zip_members(archive: Path) -> Iterator[tuple[str, BinaryIO]]:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_name(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"{archive}: refusing link member {info.filename!r}")
            if not info.is_dir():
                _check_size(archive, info.filename, info.file_size)
                with zf.open(info) as fh:
                    yield info.filename, fh


def members(archive: Path) -> Iterator[tuple[str, BinaryIO]]:
    """(name, stream) for each regular member, whatever the archive format."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        return _zip_members(archive)
    if tarfile.is_tarfile(archive):
        return _tar_members(archive)
    raise ValueError(f"{archive}: neither a tar nor a zip archive")


def _is_complete(out_dir: Path, manifest: Path) -> bool:
    if not (out_dir.is_dir() and manifest.is_file()):
        return False
    table = read_manifest(manifest)
    return all(
        (out_dir / name).is_file() and (out_dir / name).stat().st_size == size
        for name, size in zip(table.image_index, table.bytes)
    )


def extract(*, archive, images, manifest, expected_images: int, count_tolerance: float) -> dict:
    """Step `extract`: the PNGs of `archive` flat into the folder `images`, and a manifest
    (image_index, bytes). Idempotent: a finished extraction (folder and manifest agree) is not redone.
    """
    archive, out_dir, manifest = Path(archive), Path(images), Path(manifest)
    if _is_complete(out_dir, manifest):
        log.info("%s: already extracted to %s", archive, out_dir)
        return {"archive": str(archive), "images": len(read_manifest(manifest)), "skipped": 0, "reused": True}
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with reporting_disk_full(out_dir):
            rows, skipped = _extract_pngs(archive, staging, expected_images)
        _check_count(archive, len(rows), expected_images, count_tolerance)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
    table = pd.DataFrame(rows, columns=["image_index", "bytes"]).sort_values("image_index")
    with atomic(manifest) as staged:
        table.to_csv(staged, sep="\t", index=False)
    log.info("%s: %d images to %s, %d other members skipped", archive, len(rows), out_dir, skipped)
    return {"archive": str(archive), "images": len(rows), "skipped": skipped, "reused": False}


def _extract_pngs(archive: Path, staging: Path, expected_images: int) -> tuple[list[tuple[str, int]], int]:
    rows, skipped = [], 0
    for name, stream in members(archive):
        base = PurePosixPath(name).name
        if not base.lower().endswith(".png"):
            skipped += 1
            continue
        if len(rows) == expected_images:
            raise ImageCountError(f"{archive}: more than the {expected_images} PNG images the catalog says it holds")
        target = staging / base
        if target.exists():
            raise UnsafeArchive(f"{archive}: image {base} appears twice")
        with open(target, "wb") as out:  # (tar and zip streams end at the member's declared size, checked)
            shutil.copyfileobj(stream, out, 2**20)
        rows.append((base, target.stat().st_size))
    return rows, skipped


def _check_count(archive, found: int, expected: int, tolerance: float) -> None:
    low = expected * (1.0 - tolerance)
    if found > expected or found < low:
        raise ImageCountError(
            f"{archive}: found {found} PNG images, expected {expected}"
            + (f" (tolerance {tolerance:.0%}: at least {int(-(-low // 1))})" if tolerance else "")
            + "; is it the right or a complete archive? Set extract.count_tolerance for a partial mirror."
        )
