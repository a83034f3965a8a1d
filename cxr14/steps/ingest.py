"""Step `ingest`: an external collection, read as published (`cxr14.formats`), to one harmonised table
like NIH's `images.parquet` and a report of what was kept and dropped, by reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..constants import FINDINGS
from ..files import write_json
from ..formats import FORMATS, LABEL_MAP, READERS, UNLABELLED, harmonise, headers, labelled_findings
from ..tables import write_parquet

log = logging.getLogger(__name__)


def ingest(
    *,
    labels: list,
    metadata,
    split_file,
    patients,
    nih=None,
    folder=None,
    images,
    report,
    root: str,
    name: str,
    settings,
    header_cache=None,
) -> dict:
    """Step `ingest`: collection `name` (its `labels` tables, and for MIMIC its `metadata`, `split_file`
    and `patients` tables; images under `root`) to the harmonised `images` table (Parquet) and its
    `report` (JSON: counts, prevalence beside the `nih` table's, drops by reason, who labelled, the
    policies applied). `settings` are the dataset's config (`settings.DatasetSettings`); a format whose
    tables give no sex or age reads them from the DICOM headers, cached in `header_cache`. A folder
    collection (`folder`, its root) is every image under it, no tables."""
    raw = READERS[settings.format](labels, metadata=metadata, split_file=split_file, patients=patients,
                                   settings=settings, root=folder or root)  # fmt: skip
    frame, counts, files, described = harmonise(raw, Path(root), settings)
    if getattr(FORMATS[settings.format], "HEADERS", False):
        frame, described["dicom_headers"] = headers.demographics(frame, Path(root), Path(header_cache))
    nih_labels = None if nih is None else pd.read_parquet(nih, columns=list(FINDINGS))
    summary = describe(frame, counts, name, settings, nih_labels) | described | {"image_files": files}
    write_parquet(frame, images)
    write_json(summary, report)
    log.info("%s: %d images of %d patients kept; dropped %s", name, len(frame), summary["patients"], counts)
    return summary


def describe(frame: pd.DataFrame, dropped: dict, name: str, settings, nih: pd.DataFrame | None = None) -> dict:
    """The ingest report: what was kept and dropped, and per finding the labelled, positive counts and
    prevalence (beside NIH's over all its images, given its table)."""
    per_finding = {}
    for f in FINDINGS:
        values = frame[f].to_numpy()
        known = values != UNLABELLED
        per_finding[f] = {
            "labelled": int(known.sum()),
            "positives": int((values == 1).sum()),
            "prevalence": float((values[known] == 1).mean()) if known.any() else None,
        } | ({} if nih is None else {"nih_prevalence": float((nih[f] == 1).mean())})
    return {
        "name": name,
        "format": settings.format,
        "images": int(len(frame)),
        "patients": int(frame.patient.nunique()),
        # None labelled: a collection without labels (a folder, an export before its reads), monitored only.
        "labelled_findings": labelled_findings(frame),
        "study_dates": int((frame.study_date != "").sum()),
        "findings": per_finding,
        "dropped": dropped,
        "splits": {k: int(v) for k, v in frame.split.replace("", "none").value_counts().sort_index().items()},
        "views": {k: int(v) for k, v in frame.view.value_counts().sort_index().items()},
        "sex": {k: int(v) for k, v in frame.sex.value_counts().sort_index().items()},
        "age_known": int(frame.age_years.notna().sum()),
        "policy": {
            "uncertain": settings.uncertain,
            "unmentioned": settings.unmentioned if settings.format in ("chexpert", "mimic") else None,
            "readers": settings.readers if settings.format == "vindr" else None,
            "views": list(settings.views),
            "splits": settings.splits,
            "labelled_by": settings.labelled_by,
            "split": settings.split,
            "label_map": dict(settings.findings or LABEL_MAP[settings.format]),
        },
    }
