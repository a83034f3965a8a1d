"""Step `export`: a trained run's model for serving outside cxr14, as a TensorFlow SavedModel (TF Serving),
an ONNX model (ONNX Runtime) and a TFLite model (mobile and edge).

Each is the one inference graph of `conversion.serving_model` (the ONNX model is the convert step's, the
one `score` runs with ONNX Runtime): it takes what the Keras model takes, (B, S, S, 1) float32 grayscale
pixels 0..255 named `image`, and holds all the preprocessing after that. Each gives `logits`, the (B, 14)
logits every calibration maps, `findings`, their sigmoid (the model's own probabilities), and the plain
image's `plain_logits` and `embedding`. Every site's calibration and operating points go beside them in
one JSON that the three share (`serving.json`). Each export is loaded the way its users load it and
checked on the run's test shards against the Keras model's own logits (through `engines.forward`), as
every site's calibrated probabilities, the numbers users act on; so are the score step's test scores,
whichever engine made them: `parity.json` records the largest differences, and one past the limit fails
the step. No score is left out, near 0 or 1 or not: the maps take logits in float64, so nothing saturates.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .. import models, prediction_table
from ..calibration import apply, check_model
from ..constants import DISCLAIMER, FINDINGS
from ..conversion import serving_model, write_saved_model
from ..data import Shards, dataset, use_threads
from ..engines import SERVING_EMBEDDING as EMBEDDING
from ..engines import SERVING_INPUT as INPUT
from ..engines import SERVING_LOGITS as LOGITS
from ..engines import SERVING_OUTPUT as OUTPUT
from ..engines import SERVING_PLAIN as PLAIN
from ..engines import TTA_VIEWS, forward, load_onnx
from ..files import atomic, sha256_file, write_json

log = logging.getLogger(__name__)


class ParityError(ValueError):
    """An exported model does not give the Keras model's scores; the message names the format and image."""


def write_tflite(saved_model, path) -> None:
    """The SavedModel's serving signature converted for TFLite (float32, no quantisation)."""
    import tensorflow as tf

    converted = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
    with atomic(path) as staged:
        Path(staged).write_bytes(converted)


def load_saved_model(path):
    """(B, S, S, 1) -> {`logits`, `findings`: (B, 14)} through `tf.saved_model.load` and its serving
    signature."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda x: {name: out.numpy() for name, out in serve(**{INPUT: tf.constant(x, tf.float32)}).items()}


def load_tflite(path, threads: int | None = None):
    """(B, S, S, 1) -> {`logits`, `findings`: (B, 14)} through `tf.lite.Interpreter` and its serving
    signature, which takes each batch's size and names the outputs as the SavedModel does."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    runner = interpreter.get_signature_runner("serving_default")
    return lambda x: {name: out.copy() for name, out in runner(**{INPUT: np.asarray(x, np.float32)}).items()}


LOADERS = {"saved_model": load_saved_model, "onnx": load_onnx, "tflite": load_tflite}


def serving_info(*, run: str, model, info: dict, tta: bool, sites: dict, files: dict, trained: dict) -> dict:
    """serving.json: what a server needs beside any of the three files. `sites`: name -> {calibration,
    operating_points} (NIH's first); `trained`: the run's training summary."""
    device = trained.get("device", {})
    views = ", the mean over the test-time views below" if tta else ""
    return {
        "run": run,
        "disclaimer": DISCLAIMER,
        "model_sha256": sha256_file(model),
        "model": info,
        # Whatever the run trained in (mixed precision on GPUs), every format computes in float32, as the
        # evaluation scored it.
        "compute": {
            "dtype": "float32",
            "trained_in": device.get("precision", device.get("mixed_precision")),  # (the key before #27)
            "trained_on_replicas": device.get("replicas"),
        },
        "labels": list(FINDINGS),
        "input": {
            "name": INPUT,
            "shape": [None, info["image_size"], info["image_size"], 1],
            "dtype": "float32",
            "values": "grayscale 0..255: the image read as cxr14.images.read_gray does (16-bit windowed, "
            "MONOCHROME1 inverted) and resized to the input size with area interpolation (cxr14.images.resize)",
        },
        "outputs": {
            LOGITS: {
                "shape": [None, len(FINDINGS)],
                "values": f"logit per finding in `labels` order{views}; map a site's `calibration` (on "
                "logits, in float64) for probabilities and compare them with its `operating_points`",
            },
            OUTPUT: {
                "shape": [None, len(FINDINGS)],
                "values": "the sigmoid of `logits`: the model's own probabilities, not calibrated",
            },
            PLAIN: {"shape": [None, len(FINDINGS)], "values": "the plain image's logits (no test-time views)"},
            EMBEDDING: {
                "shape": [None, None],
                "values": "the plain image's penultimate-layer features (what `cxr14 monitor` compares)",
            },
        },
        "tta": tta,
        "tta_views": [dict(zip(("shift_x", "shift_y", "zoom"), view)) for view in TTA_VIEWS] if tta else [],
        "default_site": next(iter(sites)),
        "sites": sites,
        "files": files,
    }


def first_test_images(manifest, batch_size: int, limit: int | None):
    """(image names, (B, S, S, 1) pixels) of the first `limit` images of the test shards, in shard order."""
    left = limit
    for x, _, meta in dataset(Shards.from_manifest(manifest, verify=True), batch_size, with_metadata=True):
        names = [s.decode() for s in meta["image_index"].numpy()]
        x = x.numpy()
        if left is not None:
            names, x = names[:left], x[:left]
            left -= len(names)
        if names:
            yield names, x
        if left is not None and left <= 0:
            return


def expected(sites: dict[str, dict], logits: np.ndarray) -> dict:
    """The evaluation's logits of a batch, their sigmoid and each site's calibrated probabilities
    (`sites`: name -> calibration): computed once a batch, however many formats are compared."""
    return {LOGITS: logits, OUTPUT: apply(None, logits)} | {site: apply(cal, logits) for site, cal in sites.items()}


class Parity:
    """How far one export is from the evaluation, accumulated batch by batch: the largest difference in
    calibrated probability over every site's calibration (checked), with its image, finding and site;
    the largest in logit and in the model's own probability (recorded); and the time it took."""

    def __init__(self, sites: dict[str, dict]):
        self.sites = sites  # name -> calibration
        self.calibrated, self.image, self.finding, self.site = 0.0, None, None, None
        self.logit, self.probability, self.images, self.seconds = 0.0, 0.0, 0, 0.0

    def add(self, names: list[str], got: dict, want: dict, seconds: float) -> None:
        """`got`: the export's {logits, findings} of a batch; `want`: the evaluation's (`expected`)."""
        logits = np.asarray(got[LOGITS], np.float64)
        self.logit = max(self.logit, float(np.abs(logits - want[LOGITS]).max()))
        own = np.abs(np.asarray(got[OUTPUT], np.float64) - want[OUTPUT])
        self.probability = max(self.probability, float(own.max()))
        for site, calibration in self.sites.items():
            mine = apply(calibration, logits)  # NaN for a finding the site has no map for, on both sides
            diff = np.where(
                np.isnan(mine) & np.isnan(want[site]), 0.0, np.nan_to_num(np.abs(mine - want[site]), nan=np.inf)
            )
            if diff.max() > self.calibrated or self.image is None:
                row, col = np.unravel_index(diff.argmax(), diff.shape)
                self.calibrated, self.site = float(diff.max()), site
                self.image, self.finding = names[row], FINDINGS[col]
        self.images += len(names)
        self.seconds += seconds

    def result(self) -> dict:
        return {"max_abs_diff_calibrated": self.calibrated, "worst_image": self.image, "worst_finding": self.finding,
                "worst_site": self.site, "max_abs_diff_logit": self.logit,
                "max_abs_diff_probability": self.probability, "sites": list(self.sites),
                "images": self.images, "seconds": round(self.seconds, 3)}  # fmt: skip


def write_formats(net, size: int, paths: dict, converted) -> dict:
    """The three files (`paths`: format -> path) of one serving model (its ONNX model the `converted`
    one, the convert step's, copied); serving.json's `files` entry."""
    shutil.rmtree(paths["saved_model"], ignore_errors=True)
    write_saved_model(net, size, paths["saved_model"])
    with atomic(paths["onnx"]) as staged:
        shutil.copyfile(converted, staged)
    write_tflite(paths["saved_model"], paths["tflite"])
    return {fmt: {"path": Path(path).name, **({"sha256": sha256_file(path)} if fmt != "saved_model" else {})}
            for fmt, path in paths.items()}  # fmt: skip


def check_parity(paths: dict, reference, batches, sites: dict, max_difference: dict, scored=None) -> dict:
    """Each format loaded from `paths` as its users load it and compared (`Parity`) with the `reference`
    logits (a Keras model's `logits_model`, or image -> (14,)) on the same `batches`, read once, through
    every site's calibration (`sites`: name -> calibration); the score step's `scored` logits (image ->
    (14,)) too, as `scores`, held to ONNX's limit. ParityError naming the image when one is past its limit."""
    predict = {fmt: LOADERS[fmt](path) for fmt, path in paths.items()}
    found = {fmt: Parity(sites) for fmt in [*paths, *(["scores"] if scored else [])]}
    limits = {**max_difference, "scores": max_difference["onnx"]}
    for names, x in batches:
        logits = reference(x) if callable(reference) else np.stack([reference[n] for n in names])
        want = expected(sites, np.asarray(logits, np.float64))
        for fmt, measured in found.items():
            start = time.perf_counter()
            got = predict[fmt](x) if fmt != "scores" else _as_output(np.stack([scored[n] for n in names]))
            measured.add(names, got, want, time.perf_counter() - start)
    checked = {fmt: {**measured.result(), "max_allowed": limits[fmt]} for fmt, measured in found.items()}
    for fmt, c in checked.items():
        log.info("%s: largest difference from the evaluation's calibrated probabilities %.2e (logits %.2e) over %d "
                 "test images", fmt, c["max_abs_diff_calibrated"], c["max_abs_diff_logit"], c["images"])  # fmt: skip
    bad = {f: c for f, c in checked.items() if c["max_abs_diff_calibrated"] > c["max_allowed"]}
    if bad:
        raise ParityError(
            "; ".join(
                f"{f}: {c['worst_image']} {c['worst_finding']} differs from the Keras model's calibrated probability "
                f"(site {c['worst_site']}) by {c['max_abs_diff_calibrated']:.2e} (at most {c['max_allowed']:.0e} "
                "allowed, export.max_difference)"
                for f, c in bad.items()
            )
        )
    return checked


def _as_output(logits: np.ndarray) -> dict:
    """Stored logits as a format's output (the logits and their sigmoid)."""
    return {LOGITS: logits, OUTPUT: apply(None, logits)}


def keras_reference(model, tta: bool):
    """(B, S, S, 1) pixels -> the Keras model's logits, as the evaluation scores with Keras (`forward`)."""
    net = models.logits_model(model)
    return lambda x: forward(net, x, tta)


def export(
    *,
    model,
    onnx_model,
    summary,
    calibrations: list,
    thresholds: list,
    predictions,
    test_manifest,
    saved_model,
    onnx,
    tflite,
    serving,
    parity_report,
    run: str,
    tta: bool,
    batch_size: int,
    parity_images: int | None,
    max_difference: dict,
    threads=None,
) -> None:
    """Export the run's model (`models.load`: in float32, whatever it trained in) in the three formats (the
    ONNX one the convert step's `onnx_model`), then load each as its users do, score the first
    `parity_images` test images (all with None) and compare with the Keras model's logits through every
    site's calibration (`calibrations` and `thresholds`: one per site, NIH's first), and the score step's
    (`predictions`, by Keras or ONNX Runtime) too: one past its `max_difference` fails the step, naming
    the image; else serving.json and parity.json."""
    use_threads(threads)
    keras_model = models.load(model)
    info = models.info(keras_model)
    sites = {}
    for calibration, points in zip(calibrations, thresholds, strict=True):
        cal = json.loads(Path(calibration).read_text())
        check_model(cal, model)
        if bool(cal.get("tta")) != bool(tta):
            raise ValueError(f"{calibration} was fitted with tta={cal.get('tta')}, but the run scores with tta={tta}")
        chosen = json.loads(Path(points).read_text())
        sites[cal["site"]] = {"calibration": cal, "operating_points": chosen["max_f1"],
                                          "operating_points_by_rule": chosen}  # fmt: skip
    paths = {"saved_model": saved_model, "onnx": onnx, "tflite": tflite}
    files = write_formats(serving_model(keras_model, tta), int(info["image_size"]), paths, onnx_model)
    test = prediction_table.read(predictions, "test")
    scored = dict(zip(test["image_index"], prediction_table.logits(test)))
    batches = first_test_images(test_manifest, batch_size, parity_images)
    calibrations_of = {name: site["calibration"] for name, site in sites.items()}
    checked = check_parity(paths, keras_reference(keras_model, tta), batches, calibrations_of, max_difference, scored)
    trained = json.loads(Path(summary).read_text())
    write_json(serving_info(run=run, model=model, info=info, tta=tta, sites=sites, files=files, trained=trained),
               serving)  # fmt: skip
    reference = ("the Keras model's test logits, calibrated for each site; `scores`: the score step's "
                 "(predictions.parquet), by Keras or ONNX Runtime")  # fmt: skip
    write_json({"run": run, "reference": reference, "formats": checked}, parity_report)
