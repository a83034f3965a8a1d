"""VinDr-CXR (Nguyen et al. 2022) as two releases share it, images at `{train,test}/<image_id>.dicom`:
- PhysioNet 1.0.0: `annotations/image_labels_{train,test}.csv`, one row per radiologist on train (the
  image's 28 labels, 0/1), the consensus on test; and `annotations/annotations_{train,test}.csv`, one
  row per box (`image_id, rad_id, class_name, x_min, y_min, x_max, y_max`) of its 22 local labels;
- Kaggle's VinBigData competition (2020): `train.csv`, one row per box, `image_id, class_name,
  class_id, rad_id, x_min, y_min, x_max, y_max` over 14 classes, "No finding" rows without a box.
A box table makes image-level labels: a reader says a finding when they drew a box of it. Several
readers of one image are combined by `readers`. Neither table gives sex, age or view: sex and age
come from each image's DICOM header (`HEADERS`), the view is PA (the collection is PA only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import RADIOLOGISTS, CollectionError, coded, column_or, read_csv, require, with_findings

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

NO_FINDING = "No finding"
# The classes each box table draws: PhysioNet's 22 local labels, and VinBigData's 14 (`class_id` 0-13;
# 14 is "No finding"). A finding a table cannot draw is not labelled by it (Pneumonia is no box).
LOCAL_LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung cavity", "Lung cyst", "Lung Opacity",
    "Mediastinal shift", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture",
]  # fmt: skip
VINBIGDATA_CLASSES = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD", "Infiltration",
    "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis",
]  # fmt: skip

# How several readers' labels of one image (VinDr-CXR train) make one: `readers` in the config.
READER_RULES = {
    "any": lambda votes: votes.max(),
    "all": lambda votes: votes.min(),
    "majority": lambda votes: votes.mean() > 0.5,
}

HEADERS = True  # sex and age are read from the images' DICOM headers (`formats.headers`)


def read(labels: list, settings, **_) -> pd.DataFrame:
    """Each table's images, their readers' labels combined by the `readers` rule (a test table of
    image labels holds the consensus, one row per image)."""
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["image_id"], path)
        split = "test" if "test" in Path(path).name else "train"
        image_id = frame.image_id.str.strip()
        votes = box_votes(frame, path) if "class_name" in frame else image_votes(frame, path)
        combined = READER_RULES[settings.readers](votes.groupby(level=0, sort=True)).astype(np.int8)
        first_row = frame.groupby(image_id, sort=True).row.first()
        out = pd.DataFrame({
            "image": split + "/" + combined.index + ".dicom",
            "patient": combined.index,  # VinDr-CXR publishes no patient id: each image is its own
            "age_years": np.nan,
            "sex": "unknown",
            "view": "PA",  # the collection is postero-anterior only (Nguyen et al. 2022)
            "split": split,
            "labels_by": RADIOLOGISTS,
            "row": first_row.loc[combined.index].to_numpy(),
        })  # fmt: skip
        parts.append(with_findings(out.reset_index(drop=True), {
            LABELS[source]: combined[source].to_numpy() for source in combined.columns}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def image_votes(frame: pd.DataFrame, path) -> pd.DataFrame:
    """image_labels_*.csv: each row's 0/1 per mapped label, indexed by image."""
    require(frame, list(LABELS), path)
    values = {source: coded(frame, source, {"1": 1, "0": 0}, path) for source in LABELS}
    return pd.DataFrame(values).set_axis(frame.image_id.str.strip())


def box_votes(frame: pd.DataFrame, path) -> pd.DataFrame:
    """A box table: per (image, reader), 1 for each mapped class the reader drew a box of, else 0 (a
    "No finding" row says the reader drew none); indexed by image. The classes the release draws are
    VinBigData's where the table has `class_id`, else PhysioNet's local labels."""
    classes = VINBIGDATA_CLASSES if "class_id" in frame else LOCAL_LABELS
    name = frame.class_name.str.strip()
    unknown = ~name.isin([*classes, NO_FINDING])
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise CollectionError(
            f"{path}, row {frame.row.iloc[i]}: class_name {name.iloc[i]!r} is not one of the release's classes "
            f"{[*classes, NO_FINDING]} ({int(unknown.sum())} such rows)"
        )
    reader = pd.MultiIndex.from_arrays([frame.image_id.str.strip(), column_or(frame, "rad_id", "one reader")])
    drawn = [source for source in LABELS if source in classes]
    boxes = pd.DataFrame({source: (name == source).to_numpy().astype(np.int8) for source in drawn}, index=reader)
    return boxes.groupby(level=[0, 1], sort=True).max().droplevel(1)


# What the config schema takes for this format: defaults of its keys, or keys it requires.
SCHEMA = {"properties": {"files": {"default": ["annotations/image_labels_test.csv"]}}}
