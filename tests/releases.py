"""The label tables of the public releases, generated at any size with their published headers, value
codes and file names (the tests' full-size checks and bench/bench_ingest.py use them):

- CheXpert v1.0 `train.csv` (223,414 rows) and the test set's `test_labels.csv`;
- MIMIC-CXR-JPG 2.0.0/2.1.0: `mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz` (377,110 images,
  227,827 studies), `mimic-cxr-2.1.0-test-set-labeled.csv`, and MIMIC-IV's `patients.csv.gz`;
- PadChest's `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz` (160,861 rows);
- Kaggle VinBigData's `train.csv` (67,914 box rows over 15,000 images, three readers each).

Values are drawn, not real; the shape of each table (columns, codes, one row per what) is the release's.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from cxr14.formats import padchest, vindr
from cxr14.steps.demo import CHEXPERT_HEADER

OBSERVATIONS = CHEXPERT_HEADER[5:]  # CheXpert's 14, in train.csv's order
CODES = np.array(["1.0", "0.0", "-1.0", ""])  # positive, negative, uncertain, unmentioned


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """As released: a CSV, gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", newline="", compresslevel=1) as fh:
            frame.to_csv(fh, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def touch(root: Path, images) -> None:
    """An empty file at each image path (ingest only checks that each exists)."""
    for folder in sorted({str(Path(p).parent) for p in images}):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for p in images:
        (root / p).touch()


def observations(n: int, rng: np.random.Generator) -> dict:
    """CheXpert labeller codes per observation: mostly unmentioned, as in the real train.csv."""
    return {o: CODES[rng.choice(4, size=n, p=[0.12, 0.08, 0.05, 0.75])] for o in OBSERVATIONS}


def chexpert_train(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`train.csv` of CheXpert-v1.0-small: 7 images a patient over 3 studies, one in 7 a lateral (the real
    table keeps 191,010 frontal images of its 223,414)."""
    patient = 1 + np.arange(n) // 7
    study = 1 + (np.arange(n) % 7) // 3
    lateral = np.arange(n) % 7 == 6
    name = [f"view{m % 3 + 1}_{'lateral' if m == 6 else 'frontal'}.jpg" for m in np.arange(n) % 7]
    path = [f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/{v}" for p, s, v in zip(patient, study, name)]
    frame = pd.DataFrame({
        "Path": path,
        "Sex": rng.choice(["Male", "Female", "Unknown"], size=n, p=[0.55, 0.44, 0.01]),
        "Age": rng.integers(0, 91, size=n).astype(str),
        "Frontal/Lateral": np.where(lateral, "Lateral", "Frontal"),
        "AP/PA": np.where(lateral, "", rng.choice(["AP", "PA", "LL", "RL"], size=n, p=[0.75, 0.23, 0.01, 0.01])),
        **observations(n, rng),
    })  # fmt: skip
    frame["No Finding"] = np.where(rng.random(n) < 0.1, "1.0", "")
    return frame[CHEXPERT_HEADER]


def chexpert_test_labels(n_patients: int, rng: np.random.Generator) -> pd.DataFrame:
    """`test_labels.csv`: the radiologists' 0/1 per observation, Path from `test/`, a lateral for every
    third study; no sex, age or projection."""
    rows = []
    for k in range(n_patients):
        views = ["view1_frontal.jpg"] + (["view2_lateral.jpg"] if k % 3 == 0 else [])
        rows += [f"test/patient{64741 + k}/study1/{v}" for v in views]
    labels = {o: rng.choice(["1.0", "0.0"], size=len(rows), p=[0.2, 0.8]) for o in OBSERVATIONS}
    return pd.DataFrame({"Path": rows, **labels})


MIMIC_META = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]  # fmt: skip
MIMIC_VIEWS = ["PA", "AP", "LATERAL", "LL", "AP AXIAL", ""]


def mimic_tables(n_studies: int, rng: np.random.Generator) -> dict[str, pd.DataFrame]:
    """The metadata, labeller, split and patients tables: 1.65 images a study, 3.5 studies a patient."""
    per_study = rng.choice([1, 2, 3], size=n_studies, p=[0.5, 0.35, 0.15])
    subject = 10000000 + (np.arange(n_studies) * 2 // 7)
    study = 50000000 + np.arange(n_studies)
    image_study = np.repeat(np.arange(n_studies), per_study)
    n = len(image_study)
    year = 2110 + rng.integers(0, 80, size=n_studies)
    meta = pd.DataFrame({
        "dicom_id": [f"{k:08x}-{k * 7919 % 99991:05d}" for k in range(n)],
        "subject_id": subject[image_study],
        "study_id": study[image_study],
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
        "ViewPosition": rng.choice(MIMIC_VIEWS, size=n, p=[0.25, 0.4, 0.25, 0.05, 0.02, 0.03]),
        "Rows": 3056, "Columns": 2544,
        "StudyDate": year[image_study] * 10000 + 506,
        "StudyTime": 213014.531,
        "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
        "ViewCodeSequence_CodeMeaning": "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": rng.choice(["Erect", "Recumbent", ""], size=n, p=[.6, .3, .1]),
    })[MIMIC_META]  # fmt: skip
    labelled = rng.random(n_studies) < 0.98  # the labeller left a few studies out
    labels = pd.DataFrame({"subject_id": subject[labelled], "study_id": study[labelled],
                           **{o: v for o, v in sorted(observations(int(labelled.sum()), rng).items())}})  # fmt: skip
    people = np.unique(subject)  # the official split is patient-wise
    own = dict(zip(people, rng.choice(["train", "validate", "test"], size=len(people), p=[0.96, 0.01, 0.03])))
    split = pd.DataFrame({"dicom_id": meta.dicom_id, "study_id": meta.study_id, "subject_id": meta.subject_id,
                          "split": meta.subject_id.map(own)})  # fmt: skip
    patients = pd.DataFrame({
        "subject_id": people,
        "gender": rng.choice(["F", "M"], size=len(people)),
        "anchor_age": rng.integers(18, 92, size=len(people)),
        "anchor_year": 2110 + rng.integers(0, 80, size=len(people)),
        "anchor_year_group": "2014 - 2016",
        "dod": "",
    })  # fmt: skip
    return {"metadata": meta, "labels": labels, "split": split, "patients": patients}


def mimic_test_set_labeled(studies, rng: np.random.Generator) -> pd.DataFrame:
    """2.1.0's radiologist-labelled test set: `study_id` (no subject_id), `Airspace Opacity` for `Lung
    Opacity`, 1.0/0.0 and a few -1.0."""
    names = sorted(o if o != "Lung Opacity" else "Airspace Opacity" for o in OBSERVATIONS)
    codes = {o: rng.choice(["1.0", "0.0", "-1.0"], size=len(studies), p=[0.2, 0.77, 0.03]) for o in names}
    return pd.DataFrame({"study_id": list(studies), **codes})


PADCHEST_COLUMNS = [
    "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "PatientSex_DICOM",
    "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM", "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM",
    "Columns_DICOM", "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime",
    "RelativeXRayExposure_DICOM", "ReportID", "Report", "MethodLabel", "Labels", "Localizations",
    "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS",
]  # fmt: skip
# Terms the drawn rows use: every mapped one, some of PadChest's unmapped findings, and the two that
# drop a row.
PADCHEST_TERMS = [*padchest.LABELS, "normal", "pacemaker", "scoliosis", "aortic elongation", "kyphosis",
                  "costophrenic angle blunting", *padchest.UNREADABLE]  # fmt: skip
PADCHEST_PROJECTIONS = ["PA", "L", "AP_horizontal", "AP", "COSTAL", "EXCLUDE", "UNK"]


def padchest_table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """The 160K table: one row per image in folders 0-54 (one per zip), Labels a Python list of terms
    (blank for a few), MethodLabel Physician or RNN_model; the release's known faults among the rows."""
    ids = [f"2168401113669640{k:020d}_{k % 100:02d}-{k % 997:03d}-{k % 211:03d}.png" for k in range(n)]
    ids[: len(padchest.KNOWN_FAULTS)] = list(padchest.KNOWN_FAULTS)[:n]
    weights = np.array([3.0 if t in ("normal",) else 0.02 if t in padchest.UNREADABLE else 1.0 for t in PADCHEST_TERMS])
    counts = rng.choice([0, 1, 2, 3], size=n, p=[0.25, 0.4, 0.25, 0.1])
    labels = []
    for k, c in enumerate(counts):
        terms = rng.choice(PADCHEST_TERMS, size=c, replace=False, p=weights / weights.sum())
        labels.append("" if k % 97 == 5 else str([" " + str(t) if j == 1 else str(t) for j, t in enumerate(terms)]))
    frame = pd.DataFrame("", index=range(n), columns=PADCHEST_COLUMNS)
    frame["ImageID"] = ids
    frame["ImageDir"] = (np.arange(n) * 55 // max(n, 1)).astype(str)
    frame["StudyDate_DICOM"] = (2009 + rng.integers(0, 9, size=n)) * 10000 + 101
    frame["PatientID"] = [f"{k * 3 // 7:032x}" for k in range(n)]
    frame["PatientBirth"] = np.where(rng.random(n) < 0.02, "", (1920 + rng.integers(0, 90, size=n)).astype(str) + ".0")
    frame["PatientSex_DICOM"] = rng.choice(["M", "F", "O", ""], size=n, p=[0.49, 0.49, 0.01, 0.01])
    frame["Projection"] = rng.choice(PADCHEST_PROJECTIONS, size=n, p=[0.5, 0.3, 0.1, 0.06, 0.02, 0.01, 0.01])
    frame["MethodLabel"] = rng.choice(["Physician", "RNN_model"], size=n, p=[0.27, 0.73])
    frame["BitsStored_DICOM"] = rng.choice(["12", "15", "16"], size=n)
    frame["Labels"] = labels
    return frame


VINBIGDATA_COLUMNS = ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]


def vinbigdata_train(n_images: int, rng: np.random.Generator) -> pd.DataFrame:
    """Kaggle's `train.csv`: three readers an image (of R1-R17); a reader who found nothing has one
    "No finding" row (class 14, no box), else a row per box (a class often boxed more than once)."""
    classes = vindr.VINBIGDATA_CLASSES
    rows = []
    for k in range(n_images):
        image = f"{k * 2654435761 % 2**64:016x}{k:016x}"
        for rad in rng.choice(17, size=3, replace=False):
            found = rng.random() < 0.35  # about 4.5 rows an image, as the real 67,914 over 15,000
            n_boxes = rng.choice([1, 2, 3, 6], p=[0.35, 0.3, 0.2, 0.15]) if found else 0
            if not n_boxes:
                rows.append((image, "No finding", 14, f"R{rad + 1}", "", "", "", ""))
            for c in rng.choice(len(classes), size=n_boxes):
                x, y = rng.integers(0, 2000, size=2)
                rows.append(
                    (image, classes[c], int(c), f"R{rad + 1}", float(x), float(y), float(x + 200), float(y + 150))
                )
    return pd.DataFrame(rows, columns=VINBIGDATA_COLUMNS)
