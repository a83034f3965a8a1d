"""Sex and age from the images' own DICOM headers (PatientSex, PatientAge; the tags only, never the
pixels), for a collection whose tables do not give them (VinDr-CXR). What was read is kept in a cache
keyed by each file's path, size and modification time, so a rerun reads only files that are new or
replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..tables import write_parquet
from .common import age_of, sex_of

TAGS = ["PatientSex", "PatientAge"]
CACHE_COLUMNS = ["path", "size", "mtime_ns", "sex", "age"]


def header_tags(path: Path) -> tuple[str, str]:
    """(PatientSex, PatientAge) as written; blank where absent or the file is no readable DICOM (the
    shard step names such a file when it reads its pixels)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
    except Exception:  # noqa: BLE001  (any unreadable header is 'not said' here)
        return "", ""
    return str(ds.get("PatientSex", "") or ""), str(ds.get("PatientAge", "") or "")


def demographics(frame: pd.DataFrame, root: Path, cache: Path) -> tuple[pd.DataFrame, dict]:
    """`frame` (a harmonised table) with unknown sex and age filled from each image's header, and how
    many headers were read and how many came from the cache (which is then rewritten to hold exactly
    these images)."""
    stats = [(root / p).stat() for p in frame.path]
    keys = pd.DataFrame({"path": frame.path, "size": [s.st_size for s in stats],
                         "mtime_ns": [s.st_mtime_ns for s in stats]})  # fmt: skip
    known = pd.read_parquet(cache) if Path(cache).exists() else pd.DataFrame(columns=CACHE_COLUMNS)
    merged = keys.merge(known.astype({"size": np.int64, "mtime_ns": np.int64}), how="left",
                        on=["path", "size", "mtime_ns"])  # fmt: skip
    todo = merged.sex.isna()
    read = [header_tags(root / p) for p in merged.path[todo]]
    merged.loc[todo, "sex"] = [sex for sex, _ in read]
    merged.loc[todo, "age"] = [age for _, age in read]
    write_parquet(merged[CACHE_COLUMNS].astype({"sex": str, "age": str}), cache)
    sex, age = sex_of(merged.sex).to_numpy(), age_of(merged.age).to_numpy()
    frame = frame.assign(
        sex=np.where(frame.sex == "unknown", sex, frame.sex),
        age_years=np.where(frame.age_years.isna(), age, frame.age_years),
    )
    return frame, {"read": int(todo.sum()), "from cache": int((~todo).sum())}
