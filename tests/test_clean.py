import pandas as pd
import pytest

from conftest import NIH_METADATA, needs_shared
from cxr14 import tables
from cxr14.constants import FINDINGS
from cxr14.settings import defaults
from cxr14.steps import clean

HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)

CLEAN = defaults("clean") | {"folders": {1: "images_01"}}  # archive 1's folder under the extract root


def test_ages_in_both_formats():
    ages, counts = clean.parse_ages(pd.Series(["57", "058Y", "018M", "001D", "412Y"]), 120, "f")
    assert ages.tolist()[:3] == [57.0, 58.0, 1.5]
    assert ages[3] == pytest.approx(1 / 365.25)
    assert pd.isna(ages[4])
    assert counts == {"age_converted_from_months": 1, "age_converted_from_days": 1, "age_implausible_set_null": 1}


def test_unreadable_age_names_file_and_row():
    with pytest.raises(clean.MetadataError, match=r"Data_Entry\.csv: unreadable age '5x' at data row 2"):
        clean.parse_ages(pd.Series(["5", "5x"]), 120, "Data_Entry.csv")


def test_labels_and_no_finding():
    matrix, mixed = clean.label_matrix(pd.Series(["No Finding", "Effusion|Hernia", "Mass|No Finding"]), "f")
    assert matrix.loc[0].sum() == 0
    assert matrix.loc[1, "Effusion"] == 1 and matrix.loc[1, "Hernia"] == 1 and matrix.loc[1].sum() == 2
    assert mixed == 1
    with pytest.raises(clean.MetadataError, match="unknown finding"):
        clean.label_matrix(pd.Series(["Infiltrate"]), "f")


def test_bad_header_is_refused(tmp_path):
    path = tmp_path / "Data_Entry_2017.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(clean.MetadataError, match="Data_Entry_2017.csv: unexpected header"):
        clean.read_data_entry(path)


def _mini(tmp_path, rows, test, train_val):
    (tmp_path / "de.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test))
    (tmp_path / "tv.txt").write_text("\n".join(train_val))
    names = [r.split(",")[0] for r in rows]
    pd.DataFrame({"image_index": names, "bytes": 1}).to_csv(tmp_path / "m.tsv", sep="\t", index=False)
    return tmp_path / "de.csv", tmp_path / "tv.txt", tmp_path / "test.txt", {1: tmp_path / "m.tsv"}


def test_patient_in_two_splits_fails_the_run(tmp_path):
    rows = ["00000001_000.png,No Finding,0,1,50,M,PA,1,1,1,1", "00000001_001.png,Mass,1,1,50,M,PA,1,1,1,1"]
    paths = _mini(tmp_path, rows, test=["00000001_000.png"], train_val=["00000001_001.png"])
    with pytest.raises(clean.LeakageError, match=r"1 patients appear in more than one split, e.g. \[1\]"):
        clean.clean_table(*paths, **CLEAN)


def test_only_images_on_disk_are_kept(tmp_path):
    rows = [f"0000000{p}_000.png,No Finding,0,{p},50,M,PA,1,1,1,1" for p in range(1, 5)]
    de, tv, test, manifests = _mini(
        tmp_path, rows, test=["00000004_000.png"], train_val=[r.split(",")[0] for r in rows[:3]]
    )
    pd.DataFrame({"image_index": ["00000001_000.png", "00000004_000.png", "00000009_000.png"], "bytes": 1}).to_csv(
        manifests[1], sep="\t", index=False
    )
    table, report = clean.clean_table(de, tv, test, manifests, **CLEAN)
    assert table.image_index.tolist() == ["00000001_000.png", "00000004_000.png"]
    assert report["dropped"]["not_in_selected_archives"] == 2
    assert report["on_disk_not_in_metadata"] == {"count": 1, "examples": ["00000009_000.png"]}


@pytest.fixture(scope="module")
def real_tables():
    if not NIH_METADATA.is_dir():
        pytest.skip("../shared/nih-metadata is not present")
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    names = clean.read_data_entry(NIH_METADATA / "Data_Entry_2017_v2020.csv.gz").image_index
    pd.DataFrame({"image_index": names, "bytes": 1}).to_csv(tmp / "m.tsv", sep="\t", index=False)
    out = {}
    for name in ("Data_Entry_2017_v2020.csv.gz", "Data_Entry_2017.csv.gz"):
        out[name] = clean.clean_table(
            NIH_METADATA / name,
            NIH_METADATA / "train_val_list.txt.gz",
            NIH_METADATA / "test_list.txt.gz",
            {1: tmp / "m.tsv"},
            **CLEAN,
        )
    return out, tmp


@needs_shared
def test_both_real_releases_clean_to_the_same_images_and_splits(real_tables):
    (v2020, r2020), (v2017, r2017) = real_tables[0].values()
    for table, report in ((v2020, r2020), (v2017, r2017)):
        assert len(table) == 112_120 and table.patient_id.nunique() == 30_805
        assert report["images"]["test"] == 25_596
        assert report["images"]["train"] + report["images"]["val"] == 86_524
        assert report["leakage_patients"] == 0 and len(clean.leakage(table)) == 0
        assert list(table.columns) == clean.COLUMNS
        # A collection's columns: each image's path under the extract root, the patient as text.
        assert (table.path == "images_01/" + table.image_index).all()
        assert (table.patient == table.patient_id.astype(str)).all()
        assert table[list(FINDINGS)].isin([0, 1]).all().all()
    assert (v2020.image_index == v2017.image_index).all()
    assert (v2020.split == v2017.split).all() and (v2020.patient_id == v2017.patient_id).all()
    assert (v2020.follow_up == v2017.follow_up).all()
    # The releases disagree on ~0.2% of labels, no more.
    differ = (v2020[list(FINDINGS)] != v2017[list(FINDINGS)]).any(axis=1).mean()
    assert 0 < differ < 0.005


@needs_shared
def test_real_ages_are_sensible(real_tables):
    (v2020, r2020), (v2017, r2017) = real_tables[0].values()
    for table in (v2020, v2017):
        ages = table.age_years.dropna()
        assert ages.min() >= 0 and ages.max() <= 120 and 40 < ages.median() < 60
    assert r2020["changed"]["age_implausible_set_null"] == 0
    assert r2017["changed"]["age_implausible_set_null"] == 16 and v2017.age_years.isna().sum() == 16
    assert r2017["changed"]["age_converted_from_months"] == 26
    assert r2020["changed"]["follow_up_taken_from_image_name"] == 24_106


@needs_shared
def test_parquet_is_byte_identical_across_runs(real_tables, tmp_path):
    table, _ = real_tables[0]["Data_Entry_2017_v2020.csv.gz"]
    again, _ = clean.clean_table(
        NIH_METADATA / "Data_Entry_2017_v2020.csv.gz",
        NIH_METADATA / "train_val_list.txt.gz",
        NIH_METADATA / "test_list.txt.gz",
        {1: real_tables[1] / "m.tsv"},
        **CLEAN,
    )
    tables.write_parquet(table, tmp_path / "a.parquet")
    tables.write_parquet(again, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back = pd.read_parquet(tmp_path / "a.parquet")
    assert back.patient_id.dtype == "int64" and back.age_years.dtype == "float64" and back.Mass.dtype == "int8"


def test_validation_split_is_patient_wise_and_seeded():
    table = pd.DataFrame(
        {
            "image_index": [f"{p:08d}_{f:03d}.png" for p in range(100) for f in range(3)],
            "patient_id": [p for p in range(100) for _ in range(3)],
        }
    )
    names = table.image_index.tolist()
    a = clean.assign_splits(table, names, [], 0.2, seed=1)
    b = clean.assign_splits(table, names, [], 0.2, seed=1)
    c = clean.assign_splits(table, names, [], 0.2, seed=2)
    assert (a == b).all() and not (a == c).all()
    assert (a == "val").sum() == 60
    assert table.assign(split=a).groupby("patient_id").split.nunique().max() == 1


GOOD = [f"0000000{p}_000.png,No Finding,0,{p},50,M,PA,1,1,1,1" for p in range(1, 5)]


@pytest.mark.parametrize(
    "case, message",
    [
        ("cut mid-row", r"de\.csv: data row 4 has 2 of 11 fields .*cut short"),
        ("duplicate name", r"de\.csv: image '00000002_000\.png' appears again at data row 5"),
        ("unknown finding", r"de\.csv: unknown finding\(s\) \['Infiltrate'\] at data row 2"),
        ("bad age", r"de\.csv: unreadable age '5O' at data row 3"),
        ("in both lists", r"1 image\(s\) are in both test\.txt and tv\.txt, e\.g\. \['00000004_000\.png'\]"),
        ("empty", r"de\.csv: the file is empty"),
        ("utf-16", r"de\.csv: the file is UTF-16 text .*save it as UTF-8"),
    ],
)
def test_malformed_metadata_is_refused_naming_the_file_row_and_reason(tmp_path, case, message):
    rows = list(GOOD)
    test, train_val = ["00000004_000.png"], [r.split(",")[0] for r in GOOD[:3]]
    if case == "cut mid-row":
        rows[3] = rows[3][:25]
    elif case == "duplicate name":
        rows.append(rows[1])
    elif case == "unknown finding":
        rows[1] = rows[1].replace("No Finding", "Infiltrate")
    elif case == "bad age":
        rows[2] = rows[2].replace(",50,", ",5O,")
    elif case == "in both lists":
        train_val.append("00000004_000.png")
    de, tv, test_path, manifests = _mini(tmp_path, rows, test, train_val)
    if case == "empty":
        de.write_text("")
    elif case == "utf-16":
        de.write_bytes(de.read_text().encode("utf-16"))
    with pytest.raises((clean.MetadataError, clean.LeakageError), match=message):
        clean.clean_table(de, tv, test_path, manifests, **CLEAN)


def test_split_lists_naming_unknown_images_are_counted_and_reported(tmp_path):
    de, tv, test, manifests = _mini(
        tmp_path, GOOD, ["00000004_000.png", "00000099_000.png"], [r.split(",")[0] for r in GOOD[:3]]
    )
    table, report = clean.clean_table(de, tv, test, manifests, **CLEAN)
    assert len(table) == 4 and report["dropped"]["listed_but_not_in_data_entry"] == 1


def test_nihs_table_has_every_column_of_an_ingested_collection():
    """After `clean`, NIH is a collection like the others: the steps after it read the same columns."""
    from cxr14 import formats

    assert [c for c in clean.COLUMNS if c in formats.COLUMNS] == formats.COLUMNS
