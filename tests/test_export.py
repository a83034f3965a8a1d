"""The export step: SavedModel, ONNX and TFLite that give the evaluation's scores, loaded as their users
load them, and `cxr14 predict --model model.onnx` answering as the Keras model does."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import NIH_SAMPLE, REPO, needs_shared
from cxr14.constants import FINDINGS
from cxr14.images import read_gray, resize
from cxr14.settings import defaults

PROBS = [f"p_{f}" for f in FINDINGS]
LOGITS = [f"z_{f}" for f in FINDINGS]


def second_site(root):
    """A second site's calibration and operating points for the `evaluated` run (Platt, fitted on the
    same val rows, Atelectasis's 48 positives too few for a map of its own: what matters here is that it
    differs from NIH's)."""
    from cxr14.steps.calibrate import calibrate

    out = root / "eval/site"
    if not (out / "calibration.json").exists():
        calibrate(predictions=root / "eval/predictions.parquet", table=root / "table.parquet",
                  summary=root / "model/training_summary.json", calibration=out / "calibration.json",
                  thresholds=out / "thresholds.json", site="hospital", method="platt", min_positives=50, tta=True,
                  targets=defaults("operating_points"))  # fmt: skip
    return out / "calibration.json", out / "thresholds.json"


def export_evaluated(root, out, **overrides):
    """The export step on the `evaluated` run (TTA on, 128 px) with two sites (nih, hospital) into
    `out`; its output paths."""
    from cxr14.steps.convert import convert
    from cxr14.steps.export import export

    paths = {
        "saved_model": out / "saved_model",
        "onnx": out / "model.onnx",
        "tflite": out / "model.tflite",
        "serving": out / "serving.json",
        "parity_report": out / "parity.json",
    }
    settings = {**defaults("export"), "parity_images": None, **overrides}
    convert(model=root / "model/model.keras", onnx=out / "converted.onnx", tta=True)
    export(
        model=root / "model/model.keras",
        onnx_model=out / "converted.onnx",
        summary=root / "model/training_summary.json",
        calibrations=[root / "eval/calibration.json", second_site(root)[0]],
        thresholds=[root / "eval/thresholds.json", second_site(root)[1]],
        predictions=overrides.pop("predictions", root / "eval/predictions.parquet"),
        test_manifest=root / "shards/test/manifest.json",
        **paths,
        run="spots",
        tta=True,
        batch_size=32,
        **{k: settings[k] for k in ("parity_images", "max_difference")},
    )
    return paths


@pytest.fixture(scope="module")
def exported(evaluated, tmp_path_factory):
    root, _, _ = evaluated
    return root, export_evaluated(root, tmp_path_factory.mktemp("export") / "export")


@needs_shared
def test_tta_views_are_the_affine_transforms_they_replace():
    """The TTA views, now two matrix products each (which ONNX and TFLite take), are keras's bilinear
    affine transforms with edges extended, on a real NIH image at both sizes the workflow uses."""
    import keras

    from cxr14.engines import TTA_VIEWS, tta_views

    gray = read_gray((NIH_SAMPLE / "00000001_000.png").read_bytes())
    for size in (64, 224):
        x = resize(gray, size).astype(np.float32)[None, ..., None]
        centre = (size - 1) / 2
        for (dx, dy, scale), view in zip(TTA_VIEWS, tta_views(x)):
            shift = centre * (1 - 1 / scale)
            transform = np.array([1 / scale, 0, shift - dx * size, 0, 1 / scale, shift - dy * size, 0, 0], np.float32)
            affine = keras.ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="nearest")
            assert np.abs(np.asarray(view) - np.asarray(affine)).max() < 2e-3  # of 255 grey levels


def test_every_format_gives_the_evaluations_calibrated_probabilities(exported):
    """Each format, loaded as its users load it, gives every test image's calibrated probability under
    every site's calibration within 1e-4 of the evaluation's (the Keras model with TTA), no score left
    out near 0 or 1; it outputs logits and the model's own probabilities, and serving.json carries
    every site's calibration and operating points."""
    import onnxruntime
    import tensorflow as tf

    from cxr14.calibration import apply

    root, paths = exported
    report = json.loads(paths["parity_report"].read_text())["formats"]
    assert set(report) == {"saved_model", "onnx", "tflite", "scores"}  # (scores: the score step's, checked too)
    for fmt, checked in report.items():
        assert checked["images"] == 96 and checked["sites"] == ["nih", "hospital"], fmt
        assert checked["max_abs_diff_calibrated"] <= 1e-4 and checked["max_abs_diff_logit"] <= 1e-3, fmt
    serving = json.loads(paths["serving"].read_text())
    assert serving["tta"] is True and len(serving["tta_views"]) == 5 and serving["labels"] == list(FINDINGS)
    assert serving["input"]["shape"] == [None, 128, 128, 1] and serving["model"]["backbone"] == "small_cnn"
    assert list(serving["sites"]) == ["nih", "hospital"] and serving["default_site"] == "nih"
    nih = serving["sites"]["nih"]
    assert nih["operating_points"] == json.loads((root / "eval/thresholds.json").read_text())["max_f1"]
    assert nih["calibration"] == json.loads((root / "eval/calibration.json").read_text())
    assert serving["sites"]["hospital"]["calibration"]["method"] == "platt"
    assert set(serving["outputs"]) == {"logits", "findings", "plain_logits", "embedding"}
    assert "not a medical device" in serving["disclaimer"]

    test = pd.read_parquet(root / "eval/predictions.parquet").query("split == 'test'").head(8)
    x = np.stack([resize(read_gray((root / "images/images_01" / n).read_bytes()), 128) for n in test.image_index])
    x = x.astype(np.float32)[..., None]
    want = test[LOGITS].to_numpy(np.float64)
    saved = tf.saved_model.load(str(paths["saved_model"])).signatures["serving_default"](image=tf.constant(x))
    session = onnxruntime.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and session.get_inputs()[0].shape[1:] == [128, 128, 1]
    assert [o.name for o in session.get_outputs()] == ["logits", "findings", "plain_logits", "embedding"]
    onnx = dict(zip(["logits", "findings"], session.run(["logits", "findings"], {"image": x})))
    tflite = tf.lite.Interpreter(model_path=str(paths["tflite"])).get_signature_runner("serving_default")(image=x)
    for got in (saved, onnx, tflite):
        logits = np.asarray(got["logits"], np.float64)
        np.testing.assert_allclose(np.asarray(got["findings"]), test[PROBS].to_numpy(), atol=1e-4)
        for site in serving["sites"].values():
            np.testing.assert_allclose(apply(site["calibration"], logits), apply(site["calibration"], want), atol=1e-4)


def predict_cli(*args, check=True):
    command = [sys.executable, "-m", "cxr14.cli", "predict", *map(str, args)]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def test_predict_with_the_onnx_model_answers_as_the_keras_model(exported, tmp_path):
    """`cxr14 predict --model model.onnx` (serving.json beside it: calibration, operating points) writes
    what `--model model.keras` with the run's calibration and thresholds writes: the run's own test
    PNGs and the real NIH sample (full-size, other statistics) alike."""
    root, paths = exported
    images = sorted((root / "images/images_01").glob("*.png"))[-6:]
    if NIH_SAMPLE.is_dir():
        images += sorted(NIH_SAMPLE.glob("*.png"))
    cal, thr = root / "eval/calibration.json", root / "eval/thresholds.json"
    keras_csv, onnx_csv = tmp_path / "keras.csv", tmp_path / "onnx.csv"
    predict_cli(*images, "--model", root / "model/model.keras", "--calibration", cal, "--thresholds", thr,
                "--out", keras_csv)  # fmt: skip
    proc = predict_cli(*images, "--model", paths["onnx"], "--out", onnx_csv)
    assert "probabilities calibrated for site nih, with TTA" in proc.stderr
    a, b = pd.read_csv(keras_csv), pd.read_csv(onnx_csv)
    assert list(a.image) == list(b.image) and len(a) == len(images) and set(a.site) == set(b.site) == {"nih"}
    raw = [f"raw_{f}" for f in FINDINGS]
    np.testing.assert_allclose(b[raw].to_numpy(), a[raw].to_numpy(), atol=1e-4)
    np.testing.assert_allclose(b[PROBS].to_numpy(), a[PROBS].to_numpy(), atol=1e-4)
    assert list(b.findings.fillna("")) == list(a.findings.fillna(""))
    # Another site's calibration and operating points, by name, from the ONNX model's serving.json.
    hospital_csv = tmp_path / "hospital.csv"
    proc = predict_cli(*images, "--model", paths["onnx"], "--site", "hospital", "--out", hospital_csv)
    assert "site hospital: probabilities calibrated on hospital's validation split (platt" in proc.stderr
    c = pd.read_csv(hospital_csv)
    assert set(c.site) == {"hospital"} and not np.allclose(c[PROBS].to_numpy(), b[PROBS].to_numpy(), atol=1e-3)
    np.testing.assert_allclose(c[raw].to_numpy(), b[raw].to_numpy())  # the same model, another calibration
    proc = predict_cli(*images, "--model", paths["onnx"], "--site", "elsewhere", check=False)
    assert (
        proc.returncode == 2 and "no calibration for site 'elsewhere'; this model's sites: nih, hospital" in proc.stderr
    )


def test_an_onnx_model_is_served_only_with_its_own_serving_json(exported, tmp_path):
    root, paths = exported
    image = sorted((root / "images/images_01").glob("*.png"))[0]
    proc = predict_cli(image, "--model", paths["onnx"], "--calibration", root / "eval/calibration.json", check=False)
    assert proc.returncode == 2 and "cxr14 predict: " in proc.stderr and "Traceback" not in proc.stderr
    assert "operating points and calibration are its serving.json" in proc.stderr
    proc = predict_cli(image, "--model", paths["onnx"], "--gradcam-dir", tmp_path / "cams", check=False)
    assert proc.returncode == 2 and "Grad-CAM needs the Keras model" in proc.stderr
    alone = tmp_path / "alone" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(paths["onnx"], alone)
    proc = predict_cli(image, "--model", alone, check=False)
    assert proc.returncode == 2 and "no serving.json beside it" in proc.stderr
    shutil.copy(paths["serving"], alone.parent)
    alone.write_bytes(alone.read_bytes() + b"\0")
    proc = predict_cli(image, "--model", alone, check=False)
    assert proc.returncode == 2 and "describes another model" in proc.stderr


def test_an_export_that_differs_fails_and_leaves_no_report(evaluated, tmp_path):
    """When the score step's calibrated probabilities are past the limit on one image (here: its logit
    moved so that NIH's calibrated probability moves by about 1e-3, past ONNX's 1e-4), the step names what
    differs, the image, the site and the difference, and writes no report."""
    from cxr14.calibration import apply_one, sigmoid
    from cxr14.steps.export import ParityError

    root, _, _ = evaluated
    table = pd.read_parquet(root / "eval/predictions.parquet")
    maps = json.loads((root / "eval/calibration.json").read_text())["findings"]
    test_rows = table.index[table.split == "test"]
    # A test image and finding whose calibrated probability is off 0 and 1, where moving it is possible.
    moved, finding = next((row, f) for row in test_rows for f in ("Cardiomegaly", "Atelectasis", "Mass")
                          if 0.01 < float(apply_one(maps[f], float(table.loc[row, f"z_{f}"]))) < 0.99)  # fmt: skip
    params = maps[finding]
    z = float(table.loc[moved, f"z_{finding}"])
    p = float(apply_one(params, z))
    slope = p * (1 - p) / params["temperature"]  # d(calibrated probability) / d(logit)
    table.loc[moved, f"z_{finding}"] = np.float32(z - 1.5e-3 / slope)
    table.loc[moved, f"p_{finding}"] = np.float32(sigmoid(z - 1.5e-3 / slope))
    table.to_parquet(tmp_path / "moved.parquet", index=False)
    name = table.loc[moved, "image_index"]
    with pytest.raises(
        ParityError, match=rf"scores: {name} {finding} differs .*\(site (nih|hospital)\) by \d\.\d\de-0[234]"
    ):
        export_evaluated(root, tmp_path / "export", predictions=tmp_path / "moved.parquet")
    assert not (tmp_path / "export/parity.json").exists() and not (tmp_path / "export/serving.json").exists()


def test_the_app_refuses_an_onnx_model(exported):
    _, paths = exported
    proc = subprocess.run([sys.executable, "-m", "cxr14.cli", "app", "--model", str(paths["onnx"])],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "Grad-CAM, which needs the Keras model" in proc.stderr


def test_scoring_with_onnx_runtime_gives_the_keras_scores_and_features(exported, tmp_path):
    """The score step through the convert step's ONNX model (what `evaluate.engine: auto` picks on a job
    without a GPU) gives the Keras model's scores, plain scores and embeddings, on the same images."""
    import numpy as np

    from cxr14 import ood, prediction_table
    from cxr14.steps.score import engine_for, score

    root, paths = exported
    for engine in ("keras", "onnx"):
        score(model=root / "model/model.keras", onnx=paths["onnx"], manifests=[root / "shards/test/manifest.json"],
              splits=["test"], predictions=tmp_path / f"{engine}.parquet", features=tmp_path / f"{engine}.npz",
              batch_size=32, tta=True, engine=engine)  # fmt: skip
    keras, onnx = (prediction_table.read(tmp_path / f"{e}.parquet") for e in ("keras", "onnx"))
    assert list(keras.image_index) == list(onnx.image_index) and len(keras) == 96
    np.testing.assert_allclose(prediction_table.logits(onnx), prediction_table.logits(keras), atol=1e-4)
    np.testing.assert_allclose(prediction_table.plain_logits(onnx), prediction_table.plain_logits(keras), atol=1e-4)
    a, b = (ood.per_image(tmp_path / f"{e}.npz") for e in ("keras", "onnx"))
    np.testing.assert_allclose(b["embedding"], a["embedding"], atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(b["histogram"], a["histogram"])
    assert engine_for("auto") == ("onnx", "no GPU visible") and engine_for("keras")[0] == "keras"
