import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from conftest import spot_example, train_into, write_easy_shards
from cxr14 import evaluate, gradcam, metrics, models
from cxr14.calibrate import calibrate
from cxr14.config import defaults
from cxr14.constants import FINDINGS


def test_auroc_by_hand_and_with_ties_and_weights():
    y = np.array([0, 0, 1, 1])
    assert metrics.weighted_auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert metrics.weighted_auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    # Weight 2 on the misranked negative: pairs (pos, neg) weigh w_pos * w_neg.
    w = np.array([1, 2, 1, 1])
    assert metrics.weighted_auroc(y, np.array([0.1, 0.4, 0.35, 0.8]), w) == pytest.approx((1 + 0 + 1 + 2) / 6)
    assert np.isnan(metrics.weighted_auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_patient_bootstrap_resamples_patients_not_images():
    patients = np.array([7, 7, 7, 3, 9, 9])
    w = metrics.patient_bootstrap_weights(patients, 500, seed=0)
    assert w.shape == (500, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    # Each replicate draws 3 patients: the draws of (7, 3, 9) sum to 3.
    assert np.all(w[:, 0] + w[:, 3] + w[:, 4] == 3)


def test_bootstrap_by_patient_is_wider_than_by_image_when_images_of_a_patient_agree():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 2)) < 0.4).astype(int)
    s = y + rng.normal(0, 0.8, y.shape)
    y, s = np.repeat(y, 10, axis=0), np.repeat(s, 10, axis=0)  # 40 patients with 10 alike images each
    many = metrics.bootstrap_auroc(y, s, np.arange(400), n_boot=300, seed=1)  # as if each image were a patient
    few = metrics.bootstrap_auroc(y, s, np.arange(400) // 10, n_boot=300, seed=1)
    for j in range(2):
        lo, hi = many["ci"][j]
        assert lo < many["auroc"][j] < hi
        assert (few["ci"][j][1] - few["ci"][j][0]) > (hi - lo)
    assert many["mean_ci"][0] < many["mean_auroc"] < many["mean_ci"][1]


def test_thresholds_are_chosen_on_val_and_applied_on_test():
    val = pd.DataFrame({f"y_{f}": [0, 0, 1, 1] for f in FINDINGS} | {f"p_{f}": [0.1, 0.3, 0.6, 0.9] for f in FINDINGS})
    test = pd.DataFrame({f"y_{f}": [0, 1, 1, 0] for f in FINDINGS} | {f"p_{f}": [0.2, 0.65, 0.5, 0.7] for f in FINDINGS})
    points = evaluate.operating_points(val, test)
    op = points["Mass"]["max_f1"]
    assert op["threshold"] == pytest.approx(0.6)  # perfect separation on val
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (1, 1, 1, 1)
    assert op["precision"] == 0.5 and op["sensitivity"] == 0.5 and op["specificity"] == 0.5 and op["f1"] == 0.5
    assert points["Mass"]["youden"]["threshold"] == pytest.approx(0.6)


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 1])
    s = np.array([0.05, 0.15, 0.95, 0.85])
    r = metrics.reliability(y, s, bins=2)
    # bin [0, .5): mean conf .1, frac pos .5; bin [.5, 1]: mean conf .9, frac pos 1.
    assert r["ece"] == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    assert r["brier"] == pytest.approx(np.mean((s - y) ** 2))
    assert r["count"] == [2, 2]


def test_pointing_game_and_iou_on_synthetic_boxes():
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 30:40] = 1.0
    cam[15, 35] = 2.0
    inside = gradcam.box_to_pixels((30 * 16, 10 * 16, 10 * 16, 10 * 16), 64)  # 1024-px coords
    assert inside == (30, 10, 40, 20)
    assert gradcam.pointing_hit(cam, inside)
    assert not gradcam.pointing_hit(cam, (0, 0, 10, 10))
    assert gradcam.iou(cam / cam.max(), inside, threshold=0.4) == pytest.approx(1.0)
    assert gradcam.iou(cam / cam.max(), (30, 10, 40, 30), threshold=0.4) == pytest.approx(0.5)


def test_box_list_spelling_is_mapped(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Infiltrate,1,2,3,4\nb.png,Mass,5,6,7,8\n")
    boxes = evaluate.read_boxes(path)
    assert boxes.finding.tolist() == ["Infiltration", "Mass"] and boxes.w.tolist() == [3, 7]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A small CNN trained to find a bright square anywhere (Atelectasis), evaluated end to end with
    the squares as boxes."""
    root = tmp_path_factory.mktemp("eval")
    manifests = write_easy_shards(root, (("train", 320), ("val", 96), ("test", 96)), size=128, per_shard=128,
                                  example=spot_example)
    train_into(root / "model", manifests["train"], manifests["val"], backbone="small_cnn", weights="none", epochs=8,
               learning_rate=0.003, lr_factor=0.5, lr_patience=3, early_stopping_patience=10, dropout=0.0, seed=0,
               cache=True, augment=None, deterministic=True)
    table = pd.read_parquet(root / "table.parquet")
    boxes = root / "boxes.csv"
    boxed = table[(table.split == "test") & (table.Atelectasis == 1)]
    boxes.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n" + "".join(
        f"{r.image_index},Infiltrate,600,600,1,1\n{r.image_index},Atelectasis,{','.join(map(str, r.box))}\n"
        for r in boxed.itertuples()))
    report = {"images": {"train": 320, "val": 96, "test": 96}, "patients": {"train": 320, "val": 96, "test": 96},
              "data_entry": "synthetic", "rows_in": 512, "rows_out": 512, "leakage_patients": 0,
              "changed": {}, "dropped": {}}
    (root / "cleaning_report.json").write_text(json.dumps(report))
    out = root / "eval"
    evaluate.score(model=root / "model/model.keras", val_manifest=manifests["val"], test_manifest=manifests["test"],
                   predictions=out / "predictions.parquet", batch_size=64, tta=True)
    calibrate(predictions=out / "predictions.parquet", table=root / "table.parquet",
              summary=root / "model/training_summary.json", calibration=out / "calibration.json",
              **defaults("calibration"), tta=True)
    m = evaluate.evaluate(
        predictions=out / "predictions.parquet", calibration=out / "calibration.json", model=root / "model/model.keras",
        test_manifest=manifests["test"], table=root / "table.parquet", cleaning_report=root / "cleaning_report.json",
        boxes=boxes, expert_labels=[], metrics=out / "metrics.json", thresholds=out / "thresholds.json",
        report=out / "report.html", figures=out / "figures", run="spots", members=[],
        **{**defaults("evaluate"), "n_boot": 50, "gallery_k": 1, "tta": True})
    return root, m, len(boxed)


def test_calibration_and_tta_in_the_evaluation(evaluated):
    """Only Atelectasis has val positives: it is calibrated, the rest are left alone and named; AUROC
    does not move; TTA is compared with the plain scores on the same images."""
    root, m, _ = evaluated
    cal = json.loads((root / "eval/calibration.json").read_text())
    assert cal["findings"]["Atelectasis"]["method"] == "temperature" and cal["fitted_on"] == "val"
    assert cal["uncalibrated"] == list(FINDINGS[1:]) and "val positives" in cal["findings"]["Mass"]["reason"]
    assert cal["base_rate"]["Atelectasis"] == pytest.approx(0.5, abs=0.1) and cal["tta"] is True
    c = m["calibration"]
    assert c["method"] == "temperature" and c["auroc_max_change"] < 1e-6
    for kind in ("before", "after"):
        for key in ("ece", "ece_adaptive", "brier"):
            low, high = c[kind][key]["ci"]
            assert low <= c[kind][key]["mean"] <= high
    assert c["findings"]["Atelectasis"]["ece"] != c["findings"]["Atelectasis"]["before"]["ece"]
    assert c["findings"]["Mass"]["ece"] == c["findings"]["Mass"]["before"]["ece"]
    assert m["tta"]["views"] == 5 and m["tta"]["auroc_without"]["Atelectasis"] > 0.8
    assert m["tta"]["diff"]["ci"][0] <= m["tta"]["diff"]["diff"] <= m["tta"]["diff"]["ci"][1]
    html = (root / "eval/report.html").read_text()
    assert 'id="calibration-summary"' in html and "Test-time augmentation" in html and "Left uncalibrated" in html


def test_evaluation_outputs(evaluated):
    root, _, _ = evaluated
    m = json.loads((root / "eval/metrics.json").read_text())
    assert set(m["auroc"]) == set(FINDINGS) and set(m["auroc_ci"]) == set(FINDINGS)
    assert m["mean_auroc"] > 0.9 and m["images"] == 96
    for f in FINDINGS:
        if m["auroc"][f] is not None:
            assert m["auroc_ci"][f][0] <= m["auroc"][f] <= m["auroc_ci"][f][1]
    assert set(m["thresholds"]["Mass"]) == {"max_f1", "youden"}
    assert set(m["subgroups"]) == {"sex", "age", "view"}
    pred = pd.read_parquet(root / "eval/predictions.parquet")
    assert set(pred.split) == {"val", "test"} and len(pred) == 192
    assert json.loads((root / "eval/thresholds.json").read_text())["chosen_on"] == "val"


def test_localisation_scores_the_boxes(evaluated):
    from cxr14.data import Shards

    root, m, n_boxes = evaluated
    loc = m["localisation"]
    assert list(loc) == ["Atelectasis", "Infiltration"]  # "Infiltrate" in the box list is mapped
    assert loc["Atelectasis"]["boxes"] == loc["Infiltration"]["boxes"] == n_boxes > 20
    # The same figures, recomputed by hand from Grad-CAM and the boxes scaled from 1024 px to 128.
    boxes = evaluate.read_boxes(root / "boxes.csv")
    boxes = boxes[boxes.finding == "Atelectasis"]
    images = evaluate.collect_images(Shards.from_manifest(root / "shards/test/manifest.json"), set(boxes.image_index), 64)
    model = models.load(root / "model/model.keras")
    cams, _ = gradcam.gradcam(model, np.stack([images[n] for n in boxes.image_index]), 0)
    px = [tuple(int(v) for v in np.array([r.x, r.y, r.x + r.w, r.y + r.h]) / 8) for r in boxes.itertuples()]
    hits = np.mean([gradcam.pointing_hit(c, b) for c, b in zip(cams, px)])
    ious = np.mean([gradcam.iou(c, b) for c, b in zip(cams, px)])
    assert loc["Atelectasis"]["pointing_game"] == pytest.approx(hits)
    assert loc["Atelectasis"]["mean_iou"] == pytest.approx(ious, abs=0.02)
    assert loc["Infiltration"]["pointing_game"] <= 0.1  # 1-px boxes: (almost) never hit


def _spot_detector(size=128):
    """A cxr14-shaped model whose Atelectasis evidence is known: the backbone's one feature map is
    the brightness above 100, pooled 8x8, and the head adds it up. Grad-CAM must point at bright spots."""
    import keras

    from cxr14.models import ModelInfo

    inputs = keras.Input((size, size, 1))
    x = ModelInfo({"labels": list(FINDINGS), "image_size": size, "backbone": "spot"}, name="cxr14_info")(inputs)
    b_in = keras.Input((size, size, 1))
    feat = keras.layers.Conv2D(1, 1, activation="relu", name="spot")(keras.layers.AveragePooling2D(8)(b_in))
    features = keras.Model(b_in, feat, name="backbone")(x)
    pooled = keras.layers.Dropout(0.0, name="dropout")(keras.layers.GlobalAveragePooling2D(name="pool")(features))
    head = keras.layers.Dense(14, activation="sigmoid", name="findings")
    model = keras.Model(inputs, head(pooled))
    model.get_layer("backbone").get_layer("spot").set_weights([np.ones((1, 1, 1, 1)), np.array([-100.0])])
    head.set_weights([np.r_[1.0, -np.ones(13)][None, :], np.zeros(14)])
    return model


def test_gradcam_peaks_where_the_planted_signal_is(tmp_path):
    model = _spot_detector()
    model.save(tmp_path / "m.keras")
    model = models.load(tmp_path / "m.keras")  # through save and load, as the app and evaluation use it
    rng = np.random.default_rng(5)
    for x, y in ((8, 8), (88, 16), (16, 80), (80, 88), (56, 48)):
        img = rng.integers(0, 40, (1, 128, 128, 1)).astype(np.float32)
        img[0, y:y + 24, x:x + 24] += 180.0
        cam, probs = gradcam.gradcam(model, img, 0)
        assert cam.shape == (1, 128, 128) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        assert probs.shape == (1, 14) and probs[0, 0] > 0.5
        assert gradcam.pointing_hit(cam[0], (x, y, x + 24, y + 24))
        assert gradcam.iou(cam[0], (x, y, x + 24, y + 24)) > 0.3
    # A finding whose evidence is absent gives a flat map, which points nowhere.
    cam, _ = gradcam.gradcam(model, img, 1)
    assert cam.max() == 0 and not gradcam.pointing_hit(cam[0], (0, 0, 128, 128))


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


REPORT_SECTIONS = {"summary", "auroc", "curves", "operating-points", "calibration", "comparison", "subgroups",
                   "expert-labels", "gradcam", "localisation", "data"}


def test_report_has_every_section_and_is_self_contained(evaluated):
    root, _, _ = evaluated
    html = (root / "eval/report.html").read_text()
    parser = _Sections()
    parser.feed(html)
    assert REPORT_SECTIONS <= parser.ids
    assert parser.external == [] and parser.images >= 9
    assert "not medical advice" in html and "Wang et al. 2017" in html and "CheXNet" in html
    assert (root / "eval/figures/roc_curves.png").exists()


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


def test_scoring_names_a_damaged_shard(tmp_path):
    from cxr14.shards import CorruptShard

    manifests = write_easy_shards(tmp_path, (("val", 8), ("test", 8)), size=16, per_shard=8)
    models.build("small_cnn", 16, "none", dropout=0.0).save(tmp_path / "m.keras")
    shard = next((tmp_path / "shards/test").glob("*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-10])  # cut short
    with pytest.raises(CorruptShard, match=rf"{shard.name}: damaged"):
        evaluate.score(model=tmp_path / "m.keras", val_manifest=manifests["val"], test_manifest=manifests["test"],
                       predictions=tmp_path / "p.parquet", batch_size=8, tta=False)
    assert not (tmp_path / "p.parquet").exists()


def test_evaluation_predict_and_app_give_the_same_calibrated_probability(evaluated, tmp_path):
    """The same test image through the evaluation (shards, TTA, calibration.json), `cxr14 predict`
    (the PNG) and the app (an upload) gives the same calibrated probability."""
    from cxr14.app import Analysis
    from cxr14.inference import Predictor
    from cxr14.predict import predict_files

    root, _, _ = evaluated
    out, model = root / "eval", root / "model/model.keras"
    sidecars = (out / "thresholds.json", out / "calibration.json")
    cal = json.loads(sidecars[1].read_text())
    raw = pd.read_parquet(out / "predictions.parquet")
    raw = raw[raw.split == "test"].set_index("image_index").head(6)
    evaluated_probs = evaluate.calibrated(raw.reset_index(), cal).set_index("image_index")
    probs = [f"p_{f}" for f in FINDINGS]
    files = [root / "images/images_01" / name for name in raw.index]
    predict_files(Predictor(model, *sidecars), files, tmp_path / "p.csv", batch_size=4, progress=False)
    csv = pd.read_csv(tmp_path / "p.csv").set_index("image").loc[raw.index]
    np.testing.assert_allclose(csv[probs].to_numpy(), evaluated_probs[probs].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(csv[[f"raw_{f}" for f in FINDINGS]].to_numpy(), raw[probs].to_numpy(), atol=1e-5)
    assert csv["base_rate_Atelectasis"].iloc[0] == pytest.approx(cal["base_rate"]["Atelectasis"], abs=1e-6)
    analysis = Analysis({"spots": (str(model), *map(str, sidecars))}, max_mb=64)
    for name in raw.index[:2]:
        _, label, table, *_ = analysis.analyse(str(root / "images/images_01" / name), "spots")
        np.testing.assert_allclose([label[f] for f in FINDINGS], evaluated_probs.loc[name, probs].to_numpy(float),
                                   atol=1e-5)
    assert "calibrated on the validation split" in table and "| base rate |" in table
    assert "Mass | " in table and "(score: too few val positives to calibrate)" in table


def test_a_calibration_is_refused_for_another_model(evaluated, tmp_path):
    from cxr14.inference import Predictor

    root, _, _ = evaluated
    other = tmp_path / "other.keras"
    models.build("small_cnn", 128, "none", dropout=0.0).save(other)
    with pytest.raises(ValueError, match="fitted for another model"):
        Predictor(other, calibration_path=root / "eval/calibration.json")
