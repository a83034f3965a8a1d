"""External collections read as published: tiny copies of CheXpert, MIMIC-CXR-JPG, PadChest, VinDr-CXR
and a hospital's CSV export, laid out file for file as their releases are, harmonised row by row."""

import gzip
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import releases

from conftest import plan_one_group, shard_one_group
from cxr14.constants import FINDINGS
from cxr14.formats import UNLABELLED, CollectionError
from cxr14.images import write_dicom
from cxr14.settings import DatasetSettings, schema
from cxr14.shard_io import UNSPLIT
from cxr14.steps.demo import CHEXPERT_HEADER
from cxr14.steps.ingest import ingest
from cxr14.workflow import collections, config
from cxr14.workflow.config import ConfigError

U = UNLABELLED
SCHEMA = schema()["properties"]["datasets"]["additionalProperties"]


def settings(**dataset):
    """A dataset's typed settings, checked and defaulted as the workflow does."""
    return DatasetSettings.of(collections.dataset_param(config.check(dict(dataset), SCHEMA, "datasets.test")))


def run_ingest(tmp_path, s, labels, **tables):
    out = tmp_path / "out"
    ingest(
        labels=[str(s.root + "/" + name) for name in labels],
        metadata=tables.get("metadata"),
        split_file=tables.get("split_file"),
        patients=tables.get("patients"),
        nih=tables.get("nih"),
        images=out / "images.parquet",
        report=out / "ingest_report.json",
        root=s.root,
        name="test",
        settings=s,
        header_cache=tmp_path / "cache" / "dicom_headers.parquet",
    )
    return pd.read_parquet(out / "images.parquet"), json.loads((out / "ingest_report.json").read_text())


def image(path, size=(48, 40), value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full(size, value, np.uint8))


def row_of(frame, image_index) -> dict:
    return frame.set_index("image_index").loc[image_index].to_dict()


# -- CheXpert ------------------------------------------------------------------------------------------


def chexpert(tmp_path, rows, csv="train.csv"):
    """CheXpert-v1.0-small/<csv> with the published header; `rows`: (patient, study, view, sex, age,
    {observation: code})."""
    root = tmp_path / "CheXpert-v1.0-small"
    split = "valid" if csv == "valid.csv" else "train"
    lines = []
    for patient, study, view, sex, age, values in rows:
        name = f"view1_{'frontal' if view in ('AP', 'PA') else 'lateral'}.jpg"
        path = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study{study}/{name}"
        image(root / path.split("/", 1)[1])
        frontal = view in ("AP", "PA")
        lines.append(
            [path, sex, age, "Frontal" if frontal else "Lateral", view if frontal else "",
             *(values.get(c, "") for c in CHEXPERT_HEADER[5:])]
        )  # fmt: skip
    pd.DataFrame(lines, columns=CHEXPERT_HEADER).to_csv(root / csv, index=False)
    return root


CHEXPERT_ROWS = [
    (1, 1, "PA", "Male", 61, {"Pleural Effusion": "1.0", "Cardiomegaly": "-1.0", "Edema": "0.0"}),
    (1, 2, "Lateral", "Male", 61, {"Pleural Effusion": "1.0"}),
    (2, 1, "AP", "Female", 0, {"No Finding": "1.0", "Support Devices": "1.0"}),
    (3, 1, "PA", "Unknown", 45, {"Pneumothorax": "1.0", "Atelectasis": "", "Lung Opacity": "1.0"}),
]


def test_chexpert_labels_views_and_the_uncertain_policies(tmp_path):
    root = chexpert(tmp_path, CHEXPERT_ROWS)
    frame, report = run_ingest(
        tmp_path, settings(format="chexpert", root=str(root), files=["train.csv"]), ["train.csv"]
    )
    assert list(frame.image_index) == [
        "train/patient00001/study1/view1_frontal.jpg",
        "train/patient00002/study1/view1_frontal.jpg",
        "train/patient00003/study1/view1_frontal.jpg",
    ]
    first = row_of(frame, "train/patient00001/study1/view1_frontal.jpg")
    # Unmentioned (blank) is negative by default, as CheXpert's authors take it; uncertain is not labelled.
    assert (first["Effusion"], first["Cardiomegaly"], first["Edema"], first["Pneumonia"]) == (1, U, 0, 0)
    assert (first["patient"], first["sex"], first["age_years"], first["view"], first["split"]) == (
        "patient00001", "M", 61.0, "PA", "train"
    )  # fmt: skip
    healthy = row_of(frame, "train/patient00002/study1/view1_frontal.jpg")
    assert [healthy[f] for f in ("Atelectasis", "Cardiomegaly", "Effusion", "Pneumothorax")] == [0, 0, 0, 0]
    assert np.isnan(healthy["age_years"]) and healthy["view"] == "AP"  # CheXpert's age 0 is unknown
    third = row_of(frame, "train/patient00003/study1/view1_frontal.jpg")
    assert (third["Pneumothorax"], third["Atelectasis"], third["sex"]) == (1, 0, "unknown")
    # Findings CheXpert does not label are masked in every row, never negative.
    for finding in ("Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"):
        assert (frame[finding] == U).all()
    assert report["labelled_findings"] == [
        "Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"
    ]  # fmt: skip
    assert report["dropped"]["view not in views"] == 1 and report["images"] == 3
    assert report["findings"]["Effusion"] == {"labelled": 3, "positives": 1, "prevalence": 1 / 3}
    assert report["policy"]["unmentioned"] == "negative" and report["labels_by"] == {"labeller": 3}
    # `unmentioned: ignore`: patient 3's blank Effusion is not labelled; patient 2's is negative ("No Finding").
    s = settings(format="chexpert", root=str(root), files=["train.csv"], unmentioned="ignore")
    frame, report = run_ingest(tmp_path, s, ["train.csv"])
    assert row_of(frame, "train/patient00003/study1/view1_frontal.jpg")["Atelectasis"] == U
    assert row_of(frame, "train/patient00001/study1/view1_frontal.jpg")["Pneumonia"] == U
    assert report["findings"]["Effusion"] == {"labelled": 2, "positives": 1, "prevalence": 0.5}
    for policy, want in (("zero", 0), ("one", 1)):
        s = settings(format="chexpert", root=str(root), files=["train.csv"], uncertain=policy)
        frame, _ = run_ingest(tmp_path, s, ["train.csv"])
        assert row_of(frame, "train/patient00001/study1/view1_frontal.jpg")["Cardiomegaly"] == want
    s = settings(format="chexpert", root=str(root), files=["train.csv"], views=["PA", "AP", "LATERAL"])
    frame, _ = run_ingest(tmp_path, s, ["train.csv"])
    assert row_of(frame, "train/patient00001/study2/view1_lateral.jpg")["view"] == "LATERAL"


def test_the_ingest_report_shows_each_prevalence_beside_nihs(tmp_path):
    root = chexpert(tmp_path, CHEXPERT_ROWS)
    nih = pd.DataFrame({f: [1, 0, 0, 0] if f == "Effusion" else [0, 0, 0, 0] for f in FINDINGS})
    nih.to_parquet(tmp_path / "nih.parquet")
    s = settings(format="chexpert", root=str(root), files=["train.csv"])
    _, report = run_ingest(tmp_path, s, ["train.csv"], nih=str(tmp_path / "nih.parquet"))
    assert report["findings"]["Effusion"] == {
        "labelled": 3,
        "positives": 1,
        "prevalence": 1 / 3,
        "nih_prevalence": 0.25,
    }
    assert report["findings"]["Hernia"]["nih_prevalence"] == 0.0 and report["findings"]["Hernia"]["prevalence"] is None


def test_chexpert_valid_csv_is_the_val_split(tmp_path):
    root = chexpert(tmp_path, CHEXPERT_ROWS[:1], csv="valid.csv")
    frame, report = run_ingest(tmp_path, settings(format="chexpert", root=str(root)), ["valid.csv"])
    assert list(frame.split) == ["val"] and report["splits"] == {"val": 1}


def test_chexpert_test_set_labels_are_radiologists_and_name_their_views(tmp_path):
    """test_labels.csv as released with CheXlocalize: Path from `test/`, the 14 observations, no sex,
    age or projection: frontal images are FRONTAL (kept by default), laterals dropped."""
    root = tmp_path / "CheXpert"
    table = releases.chexpert_test_labels(3, np.random.default_rng(0))
    table.loc[[0, 2, 3], "Pleural Effusion"] = ["1.0", "0.0", "1.0"]  # rows: p0 frontal, p0 lateral, p1, p2
    write_table = releases.write_table(table, root / "test_labels.csv")
    for path in table.Path:
        image(root / path)
    frame, report = run_ingest(tmp_path, settings(format="chexpert", root=str(root), files=["test_labels.csv"]),
                               [write_table.name])  # fmt: skip
    assert list(frame.image_index) == [f"test/patient{64741 + k}/study1/view1_frontal.jpg" for k in range(3)]
    assert set(frame.view) == {"FRONTAL"} and set(frame.split) == {"test"} and set(frame.sex) == {"unknown"}
    assert list(frame.Effusion) == [1, 0, 1]
    assert report["labels_by"] == {"radiologists": 3} and report["dropped"]["view not in views"] == 1
    valid = chexpert(tmp_path / "v", CHEXPERT_ROWS[:1], csv="valid.csv")
    assert run_ingest(tmp_path, settings(format="chexpert", root=str(valid)), ["valid.csv"])[1]["labels_by"] == {
        "radiologists": 1}  # fmt: skip


# -- MIMIC-CXR-JPG -------------------------------------------------------------------------------------


def mimic(tmp_path, with_patients=False, radiologists=False):
    """mimic-cxr-jpg/2.1.0: the three tables (gzipped CSVs) and files/pXX/p<subject>/s<study>/<dicom>.jpg;
    with MIMIC-IV's patients table, and 2.1.0's radiologist-labelled test set, when asked."""
    root = tmp_path / "mimic-cxr-jpg" / "2.1.0"
    root.mkdir(parents=True)
    meta = pd.DataFrame(
        {
            "dicom_id": ["d1", "d2", "d3", "d4"],
            "subject_id": [10000032, 10000032, 11000011, 12000012],
            "study_id": [50414267, 50414267, 53189527, 57000000],
            "PerformedProcedureStepDescription": ["CHEST (PA AND LAT)"] * 4,
            "ViewPosition": ["PA", "LATERAL", "AP", "PA"],
            "Rows": [3056] * 4,
            "Columns": [2544] * 4,
            "StudyDate": [21830506, 21830506, 21800101, 21900212],
            "StudyTime": [213014.531] * 4,
            "ProcedureCodeSequence_CodeMeaning": ["CHEST (PA AND LAT)"] * 4,
            "ViewCodeSequence_CodeMeaning": ["postero-anterior", "lateral", "antero-posterior", "postero-anterior"],
            "PatientOrientationCodeSequence_CodeMeaning": ["Erect", "Erect", "Recumbent", "Erect"],
        }
    )
    labels = pd.DataFrame(
        {
            "subject_id": [10000032, 11000011],
            "study_id": [50414267, 53189527],
            **{c: [None, None] for c in sorted(set(CHEXPERT_HEADER[5:]))},
        }
    )
    labels.loc[0, ["Pleural Effusion", "Edema"]] = [1.0, -1.0]
    labels.loc[1, "No Finding"] = 1.0
    split = pd.DataFrame({"dicom_id": meta.dicom_id, "study_id": meta.study_id, "subject_id": meta.subject_id,
                          "split": ["train", "train", "test", "test"]})  # fmt: skip
    releases.write_table(meta, root / "mimic-cxr-2.0.0-metadata.csv.gz")
    releases.write_table(labels, root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    releases.write_table(split, root / "mimic-cxr-2.0.0-split.csv.gz")
    for r in meta.itertuples():
        s = str(r.subject_id)
        image(root / "files" / f"p{s[:2]}" / f"p{s}" / f"s{r.study_id}" / f"{r.dicom_id}.jpg")
    tables = {
        "metadata": str(root / "mimic-cxr-2.0.0-metadata.csv.gz"),
        "split_file": str(root / "mimic-cxr-2.0.0-split.csv.gz"),
    }
    if with_patients:
        people = pd.DataFrame({"subject_id": [10000032, 11000011, 12000012], "gender": ["F", "M", "F"],
                               "anchor_age": [52, 70, 33], "anchor_year": [2180, 2180, 2186],
                               "anchor_year_group": ["2014 - 2016"] * 3,
                               "dod": [None] * 3})  # fmt: skip
        releases.write_table(people, root / "patients.csv.gz")
        tables["patients"] = str(root / "patients.csv.gz")
    if radiologists:  # 2.1.0's test set as released: study_id only, Airspace Opacity, both test studies
        names = sorted(c if c != "Lung Opacity" else "Airspace Opacity" for c in CHEXPERT_HEADER[5:])
        test = pd.DataFrame({"study_id": [53189527, 57000000], **{c: [0.0, 0.0] for c in names}})
        test.loc[0, ["Cardiomegaly", "No Finding"]] = [1.0, 0.0]
        test.loc[1, ["Pneumothorax", "Edema"]] = [1.0, -1.0]
        test.to_csv(root / "mimic-cxr-2.1.0-test-set-labeled.csv", index=False)
    return root, tables


def test_mimic_joins_studies_to_images_and_builds_the_published_paths(tmp_path):
    root, tables = mimic(tmp_path, with_patients=True)
    s = settings(format="mimic", root=str(root), patients="patients.csv.gz")
    frame, report = run_ingest(tmp_path, s, s.files, **tables)
    assert list(frame.image_index) == [
        "files/p10/p10000032/s50414267/d1.jpg",
        "files/p11/p11000011/s53189527/d3.jpg",
        "files/p12/p12000012/s57000000/d4.jpg",
    ]
    d1, d3, d4 = (row_of(frame, i) for i in frame.image_index)
    # Blank is unmentioned, negative by default; -1 uncertain is not labelled.
    assert (d1["Effusion"], d1["Edema"], d1["Atelectasis"], d1["split"], d1["sex"]) == (1, U, 0, "train", "F")
    assert [d3[f] for f in ("Effusion", "Edema", "Pneumonia")] == [0, 0, 0] and d3["split"] == "test"
    assert all(d4[f] == U for f in FINDINGS) and d4["split"] == "test"  # a study the labeller left out
    # The age at the study: MIMIC-IV's anchor age plus the years from the anchor year to the study date.
    assert (d1["age_years"], d3["age_years"], d4["age_years"]) == (55.0, 70.0, 37.0)
    # A recumbent AP film is a supine AP, its own view; the lateral is dropped.
    assert (d1["view"], d3["view"], d4["view"]) == ("PA", "AP_SUPINE", "PA")
    assert report["dropped"]["view not in views"] == 1 and report["views"] == {"AP_SUPINE": 1, "PA": 2}
    assert report["labels_by"] == {"labeller": 2, "not said": 1}
    s = settings(format="mimic", root=str(root), patients="patients.csv.gz", views=["PA", "AP"])
    assert "files/p11/p11000011/s53189527/d3.jpg" not in set(run_ingest(tmp_path, s, s.files, **tables)[0].image_index)


def test_mimic_radiologist_labelled_test_set_replaces_the_labellers_labels(tmp_path):
    root, tables = mimic(tmp_path, radiologists=True)
    files = ["mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr-2.1.0-test-set-labeled.csv"]
    frame, report = run_ingest(tmp_path, settings(format="mimic", root=str(root), files=files), files, **tables)
    d1, d3, d4 = (row_of(frame, i) for i in frame.image_index)
    assert (d3["Cardiomegaly"], d3["Effusion"]) == (1, 0)  # the radiologists', not the labeller's "No Finding"
    assert (d4["Pneumothorax"], d4["Edema"], d4["Atelectasis"]) == (1, U, 0)  # a study only they labelled
    assert d1["Effusion"] == 1 and report["labels_by"] == {"labeller": 1, "radiologists": 2}
    # Validation on the radiologists' reads alone.
    s = settings(format="mimic", root=str(root), files=files, labelled_by=["radiologists"])
    frame, report = run_ingest(tmp_path, s, files, **tables)
    assert [i.rsplit("/", 1)[1] for i in frame.image_index] == ["d3.jpg", "d4.jpg"]
    assert report["dropped"]["not labelled by radiologists"] == 2  # d1 (the labeller's) and the lateral d2


# -- PadChest ------------------------------------------------------------------------------------------

NOT_RELEASED = "216840111366964012339356563862009072111404053_00-043-192.png"  # listed, in no zip


def padchest(tmp_path):
    """PadChest as a user has it after unzipping: zip 0 into its folder `0/`, zip 1 flat into the root;
    the 160K table gzipped with its 35 published columns; 16-bit PNGs."""
    root = tmp_path / "padchest"
    rows = [
        ("20536686640136348236148679891455886468_k6ga29.png", 0, "PA",
         "['pleural effusion', 'cardiomegaly', ' pacemaker']"),
        ("135803415504923515076821959678074435083_fzis7b.png", 0, "AP_horizontal", "['normal']"),
        ("313572750430997347502932654319389875966_54hr1w.png", 1, "L", "['infiltrates', 'nodule']"),
        ("216840111366964012339356563862009072111404053_00-043-193.png", 1, "PA",
         "['air bronchogram', 'hiatal hernia', 'apical pleural thickening']"),
        ("216840111366964012339356563862009072111404053_00-043-194.png", 1, "PA",
         "['hydropneumothorax', 'atelectasis basal', 'loculated fissural effusion']"),
        ("216840111366964012339356563862009072111404053_00-043-195.png", 0, "PA", "['exclude']"),
        ("216840111366964012339356563862009072111404053_00-043-196.png", 0, "PA", "['suboptimal study', 'normal']"),
        (NOT_RELEASED, 1, "PA", "['normal']"),
        ("216840111366964012339356563862009072111404053_00-043-197.png", 0, "PA", ""),
    ]  # fmt: skip
    table = pd.DataFrame("", index=range(len(rows)), columns=releases.PADCHEST_COLUMNS)
    for i, (name, folder, projection, labels) in enumerate(rows):
        table.loc[i, ["ImageID", "ImageDir", "StudyDate_DICOM", "PatientID", "PatientBirth", "PatientSex_DICOM",
                      "Projection", "Labels", "MethodLabel"]] = [
            name, str(folder), "20140915", f"p{i}", "" if i == 2 else "1936.0", "MF"[i % 2], projection, labels,
            "Physician" if i % 3 == 0 else "RNN_model"]  # fmt: skip
        if name != NOT_RELEASED:
            path = root / str(folder) / name if folder == 0 else root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.full((40, 40), 3000 + 100 * i, np.uint16))  # 16-bit, as published
    releases.write_table(table, root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
    return root


def test_padchest_as_unzipped_its_vocabulary_and_its_own_notes(tmp_path):
    root = padchest(tmp_path)
    s = settings(format="padchest", root=str(root))
    frame, report = run_ingest(tmp_path, s, s.files)
    first = row_of(frame, "0/20536686640136348236148679891455886468_k6ga29.png")
    assert (first["Effusion"], first["Cardiomegaly"], first["Pneumonia"], first["Hernia"]) == (1, 1, 0, 0)
    assert (first["age_years"], first["sex"], first["view"], first["patient"]) == (78.0, "M", "PA", "p0")
    supine = row_of(frame, "0/135803415504923515076821959678074435083_fzis7b.png")
    assert all(supine[f] == 0 for f in FINDINGS) and supine["view"] == "AP_SUPINE"  # AP_horizontal
    # Zip 1 was unzipped flat: its images are found under the root, and the report says so.
    fourth = row_of(frame, "216840111366964012339356563862009072111404053_00-043-193.png")
    # Consolidation and its air bronchogram sit under infiltrates too in PadChest's tree.
    assert [f for f in FINDINGS if fourth[f] == 1] == ["Infiltration", "Consolidation", "Pleural_Thickening", "Hernia"]
    hydro = row_of(frame, "216840111366964012339356563862009072111404053_00-043-194.png")
    assert [f for f in FINDINGS if hydro[f] == 1] == ["Atelectasis", "Effusion", "Pneumothorax"]
    unsaid = row_of(frame, "0/216840111366964012339356563862009072111404053_00-043-197.png")
    assert all(unsaid[f] == U for f in FINDINGS)  # no labels: says nothing, negative for nothing
    assert report["images"] == 5 and report["layout"] == {"<ImageDir>/<ImageID>": 3, "<ImageID> (flat)": 2}
    assert report["dropped"] == {
        "image file missing": 0, "labelled 'exclude'": 1, "labelled 'suboptimal study'": 1,
        "not in the release's zips": 1, "view not in views": 1,
    }  # fmt: skip
    assert report["dropped_images"]["not in the release's zips"] == [NOT_RELEASED]
    assert report["labels_by"] == {"labeller": 3, "radiologists": 2}
    assert report["labelled_findings"] == list(FINDINGS)  # PadChest's terms cover all 14


# -- VinDr-CXR -----------------------------------------------------------------------------------------

VINDR_LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia", "Tuberculosis",
    "Other disease", "No finding",
]  # fmt: skip


def vindr(tmp_path):
    """vindr-cxr/1.0.0: annotations/image_labels_{train,test}.csv and {train,test}/<image_id>.dicom, the
    patient's sex and age in each DICOM header only (the test image's age in months)."""
    root = tmp_path / "vindr-cxr" / "1.0.0"
    (root / "annotations").mkdir(parents=True)
    train = pd.DataFrame(0, index=range(3), columns=["image_id", "rad_id", *VINDR_LABELS])
    train["image_id"], train["rad_id"] = "000434271f63a053c4128a0ba6352c7f", ["R2", "R3", "R6"]
    train.loc[0, ["Pleural effusion", "Cardiomegaly"]] = 1
    train.loc[1, "Pleural effusion"] = 1
    train.loc[[0, 1, 2], "Pulmonary fibrosis"] = 1
    train.to_csv(root / "annotations" / "image_labels_train.csv", index=False)
    test = pd.DataFrame(0, index=range(1), columns=["image_id", *VINDR_LABELS])
    test["image_id"] = "002a34c58c5b758217ed1f584ccbcfe9"
    test.loc[0, "Pneumothorax"] = 1
    test.to_csv(root / "annotations" / "image_labels_test.csv", index=False)
    for split, name, sex, age in (("train", train.image_id[0], "F", "052Y"), ("test", test.image_id[0], "M", "018M")):
        (root / split).mkdir()
        write_dicom(root / split / f"{name}.dicom", np.full((40, 40), 2000, np.uint16), PatientSex=sex, PatientAge=age)
    return root


@pytest.mark.parametrize(
    "readers, effusion, cardiomegaly, fibrosis", [("any", 1, 1, 1), ("majority", 1, 0, 1), ("all", 0, 0, 1)]
)
def test_vindr_readers_rule_and_consensus_test_labels(tmp_path, readers, effusion, cardiomegaly, fibrosis):
    root = vindr(tmp_path)
    files = ["annotations/image_labels_train.csv", "annotations/image_labels_test.csv"]
    frame, report = run_ingest(tmp_path, settings(format="vindr", root=str(root), files=files, readers=readers), files)
    train = row_of(frame, "train/000434271f63a053c4128a0ba6352c7f.dicom")
    assert (train["Effusion"], train["Cardiomegaly"], train["Fibrosis"]) == (effusion, cardiomegaly, fibrosis)
    test = row_of(frame, "test/002a34c58c5b758217ed1f584ccbcfe9.dicom")
    assert test["Pneumothorax"] == 1 and test["split"] == "test" and test["view"] == "PA"
    assert (frame[["Mass", "Nodule", "Hernia"]] == U).all().all()  # Nodule/Mass is neither alone
    assert report["policy"]["readers"] == readers


def test_vindr_sex_and_age_come_from_the_dicom_headers_read_once(tmp_path):
    root = vindr(tmp_path)
    files = ["annotations/image_labels_train.csv", "annotations/image_labels_test.csv"]
    s = settings(format="vindr", root=str(root), files=files)
    frame, report = run_ingest(tmp_path, s, files)
    test, train = (row_of(frame, i) for i in frame.image_index)  # sorted: test/ before train/
    assert (test["sex"], test["age_years"], train["sex"], train["age_years"]) == ("M", 1.5, "F", 52.0)
    assert report["dicom_headers"] == {"read": 2, "from cache": 0} and report["age_known"] == 2
    again, report = run_ingest(tmp_path, s, files)  # a rerun reads no header again
    pd.testing.assert_frame_equal(again, frame)
    assert report["dicom_headers"] == {"read": 0, "from cache": 2}
    name = root / "test" / "002a34c58c5b758217ed1f584ccbcfe9.dicom"
    write_dicom(name, np.full((40, 40), 2000, np.uint16), PatientSex="F", PatientAge="081Y")  # replaced
    frame, report = run_ingest(tmp_path, s, files)
    assert report["dicom_headers"] == {"read": 1, "from cache": 1}
    assert tuple(row_of(frame, "test/002a34c58c5b758217ed1f584ccbcfe9.dicom")[k] for k in ("sex", "age_years")) == (
        "F", 81.0)  # fmt: skip


def test_vinbigdata_train_csv_boxes_make_image_labels_by_the_readers_rule(tmp_path):
    """Kaggle's VinBigData `train.csv`: a row per box, "No finding" rows without one."""
    root = tmp_path / "vinbigdata"
    rows = [  # image a: R8 and R9 box an effusion (R9 twice), R10 found nothing; only R9 boxes a Nodule/Mass
        ("a" * 32, "Pleural effusion", 10, "R8", 10, 10, 50, 50),
        ("a" * 32, "Pleural effusion", 10, "R9", 12, 9, 51, 48),
        ("a" * 32, "Pleural effusion", 10, "R9", 70, 70, 90, 90), ("a" * 32, "Nodule/Mass", 8, "R9", 5, 5, 9, 9),
        ("a" * 32, "No finding", 14, "R10", "", "", "", ""),
        ("b" * 32, "No finding", 14, "R1", "", "", "", ""), ("b" * 32, "No finding", 14, "R2", "", "", "", ""),
        ("b" * 32, "Cardiomegaly", 3, "R3", 1, 1, 2, 2),
    ]  # fmt: skip
    (root / "train").mkdir(parents=True)
    pd.DataFrame(rows, columns=releases.VINBIGDATA_COLUMNS).to_csv(root / "train.csv", index=False)
    for name in ("a" * 32, "b" * 32):
        write_dicom(root / "train" / f"{name}.dicom", np.full((40, 40), 2000, np.uint16), PatientSex="O")
    for readers, effusion, cardiomegaly in (("any", 1, 1), ("majority", 1, 0), ("all", 0, 0)):
        s = settings(format="vindr", root=str(root), files=["train.csv"], readers=readers)
        frame, report = run_ingest(tmp_path, s, ["train.csv"])
        a, b = row_of(frame, f"train/{'a' * 32}.dicom"), row_of(frame, f"train/{'b' * 32}.dicom")
        assert (a["Effusion"], b["Cardiomegaly"], a["Cardiomegaly"], b["Effusion"]) == (effusion, cardiomegaly, 0, 0)
        assert a["split"] == "train" and a["sex"] == "unknown" and np.isnan(a["age_years"])
    # What VinBigData cannot box (Edema, Emphysema, Pneumonia) and Nodule/Mass are not labelled.
    assert report["labelled_findings"] == [
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Pneumothorax", "Consolidation", "Fibrosis",
        "Pleural_Thickening",
    ]  # fmt: skip
    pd.DataFrame([rows[0][:1] + ("Lung tumour",) + rows[0][2:]], columns=releases.VINBIGDATA_COLUMNS).to_csv(
        root / "train.csv", index=False)  # fmt: skip
    with pytest.raises(CollectionError, match=r"train.csv, row train.csv:2: class_name 'Lung tumour' is not one"):
        run_ingest(tmp_path, settings(format="vindr", root=str(root), files=["train.csv"]), ["train.csv"])


# -- a hospital's CSV export ---------------------------------------------------------------------------


def export(tmp_path, text, images=("a.png", "b.jpg", "c.dcm")):
    root = tmp_path / "export"
    for name in images:
        if name.endswith(".dcm"):
            root.mkdir(parents=True, exist_ok=True)
            write_dicom(root / name, np.full((30, 50), 900, np.uint16))
        else:
            image(root / name)
    (root / "labels.csv").write_text(text)
    return root


def test_a_csv_export_with_its_own_column_names(tmp_path):
    root = export(
        tmp_path,
        "file,mrn,years,gender,projection,effusion,ptx,Cardiomegaly\n"
        "a.png,100,71,F,PA,1,0,\nb.jpg,100,071Y,F,AP Supine,0,,1\nc.dcm,200,018M,M,PA,,1,0\n",
    )
    s = settings(
        format="csv", root=str(root), files=["labels.csv"],
        columns={"path": "file", "patient": "mrn", "age": "years", "sex": "gender", "view": "projection"},
        findings={"effusion": "Effusion", "ptx": "Pneumothorax", "Cardiomegaly": "Cardiomegaly"},
    )  # fmt: skip
    frame, report = run_ingest(tmp_path, s, ["labels.csv"])
    assert frame[["Effusion", "Pneumothorax", "Cardiomegaly"]].to_numpy().tolist() == [[1, 0, U], [0, U, 1], [U, 1, 0]]
    assert list(frame.patient) == ["100", "100", "200"] and list(frame.patient_id) == [0, 0, 1]
    assert list(frame.age_years) == [71.0, 71.0, 1.5] and list(frame.view) == ["PA", "AP_SUPINE", "PA"]
    assert report["labelled_findings"] == ["Cardiomegaly", "Effusion", "Pneumothorax"]


# -- collections without labels: a hospital export before its reads, a plain folder --------------------


def test_an_export_without_finding_columns_is_a_collection_without_labels(tmp_path):
    root = export(tmp_path, "path,patient_id,date\na.png,1,2024-03-05\nb.jpg,2,20240411\nc.dcm,2,\n")
    frame, report = run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"]), ["labels.csv"])
    assert report["labelled_findings"] == [] and report["images"] == 3 and report["study_dates"] == 2
    assert (frame[list(FINDINGS)] == U).all().all() and list(frame.study_date) == ["2024-03-05", "2024-04-11", ""]
    # Nothing to train, calibrate or choose operating points on: such a collection cannot be split.
    split = settings(format="csv", root=str(root), files=["labels.csv"], split={"val": 0.3, "test": 0.3})
    with pytest.raises(CollectionError, match="a collection without labels cannot be split"):
        run_ingest(tmp_path, split, ["labels.csv"])


def test_a_folder_is_every_image_under_it_its_dicom_headers_read(tmp_path):
    root = tmp_path / "hospital"
    image(root / "p1" / "s1" / "a_frontal.png")
    image(root / "p1" / "s1" / "a_lateral.png")
    image(root / "loose.jpg")
    (root / "p2").mkdir()
    write_dicom(root / "p2" / "b_frontal.dcm", np.full((30, 50), 900, np.uint16), PatientID="MRN7", ViewPosition="AP",
                PatientSex="F", PatientAge="067Y", StudyDate="20240229")  # fmt: skip
    (root / "notes.txt").write_text("not an image")
    kept = dict(format="folder", root=str(root), views=["PA", "AP", "unknown"])
    frame, report = run_ingest(tmp_path, settings(**kept), [])
    assert list(frame.path) == ["loose.jpg", "p1/s1/a_frontal.png", "p1/s1/a_lateral.png", "p2/b_frontal.dcm"]
    assert list(frame.patient) == ["loose", "p1", "p1", "MRN7"] and report["labelled_findings"] == []
    dicom = row_of(frame, "p2/b_frontal.dcm")
    assert (dicom["view"], dicom["sex"], dicom["age_years"], dicom["study_date"]) == ("AP", "F", 67.0, "2024-02-29")
    assert (frame[list(FINDINGS)] == U).all().all() and report["study_dates"] == 1
    frame, _ = run_ingest(tmp_path, settings(**kept, include=["*_frontal.*"]), [])
    assert list(frame.path) == ["p1/s1/a_frontal.png", "p2/b_frontal.dcm"]
    with pytest.raises(config.ConfigError, match="files"):
        settings(format="folder", root=str(root), files=["labels.csv"])  # a folder has no tables


# -- bad input: a clear error naming the file, the row and the reason, and nothing written -------------

BAD = {
    "a missing column": ("file,patient_id,Effusion\na.png,1,1\n", r"labels.csv: missing column\(s\) \['path'\]"),
    "an unknown label value": (
        "path,patient_id,Effusion\na.png,1,1\nb.jpg,2,2\n",
        r"labels.csv, row labels.csv:3: column 'Effusion' has '2', not one of \['0', '1'\] or blank",
    ),
    "a path that does not exist": (
        "path,patient_id,Effusion\na.png,1,1\nnowhere.png,2,0\n",
        r"1 image files do not exist .* \(max_missing=0\), e.g. row labels.csv:3: nowhere.png",
    ),
    "a repeated image": (
        "path,patient_id,Effusion\na.png,1,1\na.png,1,0\n",
        r"image a.png is listed more than once \(rows labels.csv:2, labels.csv:3\)",
    ),
    "a patient in two splits": (
        "path,patient_id,split,Effusion\na.png,1,train,1\nb.jpg,1,test,0\n",
        r"patient 1 is in more than one split \(labels.csv:2: train, labels.csv:3: test\)",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, case):
    text, message = BAD[case]
    root = export(tmp_path, text)
    with pytest.raises(CollectionError, match=message):
        run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"]), ["labels.csv"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _patients_csv(tmp_path, n_patients: int, split_column: bool = False):
    """A hospital export of n patients with two images each (and a split column when asked)."""
    lines, names = ["path,patient_id,split,Effusion" if split_column else "path,patient_id,Effusion"], []
    for k in range(n_patients):
        for view in (1, 2):
            own = ["train", "val", "test"][k % 3]
            names.append(f"p{k}_{view}.png")
            lines.append(f"{names[-1]},{k},{own},{(k + view) % 2}" if split_column else f"{names[-1]},{k},{k % 2}")
    return export(tmp_path / f"{n_patients}", "\n".join(lines) + "\n", names)


def test_a_made_split_is_patient_wise_seeded_and_sized(tmp_path):
    root = _patients_csv(tmp_path, 40)
    s = settings(format="csv", root=str(root), files=["labels.csv"], split={"test": 0.25, "val": 0.1, "seed": 3})
    frame, report = run_ingest(tmp_path, s, ["labels.csv"])
    patients = frame.groupby("split").patient.nunique().to_dict()
    assert patients == {"test": 10, "val": 4, "train": 26}
    assert (frame.groupby("patient").split.nunique() == 1).all()  # no patient in two splits
    assert report["splits"] == {"test": 20, "train": 52, "val": 8} and report["policy"]["split"]["seed"] == 3
    again, _ = run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"],
                                             split={"val": 0.1, "test": 0.25, "seed": 3}), ["labels.csv"])  # fmt: skip
    pd.testing.assert_frame_equal(again, frame)  # the same split however the keys are written
    other, _ = run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"],
                                             split={"val": 0.1, "test": 0.25, "seed": 4}), ["labels.csv"])  # fmt: skip
    assert not other.split.equals(frame.split)


def test_the_collections_own_split_is_kept_and_checked(tmp_path):
    root = _patients_csv(tmp_path, 9, split_column=True)
    s = settings(format="csv", root=str(root), files=["labels.csv"], split="own")
    frame, _ = run_ingest(tmp_path, s, ["labels.csv"])
    assert frame.groupby("split").patient.nunique().to_dict() == {"test": 3, "train": 3, "val": 3}
    with pytest.raises(CollectionError, match=r"the test split\(s\) have no images"):
        run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"], split="own",
                                      splits=["train", "val"]), ["labels.csv"])  # fmt: skip
    unsplit = export(tmp_path / "unsplit", "path,patient_id,Effusion\na.png,1,1\nb.jpg,2,0\n")
    with pytest.raises(CollectionError, match=r"row labels.csv:2: no train, val or test split"):
        run_ingest(tmp_path, settings(format="csv", root=str(unsplit), files=["labels.csv"], split="own"),
                   ["labels.csv"])  # fmt: skip
    with pytest.raises(CollectionError, match=r"2 patients cannot be split into val 0.3, test 0.4"):
        run_ingest(tmp_path, settings(format="csv", root=str(_patients_csv(tmp_path, 2)), files=["labels.csv"],
                                      split={"val": 0.3, "test": 0.4}), ["labels.csv"])  # fmt: skip


def test_an_image_replaced_under_its_name_changes_the_ingest_report(tmp_path):
    """The table alone would not change, so the report's fingerprint of the files is what reshards."""
    root = export(tmp_path, "path,patient_id,Effusion\na.png,1,1\nb.jpg,2,0\n")
    s = settings(format="csv", root=str(root), files=["labels.csv"])
    frame, report = run_ingest(tmp_path, s, ["labels.csv"])
    image(root / "b.jpg", value=30)
    again, replaced = run_ingest(tmp_path, s, ["labels.csv"])
    pd.testing.assert_frame_equal(again, frame)
    assert replaced["image_files"] != report["image_files"]


def test_a_split_collection_is_sharded_per_split(tmp_path):
    from cxr14.steps import shards

    root = _patients_csv(tmp_path, 12)
    s = settings(format="csv", root=str(root), files=["labels.csv"], split={"val": 0.25, "test": 0.25})
    frame, _ = run_ingest(tmp_path, s, ["labels.csv"])
    plan = tmp_path / "plan.parquet"
    groups = collections.dataset_groups({"split": s.split})
    out = tmp_path / "out"
    counts = shards.plan_shards(
        table=out / "images.parquet",
        report=out / "ingest_report.json",
        plan=plan,
        groups=groups,
        images_per_shard=5,
        seed=0,
    )
    assert groups == ["train", "val", "test"] and counts == {"train": 3, "val": 2, "test": 2}
    planned = pd.read_parquet(plan)
    for group in groups:
        assert set(planned.image_index[planned.split == group]) == set(frame.image_index[frame.split == group])
    # Every run is calibrated on its val split and validated on its test split; an unsplit one, all of it.
    assert collections.scored_groups({"split": s.split}) == {"val": "val", "external": "test"}
    assert collections.scored_groups({}) == {"external": UNSPLIT}


def test_a_split_collection_takes_no_local_recalibration():
    site = {"root": "x", "split": "own", "recalibrate": 0.3, "images_per_shard": 5, "seed": 0}
    config = {"shards": {"images_per_shard": 10, "seed": 0}, "archives": [1], "datasets": {"site": site}}
    with pytest.raises(ConfigError, match="datasets.site: recalibrate is for a collection without splits"):
        collections.collections(config)
    config["datasets"]["site"]["recalibrate"] = 0
    assert (
        collections.collections(config)["site"].is_site
        and not collections.collections(
            {**config, "datasets": {"site": {**config["datasets"]["site"], "split": None, "recalibrate": 0.3}}}
        )["site"].is_site
    )


def test_missing_images_within_the_tolerance_are_dropped_and_counted(tmp_path):
    root = export(tmp_path, "path,patient_id,Effusion\na.png,1,1\nnowhere.png,2,0\nb.jpg,3,0\n")
    s = settings(format="csv", root=str(root), files=["labels.csv"], max_missing=1)
    frame, report = run_ingest(tmp_path, s, ["labels.csv"])
    assert list(frame.image_index) == ["a.png", "b.jpg"] and report["dropped"]["image file missing"] == 1


def test_a_misspelt_dataset_key_is_named():
    with pytest.raises(config.ConfigError, match="'uncertian' was unexpected"):
        settings(format="chexpert", root="x", uncertian="zero")
    with pytest.raises(config.ConfigError, match="files' is a required property"):
        settings(format="csv", root="x")


def test_the_docs_label_table_is_the_code_table():
    """The docs' harmonisation table says what LABEL_MAP does (CheXpert/MIMIC and VinDr columns)."""
    from conftest import REPO
    from cxr14.formats import LABEL_MAP, padchest

    text = (REPO / "docs/external-validation.md").read_text()
    table = text.split("| NIH finding | CheXpert / MIMIC | VinDr-CXR | PadChest (any of) |", 1)[1].split("\n\n", 1)[0]
    rows = {cells[0]: cells[1:] for line in table.strip().splitlines()[1:]
            for cells in [[c.strip() for c in line.strip("|").split("|")]]}  # fmt: skip
    assert list(rows) == list(FINDINGS)
    for column, fmt in ((0, "chexpert"), (1, "vindr")):
        by_finding = {finding: source for source, finding in LABEL_MAP[fmt].items()}
        for finding, cells in rows.items():
            assert cells[column].split(" (")[0] == by_finding.get(finding, "–"), (fmt, finding)
    assert LABEL_MAP["mimic"] == LABEL_MAP["chexpert"]
    for finding, cells in rows.items():  # every PadChest term of a finding is named in its cell, in full
        named = {t.strip() for t in cells[2].split(",")}
        assert named == {t for t in LABEL_MAP["padchest"] if finding in padchest.findings_of(t)}, finding


def test_a_file_that_is_no_image_is_named_by_its_shard(tmp_path):
    """Ingest checks that files exist; the shard step decodes them: a non-image is listed with the
    reason, and past `max_bad_images` the shard fails naming it, leaving no shard behind."""
    from cxr14.shard_io import TooManyBadImages

    root = export(tmp_path, "path,patient_id,Effusion\na.png,1,1\nnotes.png,2,0\n")
    (root / "notes.png").write_text("not an x-ray")
    frame, _ = run_ingest(tmp_path, settings(format="csv", root=str(root), files=["labels.csv"]), ["labels.csv"])
    plan = tmp_path / "plan.parquet"
    ingested = tmp_path / "out"
    plan_one_group(ingested, plan, images_per_shard=10)
    out = tmp_path / "shards"
    info = shard_one_group(plan, root, out / "a", size=16, max_bad_images=1)
    assert info["images"] == 1 and info["bad_images"][0]["image_index"] == "notes.png"
    assert "not a PNG, JPEG or DICOM file" in info["bad_images"][0]["reason"]
    with pytest.raises(TooManyBadImages, match="notes.png: not a PNG, JPEG or DICOM file"):
        shard_one_group(plan, root, out / "b", size=16)
    assert not (out / "b.tfrecord").exists() and not list(out.glob("b.partial*"))


def test_a_study_two_labeller_tables_both_label_is_an_error(tmp_path):
    root, tables = mimic(tmp_path)
    (root / "again.csv").write_bytes(gzip.decompress((root / "mimic-cxr-2.0.0-chexpert.csv.gz").read_bytes()))
    files = ["mimic-cxr-2.0.0-chexpert.csv.gz", "again.csv"]
    with pytest.raises(CollectionError, match=r"mimic-cxr-2.0.0-chexpert.csv.gz: study 50414267 is labelled twice"):
        run_ingest(tmp_path, settings(format="mimic", root=str(root), files=files), files, **tables)
