"""Clean the NIH Data_Entry table (either release) into one typed, leakage-checked Parquet table.

Quirks handled, all found in the real files:
- the header splits `OriginalImage[Width,Height]` and `OriginalImagePixelSpacing[x,y]` on their
  commas, so the header has 11 names for 11 fields; the first 2017 release adds a trailing empty
  column and CRLF line endings;
- the 2017 release writes ages as zero-padded strings with a unit (`058Y`, `011M`, `001D`) and has
  16 implausible ages (`148Y` ... `414Y`); the v2020 release has integer years (0 for infants);
- the v2020 release renumbers `Follow-up #` for ~24,000 images so it no longer matches the image
  name; the name is the image's identity, so `follow_up` comes from it (the report counts these);
- the two releases list the rows in different orders and disagree on ~0.2% of labels.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import FINDINGS, NO_FINDING, SPLITS
from ..files import write_json
from ..tables import write_parquet

log = logging.getLogger(__name__)

RAW_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]
# An ingested collection's columns (formats.COLUMNS: NIH is a collection like the others), and NIH's
# follow-up number and archive.
COLUMNS = [
    "image_index", "path", "patient", "patient_id", "follow_up", "age_years", "sex", "view", "archive", "split",
    "study_date", *FINDINGS,
]  # fmt: skip
_AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "D": 1.0 / 365.25}
_IMAGE_NAME = r"^\d{8}_\d{3}\.png$"


class MetadataError(ValueError):
    """The metadata file is not in a format we know; the message names the file and the row."""


class LeakageError(RuntimeError):
    """A patient appears in more than one split."""


def _read_text(path: Path) -> str:
    """A metadata file's text (plain or .gz); a clear error for an empty or non-UTF-8 file."""
    try:
        with pd.io.common.get_handle(path, "r", compression="infer", encoding="utf-8") as handle:
            text = handle.handle.read()
    except UnicodeDecodeError as exc:
        encoding = "UTF-16" if open(path, "rb").read(2) in (b"\xff\xfe", b"\xfe\xff") else "not UTF-8"
        raise MetadataError(
            f"{path}: the file is {encoding} text (byte {exc.start}); save it as UTF-8, as the NIH publishes it"
        ) from exc
    if not text.strip():
        raise MetadataError(f"{path}: the file is empty")
    return text


def read_data_entry(path: str | Path) -> pd.DataFrame:
    """The raw table as strings with our column names; checks the header of either release and that
    every row has all its fields (a file cut short ends mid-row)."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    header = lines[0].rstrip("\r").split(",")
    if header[: len(RAW_COLUMNS)] != RAW_COLUMNS or any(h.strip() for h in header[len(RAW_COLUMNS) :]):
        raise MetadataError(f"{path}: unexpected header {header!r}; expected {RAW_COLUMNS!r}")
    for row, line in enumerate(lines[1:], start=1):
        fields = line.count(",") + 1
        if line.strip() and fields < len(RAW_COLUMNS):
            raise MetadataError(
                f"{path}: data row {row} has {fields} of {len(RAW_COLUMNS)} fields "
                f"({line[:60]!r}); is the file cut short?"
            )
    raw = pd.read_csv(
        io.StringIO("\n".join(lines[1:])),
        header=None,
        usecols=range(7),
        names=RAW_COLUMNS[:7],
        dtype=str,
        keep_default_na=False,
        na_values=[],
    )
    raw.columns = ["image_index", "labels", "follow_up", "patient_id", "age", "sex", "view"]
    return raw.apply(lambda col: col.str.strip())


def parse_ages(ages: pd.Series, max_age: float, source: str) -> tuple[pd.Series, dict]:
    """Years as float from `57` or `058Y`/`011M`/`001D`; null above `max_age`. Returns (ages, counts)."""
    parts = ages.str.extract(r"^(\d+(?:\.\d+)?)([YMD]?)$")
    bad = parts[0].isna()
    if bad.any():
        row = ages.index[bad][0]
        raise MetadataError(f"{source}: unreadable age {ages[row]!r} at data row {row + 1}")
    years = parts[0].astype(float) * parts[1].map(lambda u: _AGE_UNITS.get(u or "Y"))
    implausible = years > max_age
    counts = {
        "age_converted_from_months": int((parts[1] == "M").sum()),
        "age_converted_from_days": int((parts[1] == "D").sum()),
        "age_implausible_set_null": int(implausible.sum()),
    }
    return years.mask(implausible).rename("age_years"), counts


def label_matrix(labels: pd.Series, source: str) -> tuple[pd.DataFrame, int]:
    """0/1 columns for the 14 findings ("No Finding" = all zero); (matrix, rows mixing both)."""
    tokens = labels.str.split("|")
    known = set(FINDINGS) | {NO_FINDING}
    for row, names in tokens.items():
        unknown = set(names) - known
        if unknown:
            raise MetadataError(f"{source}: unknown finding(s) {sorted(unknown)} at data row {row + 1}")
    matrix = pd.DataFrame({f: tokens.map(lambda n, f=f: f in n).astype("int8") for f in FINDINGS})
    mixed = int((tokens.map(lambda n: NO_FINDING in n) & (matrix.sum(axis=1) > 0)).sum())
    return matrix, mixed


def read_list(path: str | Path) -> list[str]:
    return [line.strip() for line in _read_text(Path(path)).splitlines() if line.strip()]


def assign_splits(
    table: pd.DataFrame, train_val: list[str], test: list[str], val_fraction: float, seed: int
) -> pd.Series:
    """`test` from the official list; `val` a seeded patient-wise share of train_val; the rest `train`.

    Validation patients are drawn from the whole table, so an image's split does not depend on
    which archives are selected.
    """
    split = pd.Series(pd.NA, index=table.index, dtype="string")
    split[table.image_index.isin(set(test))] = "test"
    in_train_val = table.image_index.isin(set(train_val))
    if (in_train_val & split.notna()).any():
        raise LeakageError(f"{int((in_train_val & split.notna()).sum())} images are in both split lists")
    split[in_train_val] = "train"
    patients = np.sort(table.loc[in_train_val, "patient_id"].unique())
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(patients)))
    val_patients = set(rng.permutation(patients)[:n_val].tolist())
    split[in_train_val & table.patient_id.isin(val_patients)] = "val"
    return split


def leakage(table: pd.DataFrame) -> pd.Series:
    """Patients found in more than one split (their split counts)."""
    per_patient = table.groupby("patient_id")["split"].nunique()
    return per_patient[per_patient > 1]


def on_disk(manifests: dict[int, str | Path], folders: dict[int, str]) -> pd.DataFrame:
    """image_index -> archive and path (in the archive's folder) of the images that extraction wrote."""
    from ..tables import read_manifest

    frames = [
        read_manifest(path).assign(archive=int(index), folder=folders[index])
        for index, path in sorted(manifests.items())
    ]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in ("image_index", "path")}).assign(
            archive=pd.Series(dtype="int16")
        )
    disk = pd.concat(frames, ignore_index=True)
    disk["path"] = disk.folder + "/" + disk.image_index
    disk = disk[["image_index", "path", "archive"]]
    dup = disk.image_index.duplicated(keep=False)
    if dup.any():
        raise MetadataError(f"image(s) present in two archives: {sorted(disk.image_index[dup])[:5]}")
    return disk


def clean(
    *,
    data_entry,
    train_val_list,
    test_list,
    manifests: list,
    images: list,
    archives: list[int],
    root: str,
    table,
    report,
    val_fraction: float,
    seed: int,
    max_age: float,
) -> dict:
    """Step `clean`: the cleaned table of the images on disk to Parquet (`table`), and the cleaning
    report (`report`). `manifests` and `images` are the extraction manifests and image folders of
    `archives`, in the same order; each image's `path` is relative to `root`, as an ingested
    collection's are to its own."""
    if not len(manifests) == len(images) == len(archives):
        raise ValueError(
            f"{len(manifests)} extraction manifests and {len(images)} folders for {len(archives)} archives"
        )
    cleaned, found = clean_table(
        data_entry,
        train_val_list,
        test_list,
        dict(zip(archives, manifests)),
        folders={a: Path(os.path.relpath(folder, root)).as_posix() for a, folder in zip(archives, images)},
        val_fraction=val_fraction,
        seed=seed,
        max_age=max_age,
    )
    write_parquet(cleaned, table)
    write_json(found, report)
    log.info("cleaned %d of %d rows; images per split %s", found["rows_out"], found["rows_in"], found["images"])
    return found


def clean_table(
    data_entry: str | Path,
    train_val_list: str | Path,
    test_list: str | Path,
    manifests: dict[int, str | Path],
    *,
    folders: dict[int, str],
    val_fraction: float,
    seed: int,
    max_age: float,
) -> tuple[pd.DataFrame, dict]:
    """The cleaned table of the images on disk, and the cleaning report; `folders`: each archive's
    image folder, relative to the collection's root."""
    source = str(data_entry)
    raw = read_data_entry(data_entry)
    report: dict = {"data_entry": os.path.basename(source), "rows_in": len(raw), "changed": {}, "dropped": {}}

    names_ok = raw.image_index.str.match(_IMAGE_NAME)
    if not names_ok.all():
        row = raw.index[~names_ok][0]
        raise MetadataError(f"{source}: bad image name {raw.image_index[row]!r} at data row {row + 1}")
    duplicated = raw.image_index.duplicated()
    if duplicated.any():
        row = raw.index[duplicated][0]
        raise MetadataError(
            f"{source}: image {raw.image_index[row]!r} appears again at data row {row + 1} "
            f"({int(duplicated.sum())} repeated name(s) in all)"
        )

    table = pd.DataFrame({"image_index": raw.image_index})
    table["patient_id"] = pd.to_numeric(raw.patient_id, errors="raise").astype("int64")
    mismatch = table.patient_id != raw.image_index.str[:8].astype("int64")
    if mismatch.any():
        raise MetadataError(f"{source}: Patient ID disagrees with the image name at data row {mismatch.idxmax() + 1}")
    table["follow_up"] = raw.image_index.str[9:12].astype("int64")
    report["changed"]["follow_up_taken_from_image_name"] = int(
        (pd.to_numeric(raw.follow_up, errors="coerce") != table.follow_up).sum()
    )
    table["age_years"], age_counts = parse_ages(raw.age, max_age, source)
    report["changed"].update(age_counts)
    for column, allowed in (("sex", {"M", "F"}), ("view", {"PA", "AP"})):
        bad = ~raw[column].isin(allowed)
        if bad.any():
            raise MetadataError(
                f"{source}: unexpected {column} {raw[column][bad].iloc[0]!r} at data row {bad.idxmax() + 1}"
            )
        table[column] = raw[column]
    labels, mixed = label_matrix(raw.labels, source)
    report["changed"]["no_finding_with_other_labels"] = mixed
    table = pd.concat([table, labels], axis=1)

    train_val, test = read_list(train_val_list), read_list(test_list)
    both = sorted(set(train_val) & set(test))
    if both:
        raise LeakageError(
            f"{len(both)} image(s) are in both {Path(test_list).name} and {Path(train_val_list).name}, e.g. {both[:3]}"
        )
    unknown = sorted((set(train_val) | set(test)) - set(raw.image_index))
    report["dropped"]["listed_but_not_in_data_entry"] = len(unknown)  # counted, reported, nothing to clean
    if unknown:
        log.warning("%d image(s) in the split lists are not in %s, e.g. %s", len(unknown), source, unknown[:3])
    table["split"] = assign_splits(table, train_val, test, val_fraction, seed)
    unlisted = table.split.isna()
    report["dropped"]["in_neither_split_list"] = int(unlisted.sum())
    table = table[~unlisted]

    disk = on_disk(manifests, folders)
    report["dropped"]["not_in_selected_archives"] = int((~table.image_index.isin(disk.image_index)).sum())
    extra = sorted(set(disk.image_index) - set(table.image_index))
    report["on_disk_not_in_metadata"] = {"count": len(extra), "examples": extra[:20]}
    table = table.merge(disk, on="image_index", how="inner")
    table["archive"] = table.archive.astype("int16")
    table["patient"] = table.patient_id.astype(str)
    table["split"] = table.split.astype(str)
    table["study_date"] = ""  # NIH's tables give no study dates
    table = table[COLUMNS].sort_values("image_index", ignore_index=True)

    leaked = leakage(table)
    report["leakage_patients"] = int(len(leaked))
    report.update(summary(table))
    report["rows_out"] = len(table)
    if len(leaked):
        raise LeakageError(f"{len(leaked)} patients appear in more than one split, e.g. {leaked.index[:10].tolist()}")
    return table, report


def summary(table: pd.DataFrame) -> dict:
    """Images, patients and label prevalence per split, and the age range."""
    out = {"images": {}, "patients": {}, "prevalence": {}}
    for split in SPLITS:
        part = table[table.split == split]
        out["images"][split] = int(len(part))
        out["patients"][split] = int(part.patient_id.nunique())
        out["prevalence"][split] = {f: round(float(part[f].mean()), 6) if len(part) else None for f in FINDINGS}
    ages = table.age_years.dropna()
    out["age_years"] = (
        {
            "min": float(ages.min()),
            "median": float(ages.median()),
            "max": float(ages.max()),
            "null": int(table.age_years.isna().sum()),
        }
        if len(ages)
        else {}
    )
    return out
