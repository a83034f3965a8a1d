"""Steps `demo_mirror` and `demo_site`: a phantom ChestX-ray14 mirror in the real NIH formats, and a
phantom site in CheXpert's published layout, for the offline demo and tests (images: `cxr14.phantom`).

Patients have follow-up images, and archive 1 holds an RGBA image and a truncated PNG so the demo
exercises the same paths as real data. Archives, tables and boxes are written exactly in the formats
of the NIH Box share, byte for byte reproducibly for a seed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..constants import FINDINGS
from ..files import atomic
from ..formats import chexpert
from ..images import write_dicom
from ..phantom import BOX_NAMES, PREVALENCE, draw_labels, render

log = logging.getLogger(__name__)

RGBA_IMAGE_SLOT = 1  # in archive 1: the 2nd image is stored as RGBA (valid, must decode)
TRUNCATED_IMAGE_SLOT = 2  # in archive 1: the 3rd image is a truncated PNG (bad, must be skipped)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _write_tar_gz(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A gzip'd tar with fixed times and owners, so the same members give the same bytes."""
    with (
        atomic(path) as staged,
        open(staged, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))


TEST_FRACTION = 0.25  # of the patients, like the official split


def demo_mirror(
    *,
    archives: list,
    data_entry,
    train_val_list,
    test_list,
    bbox_list,
    expert_labels,
    images_per_archive: list[int],
    size: int,
    seed: int,
) -> dict:
    """Step `demo_mirror`: the phantom mirror. `archives[k]` gets archive k+1 (Box format) with
    `images_per_archive[k]` images; the metadata files go to the paths named, in the NIH formats."""
    if len(archives) != len(images_per_archive):
        raise ValueError(f"{len(archives)} archive paths for {len(images_per_archive)} image counts")
    rng = np.random.default_rng(seed)
    rows, box_rows, test, train_val = [], [], [], []
    patient, follow_up, patient_info = 0, 0, None
    for index, (path, count) in enumerate(zip(archives, images_per_archive), start=1):
        members = []
        for slot in range(count):
            if patient_info is None or follow_up >= patient_info["visits"]:
                patient += 1
                follow_up = 0
                patient_info = {
                    "visits": int(rng.integers(1, 5)),
                    "sex": str(rng.choice(["M", "F"])),
                    "age": int(rng.integers(18, 90)),
                    "test": bool(rng.random() < TEST_FRACTION),
                }
            name = f"{patient:08d}_{follow_up:03d}.png"
            findings = draw_labels(rng)
            img, boxes = render(findings, rng, size)
            view = str(rng.choice(["PA", "AP"], p=[0.6, 0.4]))
            data = _png(img)
            if index == 1 and slot == RGBA_IMAGE_SLOT:
                data = _png(cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA))
            if index == 1 and slot == TRUNCATED_IMAGE_SLOT:
                data = data[: len(data) // 2]
            members.append((f"images/{name}", data))
            labels = "|".join(f for f in FINDINGS if f in findings) or "No Finding"
            rows.append(
                (
                    name,
                    labels,
                    follow_up,
                    patient,
                    patient_info["age"] + follow_up // 2,
                    patient_info["sex"],
                    view,
                    2500,
                    2048,
                    0.168,
                    0.168,
                )
            )
            (test if patient_info["test"] else train_val).append(name)
            scale = 1024.0 / size
            for finding, (x, y, w, h) in boxes.items():
                box_rows.append((name, BOX_NAMES[finding], x * scale, y * scale, w * scale, h * scale))
            follow_up += 1
        _write_tar_gz(Path(path), members)
    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
    entry = pd.DataFrame(rows)
    with _text(data_entry) as fh:
        fh.write(header + "\n")
        entry.to_csv(fh, header=False, index=False, lineterminator="\n")
    with _text(bbox_list) as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        pd.DataFrame(box_rows).to_csv(fh, header=False, index=False, lineterminator="\n", float_format="%.6f")
    for path, items in ((train_val_list, train_val), (test_list, test)):
        with _text(path) as fh:
            fh.write("\n".join(sorted(items)))  # no final newline, like the real lists
    _write_expert_labels(expert_labels, entry, set(test), header)
    result = {"images": len(rows), "patients": patient, "test": len(test), "boxes": len(box_rows)}
    log.info("phantom mirror: %s", result)
    return result


@contextlib.contextmanager
def _text(path):
    with atomic(path) as staged, open(staged, "w", newline="") as fh:
        yield fh


def _write_expert_labels(path, entry: pd.DataFrame, test: set, header: str) -> None:
    """A Google-2019-style expert label file for the test images: the planted truth, with 3% of the
    reads flipped the way radiologists and the NLP labels disagree."""
    rng = np.random.default_rng(2019)
    rows = entry[entry[0].isin(test)].copy()
    labels = rows[1].str.split("|")

    def read(present):
        flipped = present ^ (rng.random(len(present)) < 0.03)
        return np.where(flipped, "YES", "NO")

    rows["Fracture"] = "NO"
    rows["Pneumothorax"] = read(labels.map(lambda n: "Pneumothorax" in n).to_numpy())
    rows["Airspace opacity"] = read(labels.map(lambda n: bool({"Consolidation", "Pneumonia"} & set(n))).to_numpy())
    rows["Nodule or mass"] = read(labels.map(lambda n: bool({"Nodule", "Mass"} & set(n))).to_numpy())
    rows["Set Id"] = "test"
    with _text(path) as fh:
        fh.write(header + ",Fracture,Pneumothorax,Airspace opacity,Nodule or mass,Set Id\n")
        rows.to_csv(fh, header=False, index=False, lineterminator="\n")


# The phantom external site: another hospital's prevalences (a trauma and heart-failure centre: more
# pneumothorax, effusion and heart failure, less of the rest), its own scanner (portrait images, a
# flat, low-contrast processing: a black level of 110 and a range of 70 grey levels, and a heel-effect
# gradient; an NIH model misses the apical lucency of a pneumothorax there, which a fine-tune on the
# site's images learns) and its own report labeller, wrong about a finding in LABELLER_ERRORS of the cases.
SITE_PREVALENCE = {f: 0.5 * p for f, p in PREVALENCE.items()} | {
    "Effusion": 0.25,
    "Cardiomegaly": 0.2,
    "Edema": 0.12,
    "Atelectasis": 0.18,
    "Pneumothorax": 0.2,
}
CHEXPERT_HEADER = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly",
    "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
    "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices",
]  # fmt: skip
LABELLER_ERRORS = 0.02
SITE_FOLDER = "CheXpert-v1.0-small"  # the published folder name every Path starts with


def site_image(findings: set[str], rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A phantom radiograph as the site's scanner gives it: (height, width), brighter towards the
    bottom (the heel effect), a black level of 110 and a range of 70 grey levels."""
    img, _ = render(findings, rng, shape[1])
    img = cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    heel = np.linspace(0.85, 1.1, shape[0], dtype=np.float32)[:, None]
    return np.clip(110 + 70 * img * heel, 0, 255).astype(np.uint8)


def demo_site(*, labels, images, patients: int, height: int, width: int, seed: int) -> dict:
    """Step `demo_site`: a phantom external site laid out as CheXpert-v1.0-small: `labels` (train.csv,
    the published header and codes: 1.0, 0.0, -1.0 uncertain, blank unmentioned) and the `images`
    folder (train/patientNNNNN/studyN/viewN_frontal.jpg, a lateral for some studies). Every 12th
    frontal image is a DICOM instead of a JPEG (every 24th of those MONOCHROME1, stored inverted), its
    header naming its patient and a study date in the first half of 2024."""
    rng = np.random.default_rng([seed, 1])
    root = Path(images)
    staged = root.with_name(root.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    rows, frontal = [], 0
    for patient in range(1, patients + 1):
        sex, age = str(rng.choice(["Male", "Female"])), int(rng.integers(20, 90))
        for study in range(1, int(rng.integers(1, 3)) + 1):
            findings = draw_labels(rng, SITE_PREVALENCE)
            views = ["frontal"] + (["lateral"] if rng.random() < 0.3 else [])
            for number, view in enumerate(views, start=1):
                folder = staged / f"patient{patient:05d}" / f"study{study}"
                folder.mkdir(parents=True, exist_ok=True)
                img = site_image(findings, rng, (height, width))
                if view == "lateral":
                    img = np.ascontiguousarray(img[:, ::-1].T[:height, :width])  # not a frontal view
                name = f"view{number}_{view}.jpg"
                if view == "frontal":
                    frontal += 1
                    if frontal % 12 == 0:
                        name = f"view{number}_{view}.dcm"
                        inverted = frontal % 24 == 0
                        write_dicom(folder / name, 255 - img if inverted else img, monochrome1=inverted, bits_stored=8,
                                    PatientID=f"patient{patient:05d}",
                                    StudyDate=f"2024{1 + patient % 6:02d}{1 + study:02d}")  # fmt: skip
                if name.endswith(".jpg"):
                    cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
                rows.append(_chexpert_row(f"{SITE_FOLDER}/train/patient{patient:05d}/study{study}/{name}", sex, age,
                                          view, findings, rng))  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    staged.rename(root)
    with _text(labels) as fh:
        pd.DataFrame(rows, columns=CHEXPERT_HEADER).to_csv(fh, index=False, lineterminator="\n")
    result = {"images": len(rows), "patients": patients, "frontal": frontal}
    log.info("phantom site: %s", result)
    return result


def _chexpert_row(path: str, sex: str, age: int, view: str, findings: set[str], rng) -> list:
    """One CheXpert row: a mapped finding present is 1.0 (or -1.0, uncertain, 15% of the time);
    absent, 0.0 or (30%) blank, as the labeller leaves what a report does not mention; the labeller
    gets a finding wrong in LABELLER_ERRORS of the rows."""
    nih = {finding: source for source, finding in chexpert.LABELS.items()}
    values = {}
    for finding, source in nih.items():
        if (finding in findings) != (rng.random() < LABELLER_ERRORS):
            values[source] = "-1.0" if rng.random() < 0.15 else "1.0"
        else:
            values[source] = "" if rng.random() < 0.3 else "0.0"
    for other in ("Enlarged Cardiomediastinum", "Lung Opacity", "Lung Lesion", "Pleural Other", "Fracture",
                  "Support Devices"):  # fmt: skip
        values[other] = str(rng.choice(["", "0.0", "1.0"], p=[0.7, 0.2, 0.1]))
    said = any(values[source] in ("1.0", "-1.0") for source in nih.values()) or findings - set(nih)
    values["No Finding"] = "" if said else "1.0"
    frontal = view == "frontal"
    return [path, sex, age, "Frontal" if frontal else "Lateral", str(rng.choice(["AP", "PA"])) if frontal else "",
            *(values[c] for c in CHEXPERT_HEADER[5:])]  # fmt: skip
