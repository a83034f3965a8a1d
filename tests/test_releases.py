"""The releases' tables as published (tests/releases.py), ingested, and every count of the report
re-derived here from the raw CSV rows by the datasets' own conventions, written out plainly with the
csv module, not with the readers' code: images kept, dropped by reason, who labelled, and per finding
the images labelled and positive."""

import ast
import csv
import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import releases
from test_ingest import run_ingest, settings

from cxr14.constants import FINDINGS

FRONTAL = {"PA": "PA", "AP": "AP"}


def rows_of(path: Path):
    """The table's rows as dicts of strings, as any reader of the published CSV sees them."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        yield from csv.DictReader(fh)


def counts(kept: list[dict]) -> dict:
    """Per finding {labelled, positives} over the kept images' {finding: 1/0/None} labels."""
    return {
        f: {"labelled": sum(k[f] is not None for k in kept), "positives": sum(k[f] == 1 for k in kept)}
        for f in FINDINGS
    }


def reported(report: dict) -> dict:
    return {f: {k: report["findings"][f][k] for k in ("labelled", "positives")} for f in FINDINGS}


# CheXpert's 7 mapped observations (the docs' table): source -> NIH finding.
CHEXPERT = {
    **{o: o for o in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pneumonia", "Pneumothorax")},
    "Pleural Effusion": "Effusion",
}


def chexpert_labels(row: dict, unmentioned: str) -> dict:
    """Irvin et al.'s codes: 1.0 positive, 0.0 negative, -1.0 uncertain (not labelled, U-Ignore), blank
    unmentioned (negative, or not labelled unless the report says No Finding)."""
    out = dict.fromkeys(FINDINGS)
    for source, finding in CHEXPERT.items():
        value = row[source]
        if value in ("1.0", "1"):
            out[finding] = 1
        elif value in ("0.0", "0"):
            out[finding] = 0
        elif value == "" and (unmentioned == "negative" or row.get("No Finding") in ("1.0", "1")):
            out[finding] = 0
    return out


@pytest.mark.parametrize("unmentioned", ["negative", "ignore"])
def test_chexpert_train_csv_counts(tmp_path, unmentioned):
    root = tmp_path / "CheXpert-v1.0-small"
    table = releases.write_table(releases.chexpert_train(4000, np.random.default_rng(1)), root / "train.csv")
    releases.touch(root, [p.split("/", 1)[1] for p in releases.chexpert_train(4000, np.random.default_rng(1)).Path])
    _, report = run_ingest(tmp_path, settings(format="chexpert", root=str(root), files=["train.csv"],
                                              unmentioned=unmentioned), ["train.csv"])  # fmt: skip
    kept, views = [], Counter()
    for row in rows_of(table):
        if row["Frontal/Lateral"] == "Frontal" and row["AP/PA"] in FRONTAL:
            kept.append(chexpert_labels(row, unmentioned))
            views[row["AP/PA"]] += 1
    assert report["images"] == len(kept) and report["views"] == dict(views)
    assert report["dropped"]["view not in views"] == 4000 - len(kept)
    assert report["labels_by"] == {"labeller": len(kept)}
    assert reported(report) == counts(kept)


def test_mimic_counts_with_the_radiologist_test_set(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "mimic-cxr-jpg" / "2.1.0"
    tables = releases.mimic_tables(1500, rng)
    paths = {name: releases.write_table(tables[key], root / name) for key, name in (
        ("metadata", "mimic-cxr-2.0.0-metadata.csv.gz"), ("labels", "mimic-cxr-2.0.0-chexpert.csv.gz"),
        ("split", "mimic-cxr-2.0.0-split.csv.gz"))}  # fmt: skip
    test_studies = sorted(set(tables["split"].study_id[tables["split"].split == "test"]))[:40]
    radiologists = releases.write_table(releases.mimic_test_set_labeled(test_studies, rng),
                                        root / "mimic-cxr-2.1.0-test-set-labeled.csv")  # fmt: skip
    meta = tables["metadata"]
    releases.touch(root, [f"files/p{str(s)[:2]}/p{s}/s{t}/{d}.jpg" for s, t, d in
                          zip(meta.subject_id, meta.study_id, meta.dicom_id)])  # fmt: skip
    files = ["mimic-cxr-2.0.0-chexpert.csv.gz", radiologists.name]
    s = settings(format="mimic", root=str(root), files=files)
    _, report = run_ingest(tmp_path, s, files, metadata=str(paths["mimic-cxr-2.0.0-metadata.csv.gz"]),
                           split_file=str(paths["mimic-cxr-2.0.0-split.csv.gz"]))  # fmt: skip
    study = {r["study_id"]: ("labeller", chexpert_labels(r, "negative"))
             for r in rows_of(paths["mimic-cxr-2.0.0-chexpert.csv.gz"])}  # fmt: skip
    study |= {r["study_id"]: ("radiologists", chexpert_labels(r, "negative")) for r in rows_of(radiologists)}
    kept, who, views, dropped = [], Counter(), Counter(), 0
    for row in rows_of(paths["mimic-cxr-2.0.0-metadata.csv.gz"]):
        view = row["ViewPosition"]
        if view == "AP" and row["PatientOrientationCodeSequence_CodeMeaning"] == "Recumbent":
            view = "AP_SUPINE"
        if view not in ("PA", "AP", "AP_SUPINE"):
            dropped += 1
            continue
        by, labels = study.get(row["study_id"], ("not said", dict.fromkeys(FINDINGS)))
        kept.append(labels)
        who[by] += 1
        views[view] += 1
    assert report["images"] == len(kept) and report["views"] == dict(views)
    assert report["dropped"]["view not in views"] == dropped and report["labels_by"] == dict(who)
    assert who["radiologists"] > 0 and reported(report) == counts(kept)


def test_padchest_counts_as_unzipped_half_in_folders_half_flat(tmp_path):
    from cxr14.formats.padchest import BROKEN, KNOWN_FAULTS, LABELS

    root = tmp_path / "padchest"
    frame = releases.padchest_table(3000, np.random.default_rng(3))
    table = releases.write_table(frame, root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
    nested = {str(d) for d in range(0, 55, 2)}  # the even zips unzipped into their folders, the odd ones flat
    absent = {i for i, reason in KNOWN_FAULTS.items() if reason != BROKEN}
    releases.touch(root, [f"{d}/{i}" if d in nested else i for d, i in zip(frame.ImageDir, frame.ImageID)
                          if i not in absent])  # fmt: skip
    _, report = run_ingest(tmp_path, settings(format="padchest", root=str(root)), [table.name])
    kept, dropped, who, layout = [], Counter(), Counter(), Counter()
    for row in rows_of(table):
        terms = [t.strip().lower() for t in ast.literal_eval(row["Labels"])] if row["Labels"].strip() else None
        if row["ImageID"] in KNOWN_FAULTS:
            dropped[KNOWN_FAULTS[row["ImageID"]]] += 1
        elif terms and "exclude" in terms:
            dropped["labelled 'exclude'"] += 1
        elif terms and "suboptimal study" in terms:
            dropped["labelled 'suboptimal study'"] += 1
        elif row["Projection"] not in ("PA", "AP", "AP_horizontal"):
            dropped["view not in views"] += 1
        else:
            findings = {f for t in terms or [] for f in np.atleast_1d(LABELS.get(t, []))}
            kept.append({f: None if terms is None else int(f in findings) for f in FINDINGS})
            who[{"Physician": "radiologists", "RNN_model": "labeller"}[row["MethodLabel"]]] += 1
            layout["<ImageDir>/<ImageID>" if row["ImageDir"] in nested else "<ImageID> (flat)"] += 1
    assert report["images"] == len(kept) and report["labels_by"] == dict(who) and report["layout"] == dict(layout)
    assert {k: v for k, v in report["dropped"].items() if v} == dict(dropped)
    for reason in set(KNOWN_FAULTS.values()):  # the release's own faults, each named
        named = {Path(p).name for p in report["dropped_images"][reason]}
        assert named == {i for i, r in KNOWN_FAULTS.items() if r == reason}
    assert reported(report) == counts(kept)


@pytest.mark.parametrize("readers", ["any", "majority", "all"])
def test_vinbigdata_counts(tmp_path, readers):
    root = tmp_path / "vinbigdata"
    boxes = releases.vinbigdata_train(400, np.random.default_rng(4))
    table = releases.write_table(boxes, root / "train.csv")
    releases.touch(root, [f"train/{i}.dicom" for i in boxes.image_id.unique()])
    _, report = run_ingest(tmp_path, settings(format="vindr", root=str(root), files=["train.csv"], readers=readers),
                           ["train.csv"])  # fmt: skip
    drawn = {}  # image -> reader -> the classes they boxed
    for row in rows_of(table):
        drawn.setdefault(row["image_id"], {}).setdefault(row["rad_id"], set()).add(row["class_name"])
    boxed = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation",
             "Infiltration": "Infiltration", "Pleural effusion": "Effusion", "Pleural thickening": "Pleural_Thickening",
             "Pneumothorax": "Pneumothorax", "Pulmonary fibrosis": "Fibrosis"}  # fmt: skip
    needed = {"any": lambda k, n: k >= 1, "majority": lambda k, n: k > n / 2, "all": lambda k, n: k == n}[readers]
    kept = []
    for image in sorted(drawn):
        said = drawn[image]
        labels = dict.fromkeys(FINDINGS)
        for source, finding in boxed.items():
            labels[finding] = int(needed(sum(source in classes for classes in said.values()), len(said)))
        kept.append(labels)
    assert report["images"] == len(kept) == 400 and reported(report) == counts(kept)
