"""Small file helpers every stage shares: checksums and atomic writes (a reader never sees half a file)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(OSError):
    """No space (or quota) left while writing an output; nothing half-written is kept."""


def disk_full(path) -> DiskFull:
    """The error for a full disk met writing `path`, naming it and the space left there."""
    path = Path(path)
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    usage = shutil.disk_usage(folder)
    return DiskFull(
        errno.ENOSPC,
        f"disk full: no space left on device writing {path} "
        f"({usage.free / 2**20:.1f} MB free of {usage.total / 2**20:.1f} MB there); "
        "free some space and rerun the same command",
    )


@contextlib.contextmanager
def reporting_disk_full(path):
    """Re-raise a disk-full OSError met in the block as DiskFull naming `path`."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise disk_full(path) from exc


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(2**22):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic(path):
    """Yield `<stem>.partial<suffix>` to write; rename it to `path` when the block succeeds, delete
    it when it fails. A reader, Snakemake included, never sees a half-written `path`. The suffix is
    kept for writers that insist on it (Keras saves only to `.keras`). A full disk is reported as
    DiskFull naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        with reporting_disk_full(path):
            yield staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, path)


def write_json(obj, path) -> None:
    with atomic(path) as staged:
        staged.write_text(json.dumps(obj, indent=2) + "\n")


def json_safe(value):
    """Numbers as JSON can hold them: numpy scalars as Python's, and NaN (unknown) as null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
