"""A hospital's export: one row per image, its columns named in the config (`columns`, `findings`).
An export without finding columns (and no `findings` map) is a collection without labels: it is
monitored, never judged."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import FINDINGS
from .common import (
    SPLIT_NAMES,
    UNLABELLED,
    age_of,
    coded,
    column_or,
    date_of,
    read_csv,
    require,
    sex_of,
    view_of,
    with_findings,
)

LABELS = {f: f for f in FINDINGS}  # unless the config's `findings` names other columns


def read(labels: list, settings, **_) -> pd.DataFrame:
    """A hospital's CSV: one row per image; finding columns valued 1, 0 or blank (not labelled), or none."""
    columns = settings.columns
    mapping = settings.findings or {f: f for f in FINDINGS}
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, [columns["path"], columns["patient"]], path)
        present = {source: finding for source, finding in mapping.items() if source in frame.columns}
        if settings.findings is not None:
            require(frame, list(mapping), path)
        out = pd.DataFrame({
            "image": frame[columns["path"]].str.strip(),
            "patient": frame[columns["patient"]].str.strip(),
            "age_years": age_of(column_or(frame, columns["age"])),
            "sex": sex_of(column_or(frame, columns["sex"])),
            "view": view_of(column_or(frame, columns["view"])),
            "split": column_or(frame, columns["split"]).str.strip().str.lower().map(lambda s: SPLIT_NAMES.get(s, s)),
            "study_date": date_of(column_or(frame, columns["date"])),
            "row": frame.row,
        })  # fmt: skip
        found = {}
        for source, finding in present.items():
            values = coded(frame, source, {"1": 1, "0": 0, "": UNLABELLED}, path)
            found[finding] = values if finding not in found else np.maximum(found[finding], values)
        parts.append(with_findings(out, found))
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"required": ["files"], "properties": {"files": {"minItems": 1}}}
