"""A plain folder of images, no labels: every PNG, JPEG and DICOM under `root` (those matching
`include`, when given), as a hospital's images arrive before anyone has read them. Each DICOM's
header gives its patient (PatientID), view (ViewPosition), sex, age and study date; a PNG or JPEG's
patient is the first folder under root it sits in (its own name when it sits in root), and the rest
is unknown. Every finding is UNLABELLED: the collection is monitored, never judged."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from .common import age_of, date_of, sex_of, view_of, with_findings

LABELS: dict = {}  # a folder labels nothing
SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
TAGS = ["PatientID", "ViewPosition", "PatientSex", "PatientAge", "StudyDate"]


def header(path: Path) -> dict:
    """The TAGS of a DICOM file as written ("" where absent or unreadable: the shard step names a file
    it cannot read); the tags only, never the pixels."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
    except Exception:  # noqa: BLE001  (an unreadable header says nothing here)
        return dict.fromkeys(TAGS, "")
    return {tag: str(ds.get(tag, "") or "").strip() for tag in TAGS}


def read(labels: list, settings, root=None, **_) -> pd.DataFrame:
    """Every image file under `root` (sorted by path), one row each; `labels` is empty."""
    root = Path(root)
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in SUFFIXES and p.is_file() and _included(p.relative_to(root), settings.include)
    )
    tags = [
        header(root / f) if Path(f).suffix.lower() in (".dcm", ".dicom") else dict.fromkeys(TAGS, "") for f in files
    ]
    tags = pd.DataFrame(tags, columns=TAGS, index=pd.RangeIndex(len(files)))
    folders = pd.Series([_patient_of(f) for f in files], dtype=object)
    out = pd.DataFrame({
        "image": pd.Series(files, dtype=object),
        "patient": tags.PatientID.where(tags.PatientID != "", folders),
        "age_years": age_of(tags.PatientAge),
        "sex": sex_of(tags.PatientSex),
        "view": view_of(tags.ViewPosition),
        "split": "",
        "study_date": date_of(tags.StudyDate),
        "row": pd.Series(files, dtype=object),
    })  # fmt: skip
    return with_findings(out, {})


def _included(relative: Path, patterns) -> bool:
    return not patterns or any(PurePosixPath(relative.as_posix()).match(p) for p in patterns)


def _patient_of(relative: str) -> str:
    parts = PurePosixPath(relative).parts
    return parts[0] if len(parts) > 1 else PurePosixPath(relative).stem


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": [], "maxItems": 0}}}
