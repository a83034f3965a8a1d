import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from cxr14 import explain, gradcam, models
from cxr14.calibration import calibrated
from cxr14.constants import FINDINGS


def test_calibration_and_tta_in_the_evaluation(evaluated):
    """Only Atelectasis has val positives: it gets a map of its own, the rest the shared temperature
    (named); AUROC does not move; TTA is compared with the plain scores on the same images."""
    root, m, _ = evaluated
    cal = json.loads((root / "eval/calibration.json").read_text())
    assert cal["findings"]["Atelectasis"]["method"] == "temperature" and cal["fitted_on"] == "nih val"
    assert cal["shared"] == list(FINDINGS[1:]) and "val positives" in cal["findings"]["Mass"]["reason"]
    assert cal["findings"]["Mass"]["method"] == "shared_temperature" and "uncalibrated" not in cal
    assert cal["base_rate"]["Atelectasis"] == pytest.approx(0.5, abs=0.1) and cal["tta"] is True
    c = m["calibration"]
    assert c["method"] == "temperature" and c["auroc_max_change"] < 1e-6 and c["fitted_on"] == "nih val"
    for kind in ("before", "after"):
        for key in ("ece", "ece_adaptive", "brier"):
            low, high = c[kind][key]["ci"]
            assert low <= c[kind][key]["mean"] <= high
    per = {f: m["findings"][f]["calibration"] for f in FINDINGS}
    assert per["Atelectasis"]["ece"] != per["Atelectasis"]["before"]["ece"]
    assert per["Mass"]["method"] == "shared_temperature" and c["shared"] == list(FINDINGS[1:])
    assert m["tta"]["views"] == 5 and m["tta"]["auroc_without"]["Atelectasis"] > 0.8
    assert m["tta"]["diff"]["ci"][0] <= m["tta"]["diff"]["diff"] <= m["tta"]["diff"]["ci"][1]
    html = (root / "eval/report.html").read_text()
    assert (
        'id="calibration-summary"' in html
        and "Test-time augmentation" in html
        and "temperature shared across findings" in html
    )


def test_evaluation_outputs(evaluated):
    root, _, _ = evaluated
    m = json.loads((root / "eval/metrics.json").read_text())
    assert list(m["findings"]) == list(FINDINGS) == m["labelled_findings"] and m["labelled"] is True
    assert m["mean_auroc"] > 0.9 and m["images"] == 96 and m["dataset"] == "nih" and m["members"] is None
    for f in FINDINGS:
        low, high = m["findings"][f]["auroc_ci"]  # None: positives on under 10 patients (not estimable)
        if m["findings"][f]["auroc"] is not None and low is not None:
            assert low <= m["findings"][f]["auroc"] <= high
    assert set(m["findings"]["Mass"]["operating_points"]) == {"max_f1", "youden", "sensitivity", "specificity"}
    chosen = json.loads((root / "eval/thresholds.json").read_text())
    points = m["findings"]["Atelectasis"]["operating_points"]
    for rule in ("max_f1", "youden", "sensitivity", "specificity"):  # the calibrate step's, applied on test
        assert points[rule]["threshold"] == chosen[rule]["Atelectasis"]
        low, high = points[rule]["sensitivity_ci"]
        assert low <= points[rule]["sensitivity"] <= high
    assert "nih" not in m and "drop" not in m and "recalibration" not in m and "Wang" in next(iter(m["published"]))
    assert set(m["subgroups"]) == {"sex", "age", "view"}
    pred = pd.read_parquet(root / "eval/predictions.parquet")
    assert set(pred.split) == {"val", "test"} and len(pred) == 192
    assert chosen["chosen_on"] == "nih val" and chosen["targets"] == {"sensitivity": 0.9, "specificity": 0.9}


def test_localisation_scores_the_boxes(evaluated):
    from cxr14.data import Shards

    root, _, n_boxes = evaluated
    explained = json.loads((root / "eval/explanation.json").read_text())
    loc = explained["localisation"]
    assert explained["model"]["backbone"] == "small_cnn" and explained["run"] == "spots"
    assert list(loc) == ["Atelectasis", "Infiltration"]  # "Infiltrate" in the box list is mapped
    assert loc["Atelectasis"]["boxes"] == loc["Infiltration"]["boxes"] == n_boxes > 20
    # The same figures, recomputed by hand from Grad-CAM and the boxes scaled from 1024 px to 128.
    boxes = explain.read_boxes(root / "boxes.csv")
    boxes = boxes[boxes.finding == "Atelectasis"]
    images = explain.collect_images(
        Shards.from_manifest(root / "shards/test/manifest.json"), set(boxes.image_index), 64
    )
    model = models.load(root / "model/model.keras")
    cams, _ = gradcam.gradcam(model, np.stack([images[n] for n in boxes.image_index]), 0)
    px = [tuple(int(v) for v in np.array([r.x, r.y, r.x + r.w, r.y + r.h]) / 8) for r in boxes.itertuples()]
    hits = np.mean([gradcam.pointing_hit(c, b) for c, b in zip(cams, px)])
    ious = np.mean([gradcam.iou(c, b) for c, b in zip(cams, px)])
    assert loc["Atelectasis"]["pointing_game"] == pytest.approx(hits)
    assert loc["Atelectasis"]["mean_iou"] == pytest.approx(ious, abs=0.02)
    assert loc["Infiltration"]["pointing_game"] <= 0.1  # 1-px boxes: (almost) never hit


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.images, self.external = set(), 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.ids.add(attrs.get("id"))
        if tag == "img":
            self.images += 1
            if not attrs.get("src", "").startswith("data:image/png;base64,"):
                self.external.append(attrs.get("src"))
        if tag in ("link", "script") and (attrs.get("href") or attrs.get("src")):
            self.external.append(attrs.get("href") or attrs.get("src"))


REPORT_SECTIONS = {
    "summary",
    "auroc",
    "curves",
    "operating-points",
    "calibration",
    "comparison",
    "subgroups",
    "beside",
    "data",
}


def test_report_has_every_section_and_is_self_contained(evaluated):
    root, _, _ = evaluated
    html = (root / "eval/report.html").read_text()
    parser = _Sections()
    parser.feed(html)
    assert REPORT_SECTIONS <= parser.ids
    assert parser.external == [] and parser.images >= 8
    assert "not medical advice" in html and "Wang et al. 2017" in html and "CheXNet" in html
    assert (root / "eval/figures/roc_curves.png").exists() and 'href="explanation.html"' in html
    # What only NIH has, a page of its own beside the report: Grad-CAM and the localisation.
    page = _Sections()
    explained = (root / "eval/explanation.html").read_text()
    page.feed(explained)
    assert {"gradcam", "localisation"} <= page.ids and page.external == [] and page.images >= 2
    assert "not medical advice" in explained and 'href="report.html"' in explained


def test_report_opens_in_headless_chromium_without_errors(evaluated):
    import shutil

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (./run.sh test installs it where it can)")
    from playwright.sync_api import sync_playwright

    root, _, _ = evaluated
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((root / "eval/report.html").as_uri())
        broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")
        assert page.locator("section#auroc table").count() == 1
        browser.close()
    assert errors == [] and broken == 0


def test_evaluation_predict_and_app_give_the_same_calibrated_probability(evaluated, tmp_path):
    """The same test image through the evaluation (shards, TTA, calibration.json), `cxr14 predict`
    (the PNG) and the app (an upload) gives the same calibrated probability."""
    from cxr14.app import Analysis
    from cxr14.inference import Predictor
    from cxr14.predict import predict_files

    root, _, _ = evaluated
    out, model = root / "eval", root / "model/model.keras"
    sites = {"nih": (out / "calibration.json", out / "thresholds.json")}
    cal = json.loads(sites["nih"][0].read_text())
    raw = pd.read_parquet(out / "predictions.parquet")
    raw = raw[raw.split == "test"].set_index("image_index").head(6)
    evaluated_probs = calibrated(raw.reset_index(), cal).set_index("image_index")
    probs = [f"p_{f}" for f in FINDINGS]
    files = [root / "images/images_01" / name for name in raw.index]
    predict_files(Predictor(model, sites), files, tmp_path / "p.csv", batch_size=4, progress=False)
    csv = pd.read_csv(tmp_path / "p.csv").set_index("image").loc[raw.index]
    np.testing.assert_allclose(csv[probs].to_numpy(), evaluated_probs[probs].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(csv[[f"raw_{f}" for f in FINDINGS]].to_numpy(), raw[probs].to_numpy(), atol=1e-5)
    assert csv["base_rate_Atelectasis"].iloc[0] == pytest.approx(cal["base_rate"]["Atelectasis"], abs=1e-6)
    analysis = Analysis({"spots": (str(model), sites)}, max_mb=64)
    for name in raw.index[:2]:
        _, label, table, *_ = analysis.analyse(str(root / "images/images_01" / name), "spots")
        np.testing.assert_allclose(
            [label[f] for f in FINDINGS], evaluated_probs.loc[name, probs].to_numpy(float), atol=1e-5
        )
    assert "calibrated for site **nih**, on its validation split" in table and "| base rate |" in table
    assert "operating points chosen on nih's validation split" in table
    assert "Mass | " in table
    assert "(shared temperature and its own intercept: too few val positives for its own map)" in table


def test_a_calibration_is_refused_for_another_model(evaluated, tmp_path):
    from cxr14.inference import Predictor

    root, _, _ = evaluated
    other = tmp_path / "other.keras"
    models.build("small_cnn", 128, "none", dropout=0.0).save(other)
    with pytest.raises(ValueError, match="fitted for another model"):
        Predictor(other, {"nih": (root / "eval/calibration.json", None)})
