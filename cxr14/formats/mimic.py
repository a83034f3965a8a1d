"""MIMIC-CXR-JPG 2.0.0/2.1.0 (Johnson et al. 2019): `mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz`,
images at `files/pXX/p<subject_id>/s<study_id>/<dicom_id>.jpg`; sex and age from MIMIC-IV's
`patients.csv`. Its labels come from the CheXpert labeller, so it shares CheXpert's label map; 2.1.0's
`mimic-cxr-2.1.0-test-set-labeled.csv` (radiologists' labels of test studies: `study_id` and the
observations, `Airspace Opacity` for `Lung Opacity`) is recognised among `files` and replaces the
labeller's labels of the studies it holds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import FINDINGS
from . import chexpert
from .common import (
    LABELLER,
    RADIOLOGISTS,
    SPLIT_NAMES,
    UNLABELLED,
    CollectionError,
    age_of,
    column_or,
    read_csv,
    require,
    sex_of,
    view_of,
    with_findings,
)

LABELS = chexpert.LABELS  # the CheXpert labeller's labels


def read(labels: list, *, metadata, split_file, patients, settings, **_) -> pd.DataFrame:
    """One row per image of the metadata table, the labels of its study (study_id): the radiologists'
    where a radiologist-labelled table holds the study, else the labeller's."""
    meta = read_csv(metadata)
    require(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], metadata)
    tables = [(p, read_csv(p)) for p in labels]
    kinds = {  # mimic-cxr-2.0.0-chexpert (per subject and study), then the 2.1.0 labelled test set
        LABELLER: [(p, t) for p, t in tables if "subject_id" in t],
        RADIOLOGISTS: [(p, t) for p, t in tables if "subject_id" not in t],
    }
    studies = pd.concat(
        [
            study_labels(kind[0][0], pd.concat([t for _, t in kind]), settings, who)
            for who, kind in kinds.items()
            if kind
        ],
        ignore_index=True,
    ).drop_duplicates("study_id", keep="last")  # the radiologists' labels of a study, where they exist
    frame = meta.assign(study_id=meta.study_id.str.strip()).merge(studies, on="study_id", how="left")
    frame[list(FINDINGS)] = frame[list(FINDINGS)].fillna(UNLABELLED).astype(np.int8)  # a study the labeller left out
    subject = frame.subject_id.str.strip()
    supine = (frame.ViewPosition.str.strip() == "AP") & (
        column_or(frame, "PatientOrientationCodeSequence_CodeMeaning").str.strip() == "Recumbent"
    )
    out = pd.DataFrame({
        "image": "files/p" + subject.str[:2] + "/p" + subject + "/s" + frame.study_id + "/"
        + frame.dicom_id.str.strip() + ".jpg",
        "patient": subject,
        "age_years": np.nan,
        "sex": "unknown",
        "view": view_of(frame.ViewPosition.where(~supine, "AP_SUPINE")),
        "split": "",
        "labels_by": frame.labels_by.fillna(""),
        "row": frame.row,
    })  # fmt: skip
    if split_file is not None:
        split = read_csv(split_file)
        require(split, ["dicom_id", "split"], split_file)
        out["split"] = frame.dicom_id.map(split.set_index("dicom_id").split.map(SPLIT_NAMES)).fillna("")
    if patients is not None:
        people = read_csv(patients)
        require(people, ["subject_id", "gender", "anchor_age", "anchor_year"], patients)
        people = people.set_index("subject_id")
        out["sex"] = sex_of(subject.map(people.gender))
        # MIMIC-IV gives each patient's age in one (shifted) anchor year; the study date is shifted alike.
        anchor_age = pd.to_numeric(subject.map(people.anchor_age), errors="coerce")
        anchor_year = pd.to_numeric(subject.map(people.anchor_year), errors="coerce")
        study_year = pd.to_numeric(column_or(frame, "StudyDate").str.strip().str[:4], errors="coerce")
        out["age_years"] = age_of(anchor_age + (study_year - anchor_year))
    return with_findings(out, {f: frame[f] for f in FINDINGS})


def study_labels(path, table: pd.DataFrame, settings, labels_by: str) -> pd.DataFrame:
    """The studies of the label tables of one kind (`study_id`, the 14 findings, `labels_by`), each study
    once: a study two tables of a kind label is an error naming the first table."""
    require(table, ["study_id", *chexpert.LABELS], path)
    table = table.assign(study_id=table.study_id.str.strip())
    repeated = table.duplicated("study_id", keep=False)
    if repeated.any():
        raise CollectionError(f"{path}: study {table.study_id[repeated].iloc[0]} is labelled twice "
                              f"(rows {list(table.row[repeated][:2])})")  # fmt: skip
    found = chexpert.labels_of(table, path, settings.uncertain, settings.unmentioned)
    return with_findings(table[["study_id"]].assign(labels_by=labels_by), found)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {
    "properties": {
        "files": {"default": ["mimic-cxr-2.0.0-chexpert.csv.gz"]},
        "metadata": {"default": "mimic-cxr-2.0.0-metadata.csv.gz"},
        "split_file": {"default": "mimic-cxr-2.0.0-split.csv.gz"},
        "patients": {"default": None},
    }
}
