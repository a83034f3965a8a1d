"""Small file helpers every stage shares: checksums and atomic writes (a reader never sees half a file)."""

from __future__ import annotations

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


def write_json(obj, path) -> None:
    """Write JSON to `<path>.partial`, then rename it into place."""
    path = Path(path)
    staged = path.with_name(path.name + ".partial")
    staged.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(staged, path)
