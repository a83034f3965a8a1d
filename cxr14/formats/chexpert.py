"""CheXpert v1.0 and CheXpert-v1.0-small (Irvin et al. 2019): `train.csv` (the CheXpert labeller's
reading of each report) and `valid.csv` (three radiologists' consensus), each `Path` starting with the
published folder name, which is replaced by the collection's `root`; and the test set's radiologist
labels, `test_labels.csv` as released with CheXlocalize (Saporta et al. 2022: `Path` from `test/` on
and the 14 observations, no sex, age or projection)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .common import (
    LABELLER,
    RADIOLOGISTS,
    SPLIT_NAMES,
    UNLABELLED,
    age_of,
    coded,
    column_or,
    read_csv,
    require,
    sex_of,
    view_of,
    with_findings,
)

# CheXpert's label -> the NIH finding it is taken as (MIMIC-CXR's too: the same labeller). An NIH
# finding no label maps to is not labelled by the collection.
LABELS = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}

# The folders a Path names its split by; CheXpert's train split is read by the labeller, its valid
# and test splits by radiologists.
SPLIT_FOLDERS = {"train": LABELLER, "valid": RADIOLOGISTS, "test": RADIOLOGISTS}


def read(labels: list, settings, **_) -> pd.DataFrame:
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["Path"], path)
        recorded = "Frontal/Lateral" in frame  # train.csv and valid.csv; test_labels.csv has only labels
        if recorded:
            require(frame, ["Sex", "Age", "Frontal/Lateral", "AP/PA"], path)
            frontal = frame["Frontal/Lateral"].str.strip() == "Frontal"
            view = view_of(frame["AP/PA"].where(frontal, "LATERAL"))
        else:  # the view from the file name (view1_frontal.jpg): the projection is not recorded
            name = frame.Path.str.rsplit("/", n=1).str[-1].str.lower()
            view = pd.Series(np.where(name.str.contains("lateral"), "LATERAL", "FRONTAL"), index=frame.index)
        parts_of_path = frame.Path.str.strip().str.split("/")
        # The published Path starts with the collection's folder (CheXpert-v1.0-small/train/...), except
        # test_labels.csv's, which starts at its split folder (test/patient64741/...).
        own_folder = ~parts_of_path.str[0].isin(SPLIT_FOLDERS)
        image = parts_of_path.str[1:].str.join("/").where(own_folder, parts_of_path.str.join("/"))
        folder = parts_of_path.str[1].where(own_folder, parts_of_path.str[0])
        out = pd.DataFrame({
            "image": image,
            "patient": frame.Path.str.extract(r"(patient\d+)", expand=False).fillna(""),
            "age_years": age_of(column_or(frame, "Age")),
            "sex": sex_of(column_or(frame, "Sex")),
            "view": view,
            "split": folder.map(SPLIT_NAMES).fillna(""),
            "labels_by": folder.map(SPLIT_FOLDERS).fillna(LABELLER),
            "row": frame.row,
        })  # fmt: skip
        parts.append(with_findings(out, labels_of(frame, path, settings.uncertain, settings.unmentioned)))
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["valid.csv"]}}}


def labels_of(frame: pd.DataFrame, path, uncertain: str, unmentioned: str) -> dict:
    """The CheXpert labeller's observations (1, 0, -1 uncertain, blank unmentioned) as NIH findings:
    uncertain by the `uncertain` policy; unmentioned by the `unmentioned` one: negative, as the
    CheXpert and MIMIC-CXR authors take it, or not labelled (`ignore`: each finding judged only on the
    reports that mention it), except on a "No Finding" row (negative either way)."""
    require(frame, list(LABELS), path)
    blank = {"negative": 0, "ignore": UNLABELLED}[unmentioned]
    codes = {"1": 1, "0": 0, "-1": {"ignore": UNLABELLED, "zero": 0, "one": 1}[uncertain], "": blank}
    healthy = (
        coded(frame, "No Finding", {"1": 1, "0": 0, "-1": 0, "": 0}, path) == 1 if "No Finding" in frame else False
    )
    out = {}
    for source, finding in LABELS.items():
        values = coded(frame, source, codes, path)
        not_mentioned = frame[source].str.strip() == ""
        out[finding] = values.where(~(not_mentioned & healthy), np.int8(0))
    return out
