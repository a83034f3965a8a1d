"""Small file helpers every stage shares: checksums and atomic writes (a reader never sees half a file)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path


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
    kept for writers that insist on it (Keras saves only to `.keras`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        yield staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, path)


def write_json(obj, path) -> None:
    with atomic(path) as staged:
        staged.write_text(json.dumps(obj, indent=2) + "\n")
