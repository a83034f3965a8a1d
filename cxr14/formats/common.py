"""What every collection format shares: the columns each reader gives, the label codes, and the
checks that name the file, the row and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import FINDINGS

UNLABELLED = -1  # in a finding column: the collection does not say (masked from every metric)

# Who labelled a row (the `labels_by` column every reader gives): a radiologist's read (consensus or
# panel), or a labeller run over the report (CheXpert's, PadChest's RNN). The report counts each.
RADIOLOGISTS, LABELLER = "radiologists", "labeller"


# `study_date` (YYYY-MM-DD, blank when unknown) lets `monitor` follow a collection month by month.
COLUMNS = ["image_index", "path", "patient", "patient_id", "age_years", "sex", "view", "split", "study_date", *FINDINGS]


LATERAL = {"LATERAL", "LL", "RL", "L", "LAT"}


SPLIT_NAMES = {"train": "train", "valid": "val", "validate": "val", "val": "val", "test": "test"}


class CollectionError(ValueError):
    """A collection's files do not hold what its format promises; the message names the file, the row
    (line in the file, header = 1) and the reason."""


def read_csv(path) -> pd.DataFrame:
    """A table as strings (blank cells ""), with `row`: its file and line (header = line 1)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CollectionError(f"{path}: not a readable CSV table ({exc})") from exc
    frame.columns = [c.strip() for c in frame.columns]
    frame["row"] = [f"{Path(path).name}:{i + 2}" for i in range(len(frame))]
    return frame


def require(frame: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CollectionError(f"{path}: missing column(s) {missing}; the columns are {list(frame.columns)}")


def coded(frame: pd.DataFrame, column: str, codes: dict, path) -> pd.Series:
    """A label column's values mapped by `codes` ("1.0" and "1" alike); any other value is an error
    naming the row."""
    values = frame[column].str.strip()
    numeric = pd.to_numeric(values, errors="coerce")
    keys = np.where(numeric.notna(), numeric.map(lambda v: f"{v:g}" if pd.notna(v) else ""), values)
    out = pd.Series(keys, index=frame.index).map(codes)
    bad = out.isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CollectionError(
            f"{path}, row {frame.row.iloc[i]}: column {column!r} has {values.iloc[i]!r}, not one of "
            f"{sorted(k for k in codes if k)} or blank ({int(bad.sum())} such rows)"
        )
    return out.astype(np.int8)


def with_findings(frame: pd.DataFrame, labels: dict[str, pd.Series]) -> pd.DataFrame:
    """`frame` with the 14 NIH finding columns: from `labels` {finding: values}, UNLABELLED otherwise."""
    for finding in FINDINGS:
        frame[finding] = labels[finding] if finding in labels else np.int8(UNLABELLED)
    return frame


def sex_of(values: pd.Series) -> pd.Series:
    """M, F or unknown, from M/F/Male/Female/O/blank."""
    s = values.fillna("").astype(str).str.strip().str.upper().str[:1]
    return s.where(s.isin(["M", "F"]), "unknown")


# A supine antero-posterior film (the patient lying: PadChest's AP_horizontal, MIMIC's recumbent AP) is
# its own view: its heart looks larger and its effusions spread, so `views` can keep or drop it.
SUPINE = {"AP_HORIZONTAL": "AP_SUPINE", "AP_SUPINE": "AP_SUPINE"}


def view_of(values: pd.Series) -> pd.Series:
    """PA, AP, AP_SUPINE, LATERAL or the collection's own code, upper case; blank is unknown."""
    v = values.fillna("").astype(str).str.strip().str.upper().str.replace(" ", "_")
    v = v.where(~v.isin(LATERAL), "LATERAL").replace(SUPINE)
    return v.where(v != "", "unknown")


# A DICOM age string (PS3.5 AS: three digits and a unit, `081Y`, `006M`, `010W`, `003D`), as DICOM headers
# and many hospital exports write ages. The units in years:
AGE_UNITS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def age_of(values: pd.Series) -> pd.Series:
    """Years as floats, from numbers or DICOM age strings; blank, 0-or-less or unreadable is unknown (NaN)."""
    text = values.fillna("").astype(str).str.strip().str.upper()
    age = pd.to_numeric(text, errors="coerce").astype(np.float64)
    dicom = text.str.extract(r"^(\d{1,3})\s*([YMWD])$")
    coded = dicom[0].notna()
    if coded.any():
        age[coded] = dicom[0][coded].astype(np.float64) * dicom[1][coded].map(AGE_UNITS)
    return age.where(age > 0)


def date_of(values: pd.Series) -> pd.Series:
    """ISO dates (YYYY-MM-DD) from DICOM dates (YYYYMMDD) or ISO dates and times; blank or unreadable
    is unknown ("")."""
    text = values.fillna("").astype(str).str.strip()
    compact = text.str.fullmatch(r"\d{8}")
    parsed = pd.to_datetime(text.where(~compact, text.str[:4] + "-" + text.str[4:6] + "-" + text.str[6:8]),
                            errors="coerce", format="ISO8601")  # fmt: skip
    return pd.Series(parsed.dt.strftime("%Y-%m-%d").fillna("").to_numpy(dtype=object), index=values.index)


def column_or(frame: pd.DataFrame, column: str, default="") -> pd.Series:
    """An optional column, or `default` in every row."""
    return frame[column] if column in frame.columns else pd.Series(default, index=frame.index)
