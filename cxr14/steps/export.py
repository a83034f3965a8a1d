"""Step `export`: a trained run's model for serving outside cxr14, as a TensorFlow SavedModel (TF Serving),
an ONNX model (ONNX Runtime) and a TFLite model (mobile and edge).

Each takes what the Keras model takes, (B, S, S, 1) float32 grayscale pixels 0..255 named `image`, and
holds all the preprocessing after that: gray to RGB, the backbone's input scaling and, when the run is
evaluated with test-time augmentation, the views and their mean (taken over logits). Each gives `logits`,
the (B, 14) logits every calibration maps, and `findings`, their sigmoid (the model's own probabilities).
Every site's calibration and operating points go beside them in one JSON that the three share
(`serving.json`). Each export is loaded the way its users load it and checked on the run's test shards
against the evaluation's own logits (the Keras model through `inference.forward`), as every site's
calibrated probabilities, the numbers users act on: `parity.json` records the largest differences, and
one past the limit fails the step. No score is left out, near 0 or 1 or not: the maps take logits in
float64, so nothing saturates.
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
from ..data import Shards, dataset, use_threads
from ..files import atomic, sha256_file, write_json
from ..inference import SERVING_INPUT as INPUT
from ..inference import SERVING_LOGITS as LOGITS
from ..inference import SERVING_OUTPUT as OUTPUT
from ..inference import TTA_VIEWS, load_onnx, tta_views

log = logging.getLogger(__name__)

ONNX_OPSET = 17


class ParityError(ValueError):
    """An exported model does not give the Keras model's scores; the message names the format and image."""


def serving_model(model, tta: bool):
    """The model as the evaluation scores with it: (B, S, S, 1) pixels to {`logits`, `findings`}, each
    (B, 14); with `tta` the mean logits over the TTA_VIEWS (resampled by matrix products, so every
    export format holds them) and their sigmoid."""
    import keras

    net = models.logits_model(model)
    inputs = keras.Input(model.input_shape[1:], name=INPUT)
    if tta:
        views = tta_views(inputs)
        logits = net(keras.ops.concatenate(views, axis=0))
        logits = keras.ops.mean(keras.ops.reshape(logits, (len(views), -1, len(FINDINGS))), axis=0)
    else:
        logits = net(inputs)
    outputs = {LOGITS: keras.layers.Identity(name=LOGITS)(logits),
               OUTPUT: keras.layers.Activation("sigmoid", name=OUTPUT)(logits)}  # fmt: skip
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def _signature(size: int):
    import tensorflow as tf

    return tf.TensorSpec((None, size, size, 1), tf.float32, name=INPUT)


def write_saved_model(net, size: int, path) -> None:
    """A SavedModel whose `serving_default` signature maps `image` to `logits` and `findings`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(net)
    serve = lambda image: net(image, training=False)  # noqa: E731
    archive.add_endpoint("serve", serve, input_signature=[_signature(size)])
    archive.write_out(str(path), verbose=False)


def write_onnx(net, size: int, path, opset: int = ONNX_OPSET) -> None:
    """The model's inference graph, frozen, converted by tf2onnx, with inputs and outputs named as above."""
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # keras.src.export.tf2onnx_lib is private, kept on purpose: tf2onnx 1.17 fails on numpy 2
    # (np.object, its constant folding) without Keras's fix. The public route,
    # `Model.export(format="onnx")`, applies the same fix but names the outputs `Identity:0`... (measured
    # with Keras 3.15), where serving.json, `cxr14 predict` and the app read `logits` and `findings`;
    # calling tf2onnx on the frozen graph ourselves keeps the names.
    patch_tf2onnx()
    serve = tf.function(lambda image: [net(image, training=False)[name] for name in (LOGITS, OUTPUT)])
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function(_signature(size)))
    graph = frozen.graph.as_graph_def()
    _compile_nothing(graph)
    given = frozen.inputs[0].name
    names = {given: INPUT, frozen.outputs[0].name: LOGITS, frozen.outputs[1].name: OUTPUT}
    proto, _ = tf2onnx.convert.from_graph_def(
        graph, input_names=[given], output_names=[o.name for o in frozen.outputs[:2]], opset=opset,
        custom_op_handlers={"Erfc": (_erfc, [])},
    )  # fmt: skip
    for node in proto.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for value in [*proto.graph.input, *proto.graph.output]:
        value.name = names.get(value.name, value.name)
    with atomic(path) as staged:
        Path(staged).write_bytes(proto.SerializeToString())


def _compile_nothing(graph) -> None:
    """Drop the XLA-compile marks Keras puts on some ops' functions (its grouped convolutions, as in
    ConvNeXt), so tf2onnx inlines them instead of leaving calls ONNX has no operator for."""
    for function in graph.library.function:
        function.attr.pop("_XlaMustCompile", None)
        function.attr.pop("_noinline", None)
    for node in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]:
        node.attr.pop("_XlaMustCompile", None)


def _erfc(ctx, node, name, args) -> None:
    """tf2onnx has no Erfc (exact GELU, as in ConvNeXt): 1 - Erf(x), which ONNX has."""
    from tf2onnx import utils

    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, np.float32))
    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=name)
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


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
            diff = np.abs(apply(calibration, logits) - want[site])
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


def write_formats(net, size: int, paths: dict) -> dict:
    """The three files (`paths`: format -> path) of one serving model; serving.json's `files` entry."""
    shutil.rmtree(paths["saved_model"], ignore_errors=True)
    write_saved_model(net, size, paths["saved_model"])
    write_onnx(net, size, paths["onnx"])
    write_tflite(paths["saved_model"], paths["tflite"])
    return {fmt: {"path": Path(path).name, **({"sha256": sha256_file(path)} if fmt != "saved_model" else {})}
            for fmt, path in paths.items()}  # fmt: skip


def check_parity(paths: dict, reference: dict, batches, sites: dict, max_difference: dict) -> dict:
    """Each format loaded from `paths` as its users load it and compared (`Parity`) with the `reference`
    logits (image -> (14,)) on the same `batches`, read once, through every site's calibration
    (`sites`: name -> calibration); ParityError naming the image when one is past its limit."""
    predict = {fmt: LOADERS[fmt](path) for fmt, path in paths.items()}
    found = {fmt: Parity(sites) for fmt in paths}
    for names, x in batches:
        want = expected(sites, np.stack([reference[n] for n in names]).astype(np.float64))
        for fmt, measured in found.items():
            start = time.perf_counter()
            got = predict[fmt](x)
            measured.add(names, got, want, time.perf_counter() - start)
    checked = {fmt: {**measured.result(), "max_allowed": max_difference[fmt]} for fmt, measured in found.items()}
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


def export(
    *,
    model,
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
    """Export the run's model (`models.load`: in float32, whatever it trained in) in the three formats,
    then load each as its users do, score the first `parity_images` test images (all with None) and
    compare with the evaluation's logits (`predictions`) through every site's calibration
    (`calibrations` and `thresholds`: one per site, NIH's first): a format past its `max_difference`
    fails the step, naming the image; else serving.json and parity.json."""
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
    files = write_formats(serving_model(keras_model, tta), int(info["image_size"]), paths)
    test = prediction_table.read(predictions, "test")
    reference = dict(zip(test["image_index"], prediction_table.logits(test)))
    batches = first_test_images(test_manifest, batch_size, parity_images)
    checked = check_parity(paths, reference, batches, {name: site["calibration"] for name, site in sites.items()},
                           max_difference)  # fmt: skip
    trained = json.loads(Path(summary).read_text())
    write_json(serving_info(run=run, model=model, info=info, tta=tta, sites=sites, files=files, trained=trained),
               serving)  # fmt: skip
    write_json({"run": run, "reference": "the evaluation's test logits (predictions.parquet), calibrated for each site",
                "formats": checked}, parity_report)  # fmt: skip
