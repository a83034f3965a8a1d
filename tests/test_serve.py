"""The batch predictor and the web app: same pixels as the shard stage, odd and bad files, a real browser."""

import csv
import os
import shutil
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, write_easy_shards
from cxr14 import models
from cxr14.constants import FINDINGS
from cxr14.data import Shards, dataset
from cxr14.images import BadImage
from cxr14.inference import Predictor, read_gray
from cxr14.predict import expand, predict_files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An untrained small model (the app and predictor do not care how good it is) and shards."""
    root = tmp_path_factory.mktemp("serve")
    manifests = write_easy_shards(root, (("test", 12),), size=48, per_shard=12)
    model = models.build("small_cnn", 48, "none", dropout=0.2)
    model.save(root / "model.keras")
    thresholds = {"max_f1": {f: 0.5 for f in FINDINGS}, "youden": {f: 0.5 for f in FINDINGS}, "chosen_on": "val"}
    (root / "thresholds.json").write_text(__import__("json").dumps(thresholds))
    return root, manifests


def _dicom(path, pixels, monochrome1=False, window=None):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", pixels.shape[0], pixels.shape[1]
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_app_predict_and_shards_see_the_same_pixels_and_numbers(served):
    root, manifests = served
    predictor = Predictor(root / "model.keras")
    table = pd.read_parquet(root / "table.parquet")
    x, _, meta = next(iter(dataset(Shards.from_manifest(manifests["test"]), 12, with_metadata=True)))
    for k, name in enumerate(m.decode() for m in meta["image_index"].numpy()):
        path = root / "images/images_01" / name
        prepared = predictor.prepare(read_gray(path.read_bytes()))
        np.testing.assert_array_equal(prepared, x[k].numpy())
    # The batch predictor's numbers are the model's numbers on the shard pixels.
    files = [root / "images/images_01" / n for n in table.image_index]
    predict_files(predictor, files, root / "pred.csv", batch_size=16, progress=False)
    out = pd.read_csv(root / "pred.csv").set_index("image")
    ref = predictor.predict(x.numpy())
    for k, name in enumerate(m.decode() for m in meta["image_index"].numpy()):
        np.testing.assert_allclose(out.loc[name, [f"p_{f}" for f in FINDINGS]].to_numpy(float), ref[k], atol=1e-5)


def test_dicom_windowing_and_monochrome1(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (64, 1))
    mono2 = read_gray(_dicom(tmp_path / "a.dcm", ramp).read_bytes())
    mono1 = read_gray(_dicom(tmp_path / "b.dcm", ramp, monochrome1=True).read_bytes())
    assert mono2.dtype == np.uint8 and mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert np.abs(mono1.astype(int) - (255 - mono2.astype(int))).max() <= 1  # inverted: high values dark
    windowed = read_gray(_dicom(tmp_path / "c.dcm", ramp, window=(1000, 500)).read_bytes())
    # Outside the window [750, 1250] everything saturates.
    assert windowed[0, 0] == 0 and windowed[0, -1] == 255 and (windowed == 255).mean() > 0.6


def test_bad_files_are_refused_clearly(tmp_path):
    with pytest.raises(BadImage, match="empty file"):
        read_gray(b"")
    with pytest.raises(BadImage, match="not a decodable image"):
        read_gray(b"%PDF-1.4 not an x-ray")
    with pytest.raises(BadImage, match=r"over the 0.001 MB limit"):
        read_gray(b"x" * 5000, max_mb=0.001)


def test_predict_cli_skips_bad_files_and_writes_gradcam(served, tmp_path):
    root, _ = served
    good = sorted((root / "images/images_01").glob("*.png"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "empty.jpg").write_bytes(b"")
    rgba = cv2.cvtColor(cv2.imread(str(good[0]), cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGRA)
    cv2.imwrite(str(folder / "rgba.png"), rgba)
    _dicom(folder / "scan.dcm", np.tile(np.linspace(0, 4000, 48), (48, 1)))
    out = tmp_path / "pred.csv"
    proc = subprocess.run([sys.executable, "-m", "cxr14.cli", "predict", str(folder), "--model", str(root / "model.keras"),
                           "--thresholds", str(root / "thresholds.json"), "--out", str(out),
                           "--gradcam-dir", str(tmp_path / "cams")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["image"] for r in rows) == sorted([p.name for p in good] + ["rgba.png", "scan.dcm"])
    assert "skipped" in proc.stderr and "broken.png" in proc.stderr and "empty.jpg: empty file" in proc.stderr
    assert "not medical advice" in proc.stderr and "uncalibrated scores (no calibration.json)" in proc.stderr
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


def test_app_refuses_bad_uploads_and_keeps_serving(served, tmp_path):
    from cxr14.app import Analysis

    root, _ = served
    analysis = Analysis({"m": (root / "model.keras", root / "thresholds.json")}, max_mb=1)
    (tmp_path / "notes.txt").write_text("hello")
    status, label, *_ = analysis.analyse(str(tmp_path / "notes.txt"), "m")
    assert "Could not read notes.txt" in status and label is None
    good = sorted((root / "images/images_01").glob("*.png"))[0]
    status, label, table, heat, top, state = analysis.analyse(str(good), "m")
    assert status.startswith("Answered by run **m**") and set(label) == set(FINDINGS)
    assert heat.shape == (448, 448, 3) and top in FINDINGS
    assert "operating points chosen on the validation split" in table
    assert "uncalibrated scores, not probabilities" in table  # this model has no calibration.json
    assert analysis.explain("Hernia", state, "m").shape == (448, 448, 3)


@pytest.fixture(scope="module")
def workdir_with_runs(served, tmp_path_factory):
    """A workflow directory with two trained runs of different input sizes, as the workflow lays them out."""
    from cxr14.runs import MODEL, THRESHOLDS

    root, _ = served
    wd = tmp_path_factory.mktemp("runs")
    for run, size in (("a48", 48), ("b32", 32)):
        model = wd / MODEL.format(run=run)
        model.parent.mkdir(parents=True)
        models.build("small_cnn", size, "none", dropout=0.0).save(model)
        (wd / THRESHOLDS.format(run=run)).parent.mkdir(parents=True)
        shutil.copy(root / "thresholds.json", wd / THRESHOLDS.format(run=run))
    return wd


def test_app_answers_with_the_chosen_run(served, workdir_with_runs, monkeypatch):
    from cxr14.app import Analysis
    from cxr14.runs import served as served_runs

    monkeypatch.chdir(workdir_with_runs)
    runs, first = served_runs(None, None, None)
    assert list(runs) == ["a48", "b32"] and first == "a48"
    analysis = Analysis(runs, max_mb=8)
    good = sorted((served[0] / "images/images_01").glob("*.png"))[0]
    for run in runs:
        status, label, *_, state = analysis.analyse(str(good), run)
        assert status.startswith(f"Answered by run **{run}**") and set(label) == set(FINDINGS)
    assert analysis.predictor("b32").size == 32 and analysis.explain("Mass", state, "b32").shape == (448, 448, 3)
    with pytest.raises(SystemExit, match=r"run 'zz' has no trained model.*trained runs: a48, b32"):
        served_runs("zz", None, None)


def test_predict_cli_takes_a_run_by_name(served, workdir_with_runs, tmp_path):
    good = sorted((served[0] / "images/images_01").glob("*.png"))[0]
    proc = subprocess.run([sys.executable, "-m", "cxr14.cli", "predict", str(good), "--run", "b32",
                           "--out", str(tmp_path / "p.csv")], capture_output=True, text=True, cwd=workdir_with_runs)
    assert proc.returncode == 0 and "predicting with run b32" in proc.stderr, proc.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_in_a_real_browser(served, workdir_with_runs, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./run.sh test installs it where it can)")
    from playwright.sync_api import sync_playwright

    root, _ = served
    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "cxr14.cli", "app", "--port", str(port)], cwd=workdir_with_runs,
                           env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert app.poll() is None, app.stdout.read()
            time.sleep(0.5)
        good = sorted((root / "images/images_01").glob("*.png"))[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.get_by_text("not medical advice").first.wait_for(timeout=60_000)
            page.locator("#upload input[type=file]").set_input_files(str(good))
            page.locator("#findings-table table").wait_for(timeout=60_000)
            page.locator("#heatmap img").wait_for(timeout=60_000)
            text = page.locator("#findings").inner_text()
            assert sum(f.replace("_", " ") in text or f in text for f in FINDINGS) >= 5
            page.get_by_text("Answered by run a48").wait_for(timeout=60_000)
            # Another run from the dropdown answers the same upload.
            page.locator("#run-choice input").click()
            page.get_by_role("option", name="b32").click()
            page.get_by_text("Answered by run b32").wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            # A bad upload (in a fresh page) gets a message and the app keeps serving.
            (tmp_path / "bad.png").write_bytes(b"not an image")
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "bad.png"))
            page.get_by_text("Could not read bad.png").wait_for(timeout=60_000)
            browser.close()
        assert app.poll() is None
    finally:
        app.terminate()
        app.wait(timeout=30)
