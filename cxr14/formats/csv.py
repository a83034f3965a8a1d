"""A hospital's export: one row per image, its columns named in the config (`columns`, `findings`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import FINDINGS
from .common import (
    SPLIT_NAMES,
    UNLABELLED,
    CollectionError,
    age_of,
    coded,
    column_or,
    read_csv,
    require,
    sex_of,
    view_of,
    with_findings,
)

LABELS = {f: f for f in FINDINGS}  # unless the config's `findings` names other columns


def read(labels: list, settings, **_) -> pd.DataFrame:
    """A hospital's CSV: one row per image; finding columns valued 1, 0 or blank (not labelled)."""
    columns = settings.columns
    mapping = settings.findings or {f: f for f in FINDINGS}
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, [columns["path"], columns["patient"]], path)
        present = {source: finding for source, finding in mapping.items() if source in frame.columns}
        if settings.findings is not None:
            require(frame, list(mapping), path)
        if not present:
            raise CollectionError(f"{path}: no finding column; name them as the NIH findings {list(FINDINGS)} "
                                  "or map yours with the dataset's `findings`")  # fmt: skip

        out = pd.DataFrame({
            "image": frame[columns["path"]].str.strip(),
            "patient": frame[columns["patient"]].str.strip(),
            "age_years": age_of(column_or(frame, columns["age"])),
            "sex": sex_of(column_or(frame, columns["sex"])),
            "view": view_of(column_or(frame, columns["view"])),
            "split": column_or(frame, columns["split"]).str.strip().str.lower().map(lambda s: SPLIT_NAMES.get(s, s)),
            "row": frame.row,
        })  # fmt: skip
        found = {}
        for source, finding in present.items():
            values = coded(frame, source, {"1": 1, "0": 0, "": UNLABELLED}, path)
            found[finding] = values if finding not in found else np.maximum(found[finding], values)
        parts.append(with_findings(out, found))
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"required": ["files"]}
