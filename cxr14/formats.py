"""Collections as published, read and harmonised to one table like NIH's `images.parquet`: the 14 NIH
findings, each 1, 0 or UNLABELLED.

Layouts followed (see docs/external-validation.md):
- chexpert: CheXpert v1.0 and CheXpert-v1.0-small (`train.csv`, `valid.csv`; `Path` starts with the
  published folder name, which is replaced by `root`);
- mimic: MIMIC-CXR-JPG 2.0.0/2.1.0 (`mimic-cxr-2.0.0-{chexpert,metadata,split}.csv.gz`, images at
  `files/pXX/p<subject_id>/s<study_id>/<dicom_id>.jpg`; sex and age from MIMIC-IV's `patients.csv`);
- padchest: PadChest (BIMCV) `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz`, images at
  `<ImageDir>/<ImageID>` (the folder of each published zip);
- vindr: VinDr-CXR 1.0.0 on PhysioNet (`annotations/image_labels_{train,test}.csv`, images at
  `{train,test}/<image_id>.dicom`; one row per radiologist on train);
- csv: a hospital's export, one row per image, columns named in the config.

Nothing is silent: a finding a collection does not label is UNLABELLED (never negative), uncertain
labels follow the `uncertain` policy, and every dropped row is counted by reason.
"""

from __future__ import annotations

import ast
import hashlib
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from .constants import FINDINGS, SPLITS

FORMATS = ("chexpert", "mimic", "padchest", "vindr", "csv")


UNLABELLED = -1  # in a finding column: the collection does not say (masked from every metric)


COLUMNS = ["image_index", "path", "patient", "patient_id", "age_years", "sex", "view", "split", *FINDINGS]


# Each collection's label -> the NIH finding it is taken as. An NIH finding no label maps to is not
# labelled by that collection. The two CheXpert-labeller collections share one map.
CHEXPERT_LABELS = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}


VINDR_LABELS = {
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


# PadChest's labels (its hierarchy's terms, lower case) that make each NIH finding positive.
PADCHEST_LABELS = {
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


LABEL_MAP = {
    "chexpert": CHEXPERT_LABELS,
    "mimic": CHEXPERT_LABELS,
    "padchest": PADCHEST_LABELS,
    "vindr": VINDR_LABELS,
    "csv": {f: f for f in FINDINGS},  # unless the config's `findings` names other columns
}


LATERAL = {"LATERAL", "LL", "RL", "L", "LAT"}


# How several readers' labels of one image (VinDr-CXR train) make one: `readers` in the config.
READER_RULES = {
    "any": lambda votes: votes.max(),
    "all": lambda votes: votes.min(),
    "majority": lambda votes: votes.mean() > 0.5,
}


SPLIT_NAMES = {"train": "train", "valid": "val", "validate": "val", "val": "val", "test": "test"}


class CollectionError(ValueError):
    """A collection's files do not hold what its format promises; the message names the file, the row
    (line in the file, header = 1) and the reason."""


# -- reading each format: a frame of `image` (path under root), `patient`, `age_years`, `sex`, `view`,
#    `split`, `row` (file:line, for messages) and the 14 findings (1, 0 or UNLABELLED) ------------------


def read_csv(path) -> pd.DataFrame:
    """A table as strings (blank cells ""), with `row`: its file and line (header = line 1)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CollectionError(f"{path}: not a readable CSV table ({exc})") from exc
    frame.columns = [c.strip() for c in frame.columns]
    frame["row"] = [f"{Path(path).name}:{i + 2}" for i in range(len(frame))]
    return frame


def require(frame: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CollectionError(f"{path}: missing column(s) {missing}; the columns are {list(frame.columns)}")


def coded(frame: pd.DataFrame, column: str, codes: dict, path) -> pd.Series:
    """A label column's values mapped by `codes` ("1.0" and "1" alike); any other value is an error
    naming the row."""
    values = frame[column].str.strip()
    numeric = pd.to_numeric(values, errors="coerce")
    keys = np.where(numeric.notna(), numeric.map(lambda v: f"{v:g}" if pd.notna(v) else ""), values)
    out = pd.Series(keys, index=frame.index).map(codes)
    bad = out.isna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise CollectionError(
            f"{path}, row {frame.row.iloc[i]}: column {column!r} has {values.iloc[i]!r}, not one of "
            f"{sorted(k for k in codes if k)} or blank ({int(bad.sum())} such rows)"
        )
    return out.astype(np.int8)


def with_findings(frame: pd.DataFrame, labels: dict[str, pd.Series]) -> pd.DataFrame:
    """`frame` with the 14 NIH finding columns: from `labels` {finding: values}, UNLABELLED otherwise."""
    for finding in FINDINGS:
        frame[finding] = labels[finding] if finding in labels else np.int8(UNLABELLED)
    return frame


def chexpert_labels(frame: pd.DataFrame, path, uncertain: str) -> dict:
    """The CheXpert labeller's observations (1, 0, -1 uncertain, blank unmentioned) as NIH findings:
    uncertain by the policy; unmentioned is UNLABELLED, except on a "No Finding" row (negative)."""
    require(frame, list(CHEXPERT_LABELS), path)
    codes = {"1": 1, "0": 0, "-1": {"ignore": UNLABELLED, "zero": 0, "one": 1}[uncertain], "": UNLABELLED}
    healthy = (
        coded(frame, "No Finding", {"1": 1, "0": 0, "-1": 0, "": 0}, path) == 1 if "No Finding" in frame else False
    )
    out = {}
    for source, finding in CHEXPERT_LABELS.items():
        values = coded(frame, source, codes, path)
        unmentioned = frame[source].str.strip() == ""
        out[finding] = values.where(~(unmentioned & healthy), np.int8(0))
    return out


def sex_of(values: pd.Series) -> pd.Series:
    """M, F or unknown, from M/F/Male/Female/O/blank."""
    s = values.fillna("").astype(str).str.strip().str.upper().str[:1]
    return s.where(s.isin(["M", "F"]), "unknown")


def view_of(values: pd.Series) -> pd.Series:
    """PA, AP, LATERAL or the collection's own code, upper case; blank is unknown."""
    v = values.fillna("").astype(str).str.strip().str.upper().str.replace(" ", "_")
    v = v.where(~v.isin(LATERAL), "LATERAL").replace({"AP_HORIZONTAL": "AP", "AP_SUPINE": "AP"})
    return v.where(v != "", "unknown")


def age_of(values: pd.Series) -> pd.Series:
    """Years as floats; blank, 0-or-less or unreadable is unknown (NaN)."""
    age = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return age.where(age > 0)


def read_chexpert(labels: list, settings, **_) -> pd.DataFrame:
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
        parts.append(with_findings(out, chexpert_labels(frame, path, settings.uncertain)))
    return pd.concat(parts, ignore_index=True)


def read_mimic(labels: list, *, metadata, split_file, patients, settings) -> pd.DataFrame:
    """One row per image of the metadata table, the labels of its study (subject_id, study_id)."""
    meta = read_csv(metadata)
    require(meta, ["dicom_id", "subject_id", "study_id", "ViewPosition"], metadata)
    studies = pd.concat([read_csv(p) for p in labels], ignore_index=True)
    require(studies, ["subject_id", "study_id", *CHEXPERT_LABELS], labels[0])
    repeated = studies.duplicated(["subject_id", "study_id"], keep=False)
    if repeated.any():
        raise CollectionError(f"{labels[0]}: study {studies.study_id[repeated].iloc[0]} is labelled twice "
                              f"(rows {list(studies.row[repeated][:2])})")  # fmt: skip
    found = chexpert_labels(studies, labels[0], settings.uncertain)
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


def read_padchest(labels: list, settings, **_) -> pd.DataFrame:
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["ImageID", "ImageDir", "PatientID", "Labels", "Projection", "PatientSex_DICOM",
                        "PatientBirth", "StudyDate_DICOM"], path)  # fmt: skip
        found = {f: np.zeros(len(frame), np.int8) for f in set(PADCHEST_LABELS.values())}
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
                finding = PADCHEST_LABELS.get(str(term).strip().lower())
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


def read_vindr(labels: list, settings, **_) -> pd.DataFrame:
    """image_labels_{train,test}.csv: train has a row per radiologist (`rad_id`), combined by the
    `readers` rule; test has the consensus, one row per image. The tables give no sex, age or view."""
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, ["image_id", *VINDR_LABELS], path)
        split = "test" if "test" in Path(path).name else "train"
        values = {source: coded(frame, source, {"1": 1, "0": 0}, path) for source in VINDR_LABELS}
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
            finding: combined[source].to_numpy() for source, finding in VINDR_LABELS.items()}))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def column_or(frame: pd.DataFrame, column: str, default="") -> pd.Series:
    """An optional column, or `default` in every row."""
    return frame[column] if column in frame.columns else pd.Series(default, index=frame.index)


def read_export(labels: list, settings, **_) -> pd.DataFrame:
    """A hospital's CSV: one row per image; finding columns valued 1, 0 or blank (not labelled)."""
    columns = settings.columns
    mapping = settings.findings or {f: f for f in FINDINGS}
    parts = []
    for path in labels:
        frame = read_csv(path)
        require(frame, [columns["path"], columns["patient"]], path)
        present = {source: finding for source, finding in mapping.items() if source in frame.columns}
        if settings.findings is not None:
            require(frame, list(mapping), path)
        if not present:
            raise CollectionError(f"{path}: no finding column; name them as the NIH findings {list(FINDINGS)} "
                                  "or map yours with the dataset's `findings`")  # fmt: skip

        out = pd.DataFrame({
            "image": frame[columns["path"]].str.strip(),
            "patient": frame[columns["patient"]].str.strip(),
            "age_years": age_of(column_or(frame, columns["age"])),
            "sex": sex_of(column_or(frame, columns["sex"])),
            "view": view_of(column_or(frame, columns["view"])),
            "split": column_or(frame, columns["split"]).str.strip().str.lower().map(lambda s: SPLIT_NAMES.get(s, s)),
            "row": frame.row,
        })  # fmt: skip
        found = {}
        for source, finding in present.items():
            values = coded(frame, source, {"1": 1, "0": 0, "": UNLABELLED}, path)
            found[finding] = values if finding not in found else np.maximum(found[finding], values)
        parts.append(with_findings(out, found))
    return pd.concat(parts, ignore_index=True)


READERS = {
    "chexpert": read_chexpert,
    "mimic": read_mimic,
    "padchest": read_padchest,
    "vindr": read_vindr,
    "csv": read_export,
}


# -- one harmonised table -------------------------------------------------------------------------------


def harmonise(raw: pd.DataFrame, root: Path, settings) -> tuple[pd.DataFrame, dict, str]:
    """The rows kept, checked and sorted by image, the count of rows dropped per reason, and the
    fingerprint of the kept image files (`files_fingerprint`), from one stat of each file."""
    dropped = {}
    if settings.splits is not None:
        keep = raw.split.isin(settings.splits)
        dropped["split not in splits"] = int((~keep).sum())
        raw = raw[keep]
    if (raw.view != "unknown").any() or "unknown" in settings.views:
        keep = raw.view.isin(settings.views)
        dropped["view not in views"] = int((~keep).sum())
        raw = raw[keep]
    blank = raw.image.fillna("").str.strip() == ""
    if blank.any():
        raise CollectionError(f"row {raw.row[blank].iloc[0]}: no image path")
    if settings.split == "own":
        unsplit = ~raw.split.isin(SPLITS)
        if unsplit.any():
            raise CollectionError(
                f"row {raw.row[unsplit].iloc[0]}: no train, val or test split ({raw.split[unsplit].iloc[0]!r}), and "
                "`split: own` takes each image's split from the collection"
            )
    elif settings.split is not None:
        raw = raw.assign(split=made_split(raw.patient, settings.split))
    repeated = raw.image.duplicated(keep=False)
    if repeated.any():
        rows = raw.row[repeated][raw.image[repeated] == raw.image[repeated].iloc[0]]
        raise CollectionError(f"image {raw.image[repeated].iloc[0]} is listed more than once (rows {', '.join(rows)})")
    no_patient = raw.patient.fillna("").str.strip() == ""
    if no_patient.any():
        raise CollectionError(f"row {raw.row[no_patient].iloc[0]}: no patient id")
    splits = raw[raw.split != ""].groupby("patient").split.nunique()
    if (splits > 1).any():
        patient = splits[splits > 1].index[0]
        rows = raw[raw.patient == patient]
        where = ", ".join(f"{r.row}: {r.split}" for r in rows.itertuples())
        raise CollectionError(f"patient {patient} is in more than one split ({where})")
    stats = [file_stat(root / p) for p in raw.image]
    exists = np.array([st is not None for st in stats])
    missing = raw[~exists]
    dropped["image file missing"] = len(missing)
    if len(missing) > settings.max_missing:
        raise CollectionError(
            f"{len(missing)} image files do not exist under {root} (max_missing={settings.max_missing}), e.g. "
            + "; ".join(f"row {r.row}: {r.image}" for r in missing.head(5).itertuples())
        )
    frame = raw[exists].assign(stat=[st for st in stats if st is not None]).sort_values("image", ignore_index=True)
    if frame.empty:
        raise CollectionError(f"no image left after dropping {dropped}")
    if not labelled_findings(frame):
        raise CollectionError("no row labels any of the 14 NIH findings: nothing to validate on")
    if settings.split is not None:
        empty = [split for split in SPLITS if not (frame.split == split).any()]
        if empty:
            raise CollectionError(
                f"the {' and '.join(empty)} split(s) have no images ({frame.split.value_counts().to_dict()}); a "
                "collection to train on needs train, val and test"
            )
    patients = sorted(frame.patient.unique())
    out = pd.DataFrame({
        "image_index": frame.image,
        "path": frame.image,
        "patient": frame.patient,
        "patient_id": frame.patient.map({p: i for i, p in enumerate(patients)}).astype(np.int64),
        "age_years": frame.age_years.astype(np.float64),
        "sex": frame.sex,
        "view": frame.view,
        "split": frame.split,
        **{f: frame[f].astype(np.int8) for f in FINDINGS},
    })  # fmt: skip
    return out[COLUMNS], dropped, files_fingerprint(frame.image, frame.stat)


def file_stat(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a regular file; None when there is none."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def files_fingerprint(paths, stats) -> str:
    """A digest of every image file's path, size and modification time: images replaced under the same
    names change it, so the collection is sharded again (its table alone would not change)."""
    digest = hashlib.sha256()
    for path, (size, mtime) in zip(paths, stats):
        digest.update(f"{path}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def made_split(patients: pd.Series, fractions: dict) -> pd.Series:
    """Each row's split in a new patient-wise split: the `val` and `test` fractions of the patients
    (at least one each), drawn with `seed`; the rest train. The same patients, fractions and seed
    give the same split, whatever the row order."""
    names = np.array(sorted(patients.unique()))
    order = np.random.default_rng(fractions.get("seed", 0)).permutation(len(names))
    n_test = max(1, round(fractions["test"] * len(names)))
    n_val = max(1, round(fractions["val"] * len(names)))
    if n_test + n_val >= len(names):
        raise CollectionError(
            f"{len(names)} patients cannot be split into val {fractions['val']}, test {fractions['test']} and "
            "a train split of at least one patient"
        )
    split = np.full(len(names), "train", dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    return patients.map(dict(zip(names, split)))


def labelled_findings(frame: pd.DataFrame) -> list[str]:
    """The findings at least one image of the collection is labelled for."""
    return [f for f in FINDINGS if (frame[f] != UNLABELLED).any()]
