"""The workflow's tables on disk: Parquet written byte for byte reproducibly, and the extract step's
manifests (one row per extracted image) that clean reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .files import atomic


def write_parquet(table: pd.DataFrame, path: str | Path) -> None:
    """Byte-identical for identical tables: fixed schema, no index, one row group, atomic rename."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    with atomic(path) as staged:
        pq.write_table(arrow, staged, compression="zstd", row_group_size=max(len(table), 1))


def read_manifest(path: str | Path) -> pd.DataFrame:
    """An extract manifest: `image_index` (the PNG's name) and its `bytes`."""
    return pd.read_csv(path, sep="\t", dtype={"image_index": str, "bytes": "int64"})
