"""The web app (cxr14/app.py, `cxr14 app`): bad uploads refused while it keeps serving, the chosen run
answers, and the page in a real browser."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, png_bomb
from cxr14.constants import FINDINGS


def test_app_refuses_bad_uploads_and_keeps_serving(served, tmp_path):
    from cxr14.app import Analysis

    root, _ = served
    analysis = Analysis({"m": (root / "model.keras", root / "thresholds.json")}, max_mb=1)
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
    assert "operating points chosen on the validation split" in table
    assert "uncalibrated scores, not probabilities" in table  # this model has no calibration.json
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
    app = subprocess.Popen(
        [sys.executable, "-m", "cxr14.cli", "app", "--port", str(port)],
        cwd=workdir_with_runs,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
