"""The web app (cxr14/app.py, `cxr14 app`): bad uploads refused while it keeps serving, the chosen run
answers, and the page in a real browser."""

import shutil
import sys

import numpy as np
import pytest

from conftest import NIH_SAMPLE, REPO, png_bomb
from cxr14.constants import FINDINGS
from cxr14.images import read_gray


def test_app_refuses_bad_uploads_and_keeps_serving(served, tmp_path):
    from cxr14.app import Analysis

    root, _ = served
    analysis = Analysis({"m": (root / "model.keras", {"given": (None, root / "thresholds.json")})}, max_mb=1)
    (tmp_path / "notes.txt").write_text("hello")
    status, label, *_ = analysis.analyse(str(tmp_path / "notes.txt"), "m")
    assert "Could not read notes.txt" in status and label is None
    (tmp_path / "bomb.png").write_bytes(png_bomb(30000, 30000))  # 875 KB on the report; a few here
    status, label, *_ = analysis.analyse(str(tmp_path / "bomb.png"), "m")
    assert "Could not read bomb.png" in status and "30000 x 30000 pixels" in status and label is None
    good = sorted((root / "images/images_01").glob("*.png"))[0]
    status, label, table, heat, top, state = analysis.analyse(str(good), "m")
    assert status.startswith("Answered by run **m**") and set(label) == set(FINDINGS)
    assert heat.shape == (448, 448, 3) and top in FINDINGS
    assert "operating points chosen on given's validation split" in table
    assert "model's own probabilities, not calibrated" in table  # this model has no calibration.json
    assert analysis.explain("Hernia", state, "m").shape == (448, 448, 3)


def test_app_answers_with_the_chosen_run(served, workdir_with_runs, monkeypatch):
    from cxr14.app import Analysis
    from cxr14.inference import NoTrainedRun
    from cxr14.inference import served as served_runs

    monkeypatch.chdir(workdir_with_runs)
    runs, first = served_runs(None, None, None)
    assert list(runs) == ["a48", "b32"] and first == "a48"
    analysis = Analysis(runs, max_mb=8)
    good = sorted((served[0] / "images/images_01").glob("*.png"))[0]
    for run in runs:
        status, label, *_, state = analysis.analyse(str(good), run)
        assert status.startswith(f"Answered by run **{run}**") and set(label) == set(FINDINGS)
    assert analysis.predictor("b32").size == 32 and analysis.explain("Mass", state, "b32").shape == (448, 448, 3)
    with pytest.raises(NoTrainedRun, match=r"run 'zz' has no trained model.*trained runs: a48, b32"):
        served_runs("zz", None, None)


def test_the_app_answers_with_the_chosen_sites_calibration_and_says_which(served, workdir_with_runs, monkeypatch):
    """a48 has two sites: the page offers both (NIH first), each upload is answered with the chosen
    site's calibration and operating points, named in the table, and an unknown site names the known
    ones; b32 has no calibration and says so."""
    import json

    from cxr14.app import Analysis
    from cxr14.calibration import apply
    from cxr14.inference import served as served_runs
    from cxr14.paths import CALIBRATION

    monkeypatch.chdir(workdir_with_runs)
    runs, _ = served_runs(None, None, None)
    analysis = Analysis(runs, max_mb=8)
    assert analysis.sites() == ["nih", "site"] and list(runs["a48"][1]) == ["nih", "site"] and runs["b32"][1] == {}
    good = str(sorted((served[0] / "images/images_01").glob("*.png"))[0])
    predictor = analysis.predictor("a48")
    logits = predictor.scores(predictor.prepare(read_gray(open(good, "rb").read()))[None])
    for site in ("nih", "site"):
        _, label, table, *_ = analysis.analyse(good, "a48", site)
        want = apply(json.loads((workdir_with_runs / CALIBRATION.format(run="a48", dataset=site)).read_text()), logits)
        np.testing.assert_allclose([label[f] for f in FINDINGS], want[0], atol=1e-6)
        assert f"calibrated for site **{site}**" in table and f"chosen on {site}'s validation split" in table
    assert analysis.analyse(good, "a48", None)[1] == analysis.analyse(good, "a48", "nih")[1]  # NIH by default
    status, label, *_ = analysis.analyse(good, "a48", "elsewhere")
    assert "cannot answer for that site" in status and "this model's sites: nih, site" in status and label is None
    status, label, table, *_ = analysis.analyse(good, "b32", "site")  # no calibration at all: said plainly
    assert status.startswith("Answered by run **b32**") and "model's own probabilities, not calibrated" in table


def test_app_in_a_real_browser(served, workdir_with_runs, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./run.sh test installs it where it can)")
    from playwright.sync_api import sync_playwright

    import loadtest

    root, _ = served
    port = loadtest.free_port()
    command = [sys.executable, "-m", "cxr14.cli", "app", "--port", str(port)]
    with loadtest.running_app(command, port, cwd=workdir_with_runs, env={"PYTHONPATH": str(REPO)}) as app:
        good = sorted((root / "images/images_01").glob("*.png"))[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
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
            # Back to a48, then its other site: the table names the site whose calibration answered.
            page.locator("#run-choice input").click()
            page.get_by_role("option", name="a48").click()
            page.get_by_text("calibrated for site nih").wait_for(timeout=60_000)
            page.locator("#site-choice input").click()
            page.get_by_role("option", name="site", exact=True).click()
            page.get_by_text("calibrated for site site").wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            # A bad upload (in a fresh page) gets a message and the app keeps serving.
            (tmp_path / "bad.png").write_bytes(b"not an image")
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "bad.png"))
            page.get_by_text("Could not read bad.png").wait_for(timeout=60_000)
            browser.close()
        assert app.poll() is None


def test_the_app_under_load_answers_every_good_upload_and_refuses_every_bad_one(served, tmp_path):
    """Concurrent clients upload real-sized radiographs (1024 and 3,000 px PNGs, a 16-bit DICOM) the way
    the page does while others send bombs, junk, an empty file and a file past --max-mb: every good
    upload is answered, every bad one refused with its reason, and the app still serves afterwards.
    Timings and memory are the benchmark's (bench/bench_app.py), not asserted here."""
    import loadtest

    root, _ = served
    sample = NIH_SAMPLE / "00000001_000.png"
    files = loadtest.upload_files(tmp_path / "uploads", 16, sample if sample.exists() else None)
    port = loadtest.free_port()
    command = [sys.executable, "-m", "cxr14.cli", "app", "--model", str(root / "model.keras"), "--port", str(port),
               "--max-mb", "16", "--concurrency", "2"]  # fmt: skip
    plan = loadtest.mixed_plan(files, clients=3, rounds=1, hostile_clients=2)
    with loadtest.running_app(command, port, env={"PYTHONPATH": str(REPO)}) as app:
        outcomes = loadtest.drive(f"http://127.0.0.1:{port}/", plan, "model", deadline_s=240)
        assert loadtest.answers(f"http://127.0.0.1:{port}/") and app.poll() is None
    assert len(outcomes) == sum(map(len, plan))
    reasons = {
        "png_bomb": "30000 x 30000 pixels", "jpeg_bomb": "60000 x 60000 pixels", "junk": "not a PNG, JPEG or DICOM",
        "empty": "empty file", "text_as_dicom": "not a PNG, JPEG or DICOM", "too_large": "HTTP 413",
    }  # fmt: skip
    for o in outcomes:
        if o.kind in loadtest.GOOD:
            assert o.answered and o.message.startswith("Answered by run **model**"), o
        else:
            assert not o.answered and reasons[o.kind] in o.message, o
    with pytest.raises(ValueError, match="only drives an app on this machine"):
        loadtest.check_loopback("http://192.0.2.1:7860/")
