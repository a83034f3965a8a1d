"""Collections as published, read and harmonised to one table like NIH's `images.parquet`: the 14 NIH
findings, each 1, 0 or UNLABELLED.

One module per format, named as the format: its reader (`read`: the published tables to a frame of
`image` (path under root), `patient`, `age_years`, `sex`, `view`, `split`, `row` (file:line, for
messages) and the 14 findings; optionally `study_date` (YYYY-MM-DD), the DESCRIBED columns
(`labels_by`: who labelled the row; `layout`: where its file was found) and `drop` (why the
release's own notes drop the row, blank to keep)), its label map (`LABELS`: its labels -> the NIH
findings) and what the config schema takes for it (`SCHEMA`: its keys' defaults, or the keys it
requires). FORMATS is the registry. The config schema (cxr14/schemas/config.schema.yaml) holds a copy of
its format list and of each format's SCHEMA, so that a config is validated before anything runs;
tests/test_registries.py fails until the copy and the modules agree. Releases followed (see
docs/external-validation.md):
- chexpert: CheXpert v1.0 and CheXpert-v1.0-small (train.csv, valid.csv), and the test set's
  radiologist labels (test_labels.csv, released with CheXlocalize);
- mimic: MIMIC-CXR-JPG 2.0.0/2.1.0 (with MIMIC-IV's patients table, and 2.1.0's radiologist-labelled
  test set);
- padchest: PadChest (BIMCV, the 01.02.19 table), unzipped as released or flat;
- vindr: VinDr-CXR 1.0.0 on PhysioNet, and Kaggle's VinBigData competition (`train.csv` of boxes);
- csv: a hospital's export, one row per image, columns named in the config (labelled or not);
- folder: a plain folder of PNG, JPEG and DICOM files, no labels.

Nothing is silent: a finding a collection does not label is UNLABELLED (never negative), uncertain
labels follow the `uncertain` policy, what a labeller leaves unmentioned the `unmentioned` policy, and
every dropped row is counted by reason.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import FINDINGS, SPLITS
from . import chexpert, csv, folder, mimic, padchest, vindr
from .common import COLUMNS, UNLABELLED, CollectionError  # noqa: F401  (the formats' shared names)

FORMATS = {module.__name__.rpartition(".")[2]: module for module in (chexpert, mimic, padchest, vindr, csv, folder)}
# What a reader may say of each row beyond the table's columns, counted over the images kept: who
# labelled it, and where its file was found.
DESCRIBED = ("labels_by", "layout")
NAMED_DROPS = 25  # a reason the reader drops no more rows for than this names each image in the report
READERS = {name: module.read for name, module in FORMATS.items()}
LABEL_MAP = {name: module.LABELS for name, module in FORMATS.items()}


def harmonise(raw: pd.DataFrame, root: Path, settings) -> tuple[pd.DataFrame, dict, str, dict]:
    """The rows kept, checked and sorted by image, the count of rows dropped per reason, the
    fingerprint of the kept image files (`files_fingerprint`, from one stat of each file) and how many
    kept images per value of the reader's DESCRIBED columns."""
    dropped, named = {}, {}
    if "drop" in raw:
        noted = raw["drop"].fillna("") != ""
        for reason, rows in raw[noted].groupby("drop", sort=True):
            dropped[reason] = len(rows)
            if len(rows) <= NAMED_DROPS:
                named[reason] = sorted(rows.image)
        raw = raw[~noted]
    if settings.labelled_by is not None:
        keep = raw.labels_by.isin(settings.labelled_by) if "labels_by" in raw else pd.Series(False, raw.index)
        dropped["not labelled by " + " or ".join(settings.labelled_by)] = int((~keep).sum())
        raw = raw[keep]
    if settings.splits is not None:
        keep = raw.split.isin(settings.splits)
        dropped["split not in splits"] = int((~keep).sum())
        raw = raw[keep]
    if (raw.view != "unknown").any() or "unknown" in settings.views:
        keep = raw.view.isin(settings.views)
        dropped["view not in views"] = int((~keep).sum())
        raw = raw[keep]
    if settings.split is not None and not labelled_findings(raw):
        raise CollectionError(
            "no row labels any of the 14 NIH findings, and a collection without labels cannot be split: there "
            "is nothing to train, calibrate or choose operating points on (leave `split` null to monitor it)"
        )
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
        "study_date": frame.study_date if "study_date" in frame else "",
        **{f: frame[f].astype(np.int8) for f in FINDINGS},
    })  # fmt: skip
    described = {
        column: {k: int(v) for k, v in frame[column].replace("", "not said").value_counts().sort_index().items()}
        for column in DESCRIBED
        if column in frame
    } | ({"dropped_images": named} if named else {})
    return out[COLUMNS], dropped, files_fingerprint(frame.image, frame.stat), described


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
