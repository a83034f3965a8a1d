"""PadChest (BIMCV, Bustos et al. 2020): `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz`,
images at `<ImageDir>/<ImageID>` (the folder of each published zip)."""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

from .common import UNLABELLED, CollectionError, age_of, read_csv, require, sex_of, view_of, with_findings

# PadChest's labels (its hierarchy's terms, lower case) that make each NIH finding positive.
LABELS = {
    **dict.fromkeys(
        ["atelectasis", "laminar atelectasis", "lobar atelectasis", "segmental atelectasis", "round atelectasis",
         "total atelectasis"], "Atelectasis"),
    "cardiomegaly": "Cardiomegaly",
    **dict.fromkeys(["pleural effusion", "loculated pleural effusion"], "Effusion"),
    **dict.fromkeys(
        ["infiltrates", "interstitial pattern", "ground glass pattern", "reticular interstitial pattern",
         "reticulonodular interstitial pattern", "alveolar pattern"], "Infiltration"),
    **dict.fromkeys(["mass", "pulmonary mass", "mediastinal mass", "pleural mass"], "Mass"),
    **dict.fromkeys(["nodule", "multiple nodules"], "Nodule"),
    **dict.fromkeys(["pneumonia", "atypical pneumonia"], "Pneumonia"),
    "pneumothorax": "Pneumothorax",
    **dict.fromkeys(["consolidation", "air bronchogram"], "Consolidation"),
    "pulmonary edema": "Edema",
    "emphysema": "Emphysema",
    "pulmonary fibrosis": "Fibrosis",
    **dict.fromkeys(["pleural thickening", "apical pleural thickening", "calcified pleural thickening"],
                    "Pleural_Thickening"),
    "hiatal hernia": "Hernia",
}  # fmt: skip


def read(labels: list, settings, **_) -> pd.DataFrame:
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["ImageID", "ImageDir", "PatientID", "Labels", "Projection", "PatientSex_DICOM",
                        "PatientBirth", "StudyDate_DICOM"], path)  # fmt: skip
        found = {f: np.zeros(len(frame), np.int8) for f in set(LABELS.values())}
        unlabelled = np.zeros(len(frame), bool)
        for i, text in enumerate(frame.Labels):
            try:
                terms = ast.literal_eval(text) if text.strip() else None
            except (ValueError, SyntaxError) as exc:
                raise CollectionError(
                    f"{path}, row {frame.row.iloc[i]}: Labels {text!r} is not a list ({exc})"
                ) from exc
            if terms is None:
                unlabelled[i] = True  # no report labels: the row says nothing
                continue
            for term in terms:
                finding = LABELS.get(str(term).strip().lower())
                if finding:
                    found[finding][i] = 1
        study_year = pd.to_numeric(frame.StudyDate_DICOM.str[:4], errors="coerce")
        out = pd.DataFrame({
            "image": frame.ImageDir.str.strip().str.replace(r"\.0$", "", regex=True) + "/" + frame.ImageID.str.strip(),
            "patient": frame.PatientID.str.strip(),
            "age_years": age_of(study_year - pd.to_numeric(frame.PatientBirth, errors="coerce")),
            "sex": sex_of(frame.PatientSex_DICOM),
            "view": view_of(frame.Projection),
            "split": "",
            "row": frame.row,
        })  # fmt: skip
        out = with_findings(
            out, {f: pd.Series(np.where(unlabelled, UNLABELLED, v), dtype=np.int8) for f, v in found.items()}
        )
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"]}}}
