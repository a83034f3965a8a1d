"""CheXpert v1.0 and CheXpert-v1.0-small (Irvin et al. 2019): `train.csv`, `valid.csv`; each `Path`
starts with the published folder name, which is replaced by the collection's `root`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .common import SPLIT_NAMES, UNLABELLED, age_of, coded, read_csv, require, sex_of, view_of, with_findings

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


def read(labels: list, settings, **_) -> pd.DataFrame:
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"], path)
        frontal = frame["Frontal/Lateral"].str.strip() == "Frontal"
        out = pd.DataFrame({
            # The published Path starts with the collection's folder (CheXpert-v1.0-small/train/...).
            "image": frame.Path.str.split("/", n=1).str[1],
            "patient": frame.Path.str.extract(r"(patient\d+)", expand=False).fillna(""),
            "age_years": age_of(frame.Age),
            "sex": sex_of(frame.Sex),
            "view": view_of(frame["AP/PA"].where(frontal, "LATERAL")),
            "split": frame.Path.str.split("/").str[1].map(SPLIT_NAMES).fillna(""),
            "row": frame.row,
        })  # fmt: skip
        parts.append(with_findings(out, labels_of(frame, path, settings.uncertain)))
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["valid.csv"]}}}


def labels_of(frame: pd.DataFrame, path, uncertain: str) -> dict:
    """The CheXpert labeller's observations (1, 0, -1 uncertain, blank unmentioned) as NIH findings:
    uncertain by the policy; unmentioned is UNLABELLED, except on a "No Finding" row (negative)."""
    require(frame, list(LABELS), path)
    codes = {"1": 1, "0": 0, "-1": {"ignore": UNLABELLED, "zero": 0, "one": 1}[uncertain], "": UNLABELLED}
    healthy = (
        coded(frame, "No Finding", {"1": 1, "0": 0, "-1": 0, "": 0}, path) == 1 if "No Finding" in frame else False
    )
    out = {}
    for source, finding in LABELS.items():
        values = coded(frame, source, codes, path)
        unmentioned = frame[source].str.strip() == ""
        out[finding] = values.where(~(unmentioned & healthy), np.int8(0))
    return out
