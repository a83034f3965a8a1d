"""MIMIC-CXR-JPG 2.0.0/2.1.0 (Johnson et al. 2019): `mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz`,
images at `files/pXX/p<subject_id>/s<study_id>/<dicom_id>.jpg`; sex and age from MIMIC-IV's
`patients.csv`. Its labels come from the CheXpert labeller, so it shares CheXpert's label map."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..constants import FINDINGS
from . import chexpert
from .common import SPLIT_NAMES, UNLABELLED, CollectionError, age_of, read_csv, require, sex_of, view_of, with_findings

LABELS = chexpert.LABELS  # the CheXpert labeller's labels


def read(labels: list, *, metadata, split_file, patients, settings) -> pd.DataFrame:
    """One row per image of the metadata table, the labels of its study (subject_id, study_id)."""
    meta = read_csv(metadata)
    require(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], metadata)
    studies = pd.concat([read_csv(p) for p in labels], ignore_index=True)
    require(studies, ["subject_id", "study_id", *chexpert.LABELS], labels[0])
    repeated = studies.duplicated(["subject_id", "study_id"], keep=False)
    if repeated.any():
        raise CollectionError(f"{labels[0]}: study {studies.study_id[repeated].iloc[0]} is labelled twice "
                              f"(rows {list(studies.row[repeated][:2])})")  # fmt: skip
    found = chexpert.labels_of(studies, labels[0], settings.uncertain)
    studies = with_findings(studies[["subject_id", "study_id"]].copy(), found)
    frame = meta.merge(studies, on=["subject_id", "study_id"], how="left")
    frame[list(FINDINGS)] = frame[list(FINDINGS)].fillna(UNLABELLED).astype(np.int8)  # a study the labeller left out
    subject = frame.subject_id.str.strip()
    out = pd.DataFrame({
        "image": "files/p" + subject.str[:2] + "/p" + subject + "/s" + frame.study_id.str.strip() + "/"
        + frame.dicom_id.str.strip() + ".jpg",
        "patient": subject,
        "age_years": np.nan,
        "sex": "unknown",
        "view": view_of(frame.ViewPosition),
        "split": "",
        "row": frame.row,
    })  # fmt: skip
    if split_file is not None:
        split = read_csv(split_file)
        require(split, ["dicom_id", "split"], split_file)
        out["split"] = frame.dicom_id.map(split.set_index("dicom_id").split.map(SPLIT_NAMES)).fillna("")
    if patients is not None:
        people = read_csv(patients)
        require(people, ["subject_id", "gender", "anchor_age"], patients)
        people = people.set_index("subject_id")
        out["sex"] = sex_of(subject.map(people.gender))
        out["age_years"] = age_of(subject.map(people.anchor_age))  # MIMIC-IV's age at the anchor year
    return with_findings(out, {f: frame[f] for f in FINDINGS})


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {
    "properties": {
        "files": {"default": ["mimic-cxr-2.0.0-chexpert.csv.gz"]},
        "metadata": {"default": "mimic-cxr-2.0.0-metadata.csv.gz"},
        "split_file": {"default": "mimic-cxr-2.0.0-split.csv.gz"},
        "patients": {"default": None},
    }
}
