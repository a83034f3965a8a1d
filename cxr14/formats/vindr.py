"""VinDr-CXR 1.0.0 on PhysioNet (Nguyen et al. 2022): `annotations/image_labels_{train,test}.csv`,
images at `{train,test}/<image_id>.dicom`; one row per radiologist on train, combined by `readers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import coded, read_csv, require, with_findings

LABELS = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Emphysema": "Emphysema",
    "Infiltration": "Infiltration",
    "Pleural effusion": "Effusion",
    "Pleural thickening": "Pleural_Thickening",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Pulmonary fibrosis": "Fibrosis",
}


# How several readers' labels of one image (VinDr-CXR train) make one: `readers` in the config.
READER_RULES = {
    "any": lambda votes: votes.max(),
    "all": lambda votes: votes.min(),
    "majority": lambda votes: votes.mean() > 0.5,
}


def read(labels: list, settings, **_) -> pd.DataFrame:
    """image_labels_{train,test}.csv: train has a row per radiologist (`rad_id`), combined by the
    `readers` rule; test has the consensus, one row per image. The tables give no sex, age or view."""
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["image_id", *LABELS], path)
        split = "test" if "test" in Path(path).name else "train"
        values = {source: coded(frame, source, {"1": 1, "0": 0}, path) for source in LABELS}
        votes = pd.DataFrame(values).groupby(frame.image_id.str.strip(), sort=True)
        combined = READER_RULES[settings.readers](votes).astype(np.int8)
        first_row = frame.groupby(frame.image_id.str.strip(), sort=True).row.first()
        out = pd.DataFrame({
            "image": split + "/" + combined.index + ".dicom",
            "patient": combined.index,  # VinDr-CXR publishes no patient id: each image is its own
            "age_years": np.nan,
            "sex": "unknown",
            "view": "PA",  # the collection is postero-anterior only (Nguyen et al. 2022)
            "split": split,
            "row": first_row.to_numpy(),
        })  # fmt: skip
        parts.append(with_findings(out.reset_index(drop=True), {
            finding: combined[source].to_numpy() for source, finding in LABELS.items()}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["annotations/image_labels_test.csv"]}}}
