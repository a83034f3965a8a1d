"""The batch predictor (cxr14/predict.py, `cxr14 predict`): files, folders and globs, bad files
skipped and named, Grad-CAM overlays, a run by name."""

import csv
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd

from conftest import REPO, png_bomb
from cxr14.constants import FINDINGS
from cxr14.images import write_dicom
from cxr14.predict import expand


def test_predict_cli_skips_bad_files_and_writes_gradcam(served, tmp_path):
    root, _ = served
    good = sorted((root / "images/images_01").glob("*.png"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_bomb(30000, 30000))
    rgba = cv2.cvtColor(cv2.imread(str(good[0]), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGRA)
    cv2.imwrite(str(folder / "rgba.png"), rgba)
    write_dicom(folder / "scan.dcm", np.tile(np.linspace(0, 4000, 48), (48, 1)))
    out = tmp_path / "pred.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxr14.cli",
            "predict",
            str(folder),
            "--model",
            str(root / "model.keras"),
            "--thresholds",
            str(root / "thresholds.json"),
            "--out",
            str(out),
            "--gradcam-dir",
            str(tmp_path / "cams"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["image"] for r in rows) == sorted([p.name for p in good] + ["rgba.png", "scan.dcm"])
    assert "skipped" in proc.stderr and "broken.png" in proc.stderr and "empty.jpg: empty file" in proc.stderr
    assert (
        "bomb.png: PNG header says 30000 x 30000 pixels (900 megapixels decoded), over the limit of 40" in proc.stderr
    )
    assert "not medical advice" in proc.stderr and "uncalibrated (no calibration)" in proc.stderr
    assert len(list((tmp_path / "cams").glob("*_gradcam.png"))) == 5
    for r in rows:
        probs = {f: float(r[f"p_{f}"]) for f in FINDINGS}
        assert r["findings"] == "|".join(f for f in FINDINGS if probs[f] >= 0.5)
        assert all(r[f"raw_{f}"] == r[f"p_{f}"] and r[f"base_rate_{f}"] == "" for f in FINDINGS)  # no calibration
    # The RGBA copy of an image gives the same numbers as the grayscale original.
    by_name = {r["image"]: r for r in rows}
    assert by_name["rgba.png"]["p_Mass"] == by_name[good[0].name]["p_Mass"]


def test_expand_files_folders_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.png", "a/2.dcm", "a/notes.txt", "3.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found = expand([str(tmp_path / "a"), str(tmp_path / "*.jpg"), str(tmp_path / "a/1.png")])
    assert [p.name for p in found] == ["1.png", "2.dcm", "3.jpg"]


def test_predict_cli_takes_a_run_by_name(served, workdir_with_runs, tmp_path):
    good = sorted((served[0] / "images/images_01").glob("*.png"))[0]
    proc = subprocess.run(
        [sys.executable, "-m", "cxr14.cli", "predict", str(good), "--run", "b32", "--out", str(tmp_path / "p.csv")],
        capture_output=True,
        text=True,
        cwd=workdir_with_runs,
    )
    assert proc.returncode == 0 and "predicting with run b32" in proc.stderr, proc.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    # A run that is not there: the command says which runs are, and writes nothing.
    proc = subprocess.run(
        [sys.executable, "-m", "cxr14.cli", "predict", str(good), "--run", "zz", "--out", str(tmp_path / "q.csv")],
        capture_output=True,
        text=True,
        cwd=workdir_with_runs,
    )
    assert proc.returncode == 2 and not (tmp_path / "q.csv").exists()
    assert "cxr14 predict: run 'zz' has no trained model" in proc.stderr and "trained runs: a48, b32" in proc.stderr


def test_a_site_makes_no_decision_on_a_finding_it_does_not_label_and_flags_few_positives(served, tmp_path):
    """A site whose val split never labels Hernia (-1 throughout) and has 2 Fibrosis positives: its
    calibrate step gives Hernia no map and no operating point, so `cxr14 predict --site` neither calls
    it nor shows a probability, and says why; Fibrosis's max-F1 point, chosen on 2 val positives, is
    flagged in every row."""
    import json

    from cxr14 import prediction_table
    from cxr14.inference import Predictor
    from cxr14.predict import predict_files
    from cxr14.steps import calibrate

    rng = np.random.default_rng(3)
    truth = rng.normal(-1.0, 1.5, (300, len(FINDINGS)))
    labels = (rng.random(truth.shape) < 1 / (1 + np.exp(-truth))).astype(np.int8)
    labels[:, FINDINGS.index("Hernia")] = -1
    fibrosis = FINDINGS.index("Fibrosis")
    labels[:, fibrosis] = 0
    labels[:2, fibrosis] = 1
    val = pd.DataFrame({"split": "val", "image_index": [f"v{k:04d}.png" for k in range(300)]})
    val.join(prediction_table.frame({}, labels, truth)).to_parquet(tmp_path / "site.parquet", index=False)
    pd.DataFrame({"split": "train", **{f: [0, 1] for f in FINDINGS}}).to_parquet(tmp_path / "images.parquet")
    calibrate.calibrate(
        predictions=tmp_path / "site.parquet", table=tmp_path / "images.parquet", summary=None,
        calibration=tmp_path / "calibration.json", thresholds=tmp_path / "thresholds.json", site="site",
        method="temperature", min_positives=10, tta=False, targets={"sensitivity": 0.9, "specificity": 0.9},
    )  # fmt: skip
    points = json.loads((tmp_path / "thresholds.json").read_text())
    assert points["max_f1"]["Hernia"] is None and "no val image is labelled" in points["reasons"]["max_f1"]["Hernia"]
    assert points["few_positives"] == ["Fibrosis"] and points["val_positives"]["Fibrosis"] == 2

    root, _ = served
    predictor = Predictor(root / "model.keras", {"site": (tmp_path / "calibration.json", tmp_path / "thresholds.json")})
    images = sorted((root / "images/images_01").glob("*.png"))[:3]
    done, errors = predict_files(predictor, images, tmp_path / "p.csv", batch_size=2, progress=False, site="site")
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert done == 3 and not errors and len(rows) == 3
    for r in rows:
        assert r["p_Hernia"] == "" and "Hernia" not in r["findings"].split("|")
        assert r["undecided"] == "Hernia"
        assert "Hernia: not labelled at site site" in r["caveats"]
        assert "Fibrosis: shared map (2 val positives), operating point chosen on 2 val positives" in r["caveats"]
        assert float(r["p_Mass"]) >= 0  # every other finding has its probability
