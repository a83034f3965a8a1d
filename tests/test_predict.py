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
