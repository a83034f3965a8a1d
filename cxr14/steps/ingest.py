"""Step `ingest`: an external collection, read as published (`cxr14.formats`), to one harmonised table
like NIH's `images.parquet` and a report of what was kept and dropped, by reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..constants import FINDINGS
from ..files import write_json
from ..formats import LABEL_MAP, READERS, UNLABELLED, harmonise, labelled_findings
from ..tables import write_parquet

log = logging.getLogger(__name__)


def ingest(*, labels: list, metadata, split_file, patients, images, report, root: str, name: str, settings) -> dict:
    """Step `ingest`: collection `name` (its `labels` tables, and for MIMIC its `metadata`, `split_file`
    and `patients` tables; images under `root`) to the harmonised `images` table (Parquet) and its
    `report` (JSON: counts, prevalence, drops by reason, the policies applied). `settings` are the
    dataset's config (`runs.DatasetSettings`)."""
    raw = READERS[settings.format](labels, metadata=metadata, split_file=split_file, patients=patients,
                                   settings=settings)  # fmt: skip
    frame, counts, files = harmonise(raw, Path(root), settings)
    summary = describe(frame, counts, name, settings) | {"image_files": files}
    write_parquet(frame, images)
    write_json(summary, report)
    log.info("%s: %d images of %d patients kept; dropped %s", name, len(frame), summary["patients"], counts)
    return summary


def describe(frame: pd.DataFrame, dropped: dict, name: str, settings) -> dict:
    """The ingest report: what was kept and dropped, and per finding the labelled, positive counts."""
    per_finding = {}
    for f in FINDINGS:
        values = frame[f].to_numpy()
        known = values != UNLABELLED
        per_finding[f] = {
            "labelled": int(known.sum()),
            "positives": int((values == 1).sum()),
            "prevalence": float((values[known] == 1).mean()) if known.any() else None,
        }
    return {
        "name": name,
        "format": settings.format,
        "images": int(len(frame)),
        "patients": int(frame.patient.nunique()),
        "labelled_findings": labelled_findings(frame),
        "findings": per_finding,
        "dropped": dropped,
        "splits": {k: int(v) for k, v in frame.split.replace("", "none").value_counts().sort_index().items()},
        "views": {k: int(v) for k, v in frame.view.value_counts().sort_index().items()},
        "sex": {k: int(v) for k, v in frame.sex.value_counts().sort_index().items()},
        "policy": {
            "uncertain": settings.uncertain,
            "readers": settings.readers if settings.format == "vindr" else None,
            "views": list(settings.views),
            "splits": settings.splits,
            "split": settings.split,
            "label_map": dict(settings.findings or LABEL_MAP[settings.format]),
        },
    }
