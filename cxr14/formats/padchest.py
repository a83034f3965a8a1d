"""PadChest (BIMCV, Bustos et al. 2020): `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz`;
each image `<ImageID>` in the folder of its zip, `<ImageDir>/<ImageID>` as released, or flat under
root when every zip was unzipped into one folder (torchxrayvision's layout): each ImageDir whose
folder exists under root is read nested, the others flat, and the report counts each way."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd

from .common import (
    LABELLER,
    RADIOLOGISTS,
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

# PadChest's labels (the terms of its published label hierarchy, lower case) that make each NIH finding
# positive: the finding's own term and its children in the hierarchy. A term may make two (a
# hydropneumothorax is a pneumothorax and an effusion).
LABELS = {
    **dict.fromkeys(
        ["atelectasis", "laminar atelectasis", "lobar atelectasis", "segmental atelectasis", "round atelectasis",
         "total atelectasis", "atelectasis basal"], "Atelectasis"),
    "cardiomegaly": "Cardiomegaly",
    **dict.fromkeys(["pleural effusion", "loculated pleural effusion", "loculated fissural effusion", "empyema",
                     "hemothorax"], "Effusion"),
    "hydropneumothorax": ("Pneumothorax", "Effusion"),
    **dict.fromkeys(
        ["infiltrates", "interstitial pattern", "ground glass pattern", "reticular interstitial pattern",
         "reticulonodular interstitial pattern", "miliary opacities", "alveolar pattern"], "Infiltration"),
    **dict.fromkeys(["mass", "pulmonary mass", "mediastinal mass", "pleural mass", "breast mass", "soft tissue mass"],
                    "Mass"),
    **dict.fromkeys(["nodule", "multiple nodules"], "Nodule"),
    **dict.fromkeys(["pneumonia", "atypical pneumonia"], "Pneumonia"),
    "pneumothorax": "Pneumothorax",
    # In the tree, consolidation (and its air bronchogram) sits under infiltrates as well.
    **dict.fromkeys(["consolidation", "air bronchogram"], ("Consolidation", "Infiltration")),
    "pulmonary edema": "Edema",
    "emphysema": "Emphysema",
    **dict.fromkeys(["pulmonary fibrosis", "post radiotherapy changes", "asbestosis signs"], "Fibrosis"),
    **dict.fromkeys(["pleural thickening", "apical pleural thickening", "calcified pleural thickening"],
                    "Pleural_Thickening"),
    "hiatal hernia": "Hernia",
}  # fmt: skip

# Terms that say the study is not to be read: every such row is dropped, counted by the first of these
# it has.
UNREADABLE = {"exclude": "labelled 'exclude'", "suboptimal study": "labelled 'suboptimal study'"}

# Images the 01.02.19 table lists that the release does not hold as readable files (as torchxrayvision
# found them): dropped by reason, never counted against `max_missing`.
NOT_RELEASED = "not in the release's zips"
BROKEN = "truncated or corrupt in the release"
KNOWN_FAULTS = {
    **dict.fromkeys([
        "216840111366964012819207061112010307142602253_04-014-084.png",
        "216840111366964012989926673512011074122523403_00-163-058.png",
        "216840111366964012959786098432011033083840143_00-176-115.png",
        "216840111366964012558082906712009327122220177_00-102-064.png",
        "216840111366964012339356563862009072111404053_00-043-192.png",
        "216840111366964013076187734852011291090445391_00-196-188.png",
        "216840111366964012373310883942009117084022290_00-064-025.png",
        "216840111366964012283393834152009033102258826_00-059-087.png",
        "216840111366964012373310883942009170084120009_00-097-074.png",
        "216840111366964012819207061112010315104455352_04-024-184.png",
        "216840111366964012819207061112010306085429121_04-020-102.png",
    ], NOT_RELEASED),
    **dict.fromkeys([
        "216840111366964012989926673512011083134050913_00-168-009.png",
        "216840111366964012373310883942009152114636712_00-102-045.png",
        "216840111366964012819207061112010281134410801_00-129-131.png",
        "216840111366964012487858717522009280135853083_00-075-001.png",
        "216840111366964012989926673512011151082430686_00-157-045.png",
        "216840111366964013686042548532013208193054515_02-026-007.png",
        "216840111366964013590140476722013058110301622_02-056-111.png",
        "216840111366964013590140476722013043111952381_02-065-198.png",
        "216840111366964013829543166512013353113303615_02-092-190.png",
        "216840111366964013962490064942014134093945580_01-178-104.png",
    ], BROKEN),
}  # fmt: skip

# Who labelled a row (MethodLabel): a physician read a quarter of the reports, an RNN the rest.
METHODS = {"Physician": RADIOLOGISTS, "RNN_model": LABELLER}

NESTED, FLAT = "<ImageDir>/<ImageID>", "<ImageID> (flat)"


def findings_of(term: str) -> tuple[str, ...]:
    """The NIH findings a PadChest term makes positive (none for most of its 174 findings)."""
    found = LABELS.get(term, ())
    return (found,) if isinstance(found, str) else found


FINDINGS_LABELLED = sorted({f for term in LABELS for f in findings_of(term)})  # all 14


def read(labels: list, settings, **_) -> pd.DataFrame:
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["ImageID", "ImageDir", "PatientID", "Labels", "Projection", "PatientSex_DICOM",
                        "PatientBirth", "StudyDate_DICOM"], path)  # fmt: skip
        found = {f: np.zeros(len(frame), np.int8) for f in FINDINGS_LABELLED}
        unlabelled = np.zeros(len(frame), bool)
        drop = np.full(len(frame), "", dtype=object)
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
            terms = [str(t).strip().lower() for t in terms]
            drop[i] = next((reason for term, reason in UNREADABLE.items() if term in terms), "")
            for term in terms:
                for finding in findings_of(term):
                    found[finding][i] = 1
        image_id = frame.ImageID.str.strip()
        fault = image_id.map(KNOWN_FAULTS)
        drop = np.where(fault.notna(), fault.fillna(""), drop)  # the release's own fault first
        folder = frame.ImageDir.str.strip().str.replace(r"\.0$", "", regex=True)
        nested = folder.map({d: (Path(settings.root) / d).is_dir() for d in folder.unique()}).astype(bool)
        study_year = pd.to_numeric(frame.StudyDate_DICOM.str[:4], errors="coerce")
        out = pd.DataFrame({
            "image": (folder + "/" + image_id).where(nested, image_id),
            "patient": frame.PatientID.str.strip(),
            "age_years": age_of(study_year - pd.to_numeric(frame.PatientBirth, errors="coerce")),
            "sex": sex_of(frame.PatientSex_DICOM),
            "view": view_of(frame.Projection),
            "split": "",
            "labels_by": column_or(frame, "MethodLabel").str.strip().map(METHODS).fillna(""),
            "drop": drop,
            "layout": np.where(nested, NESTED, FLAT),
            "row": frame.row,
        })  # fmt: skip
        out = with_findings(
            out, {f: pd.Series(np.where(unlabelled, UNLABELLED, v), dtype=np.int8) for f, v in found.items()}
        )
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"]}}}
