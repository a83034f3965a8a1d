"""Every command the README and docs/ print, run the way a user types it in a shell: Snakemake commands as
dry runs (`-n` added), `cxr14` commands for real, in a folder holding the runs and files they name."""

import json
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from conftest import REPO

COMMAND = re.compile(r"^(\./run\.sh|\.venv/bin/snakemake|\.venv/bin/cxr14)\b")


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands() -> list[str]:
    """The commands in the README and the docs' pages, in order, each once."""
    text = "\n".join(page.read_text() for page in PAGES)
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if COMMAND.match(line):
                found.append(line)
    found += [c for c in re.findall(r"`([^`\n]+)`", text) if COMMAND.match(c)]
    return list(dict.fromkeys(found))


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_expects():
    assert "./run.sh demo" in COMMANDS and "./run.sh test" in COMMANDS
    assert ".venv/bin/snakemake --config archives=[1]" in COMMANDS


@pytest.mark.parametrize("command", [c for c in COMMANDS if "snakemake" in c or c.startswith("./run.sh demo")])
def test_snakemake_commands_plan_without_error(command):
    proc = subprocess.run(f"{command} -n", shell=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    expected = ["Unlocked working directory"] if "--unlock" in command else ["Job stats", "Nothing to be done"]
    assert any(word in said for word in expected), said[-3000:]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A workflow folder as the README's `cxr14` commands expect it: a trained run `default` with its
    operating points and calibration, the same three files `elsewhere/`, a few PNGs in `scans/`, a
    DICOM in `more/`, and verified shards under results/datasets/nih/shards (the repo's .venv linked in)."""
    import shutil

    import cv2

    from conftest import fixed_points, write_easy_shards
    from cxr14 import models
    from cxr14.constants import FINDINGS
    from cxr14.files import sha256_file
    from cxr14.images import write_dicom
    from cxr14.paths import CALIBRATION, MODEL, OPERATING_POINTS

    wd = tmp_path_factory.mktemp("user")
    (wd / ".venv").symlink_to(REPO / ".venv")
    write_easy_shards(wd / "made", (("val", 8),), size=32, per_shard=8)
    shutil.copytree(wd / "made/shards", wd / "results/datasets/nih/shards/32px-raw")
    model = wd / MODEL.format(run="default")
    model.parent.mkdir(parents=True)
    models.build("small_cnn", 32, "none", dropout=0.0).save(model)
    thresholds = fixed_points(0.5)
    calibration = {
        "site": "nih",
        "method": "temperature",
        "fitted_on": "nih val",
        "tta": False,
        "model_sha256": sha256_file(model),
        "base_rate": dict.fromkeys(FINDINGS, 0.05),
        "shared": [],
        "shared_temperature": 1.0,
        "findings": {f: {"method": "temperature", "offset": 0.0, "temperature": 2.0} for f in FINDINGS},
    }
    # Two sites: NIH's and a hospital's own ("site", as the demo's), each a calibration and operating points.
    other = {"method": "temperature", "offset": 1.0, "temperature": 1.5}
    site_calibration = {
        **calibration,
        "site": "site",
        "fitted_on": "site val",
        "findings": dict.fromkeys(FINDINGS, other),
    }
    sites = {"nih": (calibration, thresholds), "site": (site_calibration, fixed_points(0.4, "site"))}
    for site, (fitted, points) in sites.items():
        for pattern, content in ((CALIBRATION, fitted), (OPERATING_POINTS, points)):
            path = wd / pattern.format(run="default", dataset=site)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
    (wd / "elsewhere").mkdir()
    for source, name in (
        (model, "model.keras"),
        (wd / OPERATING_POINTS.format(run="default", dataset="nih"), "thresholds.json"),
        (wd / CALIBRATION.format(run="default", dataset="nih"), "calibration.json"),
    ):
        shutil.copy(source, wd / "elsewhere" / name)
    _export_onnx(wd, model, sites)
    (wd / "scans").mkdir()
    for k, png in enumerate(sorted((wd / "made/images/images_01").glob("*.png"))[:3]):
        shutil.copy(png, wd / "scans" / f"scan{k}.png")
    (wd / "more").mkdir()
    write_dicom(wd / "more/chest.dcm", cv2.imread(str(wd / "scans/scan0.png"), cv2.IMREAD_GRAYSCALE), bits_stored=8)
    return wd


def _export_onnx(wd, model, sites: dict) -> None:
    """The export step's ONNX model and serving.json for run `default` (what `predict` reads of it)."""
    from cxr14 import conversion, models
    from cxr14.files import sha256_file, write_json
    from cxr14.paths import EXPORT
    from cxr14.steps import export

    folder = wd / EXPORT.format(run="default")
    folder.mkdir(parents=True)
    net = models.load(model)
    conversion.write_onnx(conversion.serving_model(net, tta=False), 32, folder / "model.onnx")
    files = {"onnx": {"path": "model.onnx", "sha256": sha256_file(folder / "model.onnx")}}
    served = {name: {"calibration": fitted, "operating_points": points["max_f1"], "operating_points_by_rule": points}
              for name, (fitted, points) in sites.items()}  # fmt: skip
    info = export.serving_info(run="default", model=model, info=models.info(net), tta=False, sites=served, files=files,
                               trained={})  # fmt: skip
    write_json(info, folder / "serving.json")


def _serves(command, cwd) -> str:
    """Start an app command, wait until it answers on its port, stop it; what it printed."""
    import urllib.request

    port = int(re.search(r"--port (\d+)", command)[1]) if "--port" in command else 7860
    proc = subprocess.Popen(
        command,
        shell=True,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    assert page.status == 200
                    return page.read().decode()
            except OSError:
                assert time.time() < deadline, "the app did not answer within 3 minutes"
                time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/cxr14")])
def test_cxr14_commands_run_as_typed(command, user_folder):
    words = shlex.split(command)
    if words[1] == "app" and "--help" not in words:
        assert "cxr14" in _serves(command, user_folder)
        return
    proc = subprocess.run(command, shell=True, cwd=user_folder, capture_output=True, text=True, timeout=300)
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, said[-3000:]
    if "--help" in words:
        assert "not medical advice" in said
    elif words[1] == "predict":
        out = user_folder / (words[words.index("--out") + 1] if "--out" in words else "predictions.csv")
        rows = out.read_text().splitlines()
        expected = 4 if "more/*.dcm" in command else 3  # three PNGs, and the DICOM where it is named
        site = words[words.index("--site") + 1] if "--site" in words else "nih"
        assert len(rows) == 1 + expected and f"probabilities calibrated for site {site}" in said, said
        assert all(row.split(",")[2] == site for row in rows[1:])  # the CSV names the site on each row
        if "--gradcam-dir" in words:
            assert len(list((user_folder / words[words.index("--gradcam-dir") + 1]).glob("*.png"))) == expected
    elif words[1] == "verify":
        assert "ok " in said and "32px-raw" in said


def test_every_link_between_the_pages_leads_somewhere():
    """Relative links in the README and docs/ name a file that exists, and a heading in it when they
    name one (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens)."""
    broken = []
    for page in PAGES:
        prose = re.sub(r"`[^`\n]*`", "", page.read_text())  # code is not a link
        for target in re.findall(r"\]\(([^)\s]+)\)", prose):
            if re.match(r"[a-z]+://", target):
                continue
            name, _, anchor = target.partition("#")
            linked = (page.parent / name).resolve() if name else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
                anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target}")
    assert not broken, broken


def test_the_readme_stays_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
