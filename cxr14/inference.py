"""Inference on single files, shared by the batch predictor and the web app: the images `images.read_gray`
reads (as the shard stage does), predicted and explained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import FINDINGS, NIH
from .images import resize
from .paths import CALIBRATION, FEATURES, MODEL, OPERATING_POINTS, RUN, dataset_of, on

# Test-time augmentation: small anatomy-safe views, (shift x, shift y) as fractions of the side and a
# zoom about the centre; no flips (the heart is on the left). The identity view is always first.
TTA_VIEWS = ((0.0, 0.0, 1.0), (-0.03, 0.0, 1.0), (0.03, 0.0, 1.0), (0.0, 0.0, 1.05), (0.0, 0.0, 0.95))


def axis_resampling(size: int, shift: float, scale: float) -> np.ndarray:
    """The (size, size) matrix that resamples one image axis, shifted by `shift` of the side and zoomed
    by `scale` about the centre: bilinear, edges extended, as keras's affine transform does (to float
    rounding). Kept as matrices, a view is two matrix products, which every export format takes."""
    centre = (size - 1) / 2
    source = np.clip(np.arange(size) / scale + centre * (1 - 1 / scale) - shift * size, 0, size - 1)
    low = np.floor(source).astype(int)
    weight = source - low
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.arange(size), low), 1 - weight)
    np.add.at(matrix, (np.arange(size), np.minimum(low + 1, size - 1)), weight)
    return matrix.astype(np.float32)


def tta_views(x) -> list:
    """The TTA_VIEWS of a (B, S, S, C) batch (an array, a tensor or a Keras model's input)."""
    import keras

    size = x.shape[1]
    views = []
    for dx, dy, scale in TTA_VIEWS:
        if (dx, dy, scale) == (0.0, 0.0, 1.0):
            views.append(x)
            continue
        rows, cols = axis_resampling(size, dy, scale), axis_resampling(size, dx, scale)
        # rows @ image @ cols.T per image and channel, as two batched matrix products (which ONNX Runtime
        # runs several times faster than the Einsum an einsum converts to).
        planes = keras.ops.transpose(x, (0, 3, 1, 2))
        resampled = keras.ops.matmul(keras.ops.matmul(rows, planes), cols.T)
        views.append(keras.ops.transpose(resampled, (0, 2, 3, 1)))
    return views


def view_scores(model, x) -> np.ndarray:
    """(V, B, 14) logits of each of the TTA_VIEWS of a (B, S, S, C) batch, in one forward pass
    (`model`: a `models.logits_model`)."""
    import keras

    views = tta_views(x)
    scores = np.asarray(model.predict_on_batch(keras.ops.concatenate(views, axis=0)), np.float64)
    return scores.reshape(len(views), -1, scores.shape[-1])


def tta_scores(model, x) -> tuple[np.ndarray, np.ndarray]:
    """(TTA mean, plain image's) (B, 14) logits of a batch, from one forward pass over its views: the
    mean is taken over logits, the space every calibration maps."""
    views = view_scores(model, x)
    return views.mean(axis=0).astype(np.float32), views[0].astype(np.float32)


def forward(model, x, tta: bool) -> np.ndarray:
    """(B, S, S, C) model inputs to (B, 14) logits (`model`: a `models.logits_model`); with `tta` the
    mean over TTA_VIEWS. Evaluation, `predict` and the app all score through here, so they agree."""
    if not tta:
        return np.asarray(model.predict_on_batch(x), np.float32)
    return tta_scores(model, x)[0]


def forward_embedded(model, x, tta: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(B, S, S, C) model inputs to ((B, 14) logits as `forward` gives them, the plain image's logits
    under `tta` (else None), (B, D) embeddings of the plain image), from one forward pass of `model` (a
    `models.embedding_model`)."""
    import keras

    if not tta:
        logits, embedding = model.predict_on_batch(x)
        return np.asarray(logits, np.float32), None, np.asarray(embedding, np.float32)
    logits, embedding = model.predict_on_batch(keras.ops.concatenate(tta_views(x), axis=0))
    views = np.asarray(logits, np.float64).reshape(len(TTA_VIEWS), len(x), -1)
    plain = np.asarray(embedding, np.float32)[: len(x)]
    return views.mean(axis=0).astype(np.float32), views[0].astype(np.float32), plain


def load_thresholds(path) -> dict[str, float] | None:
    """The val-chosen max-F1 operating points written by the calibrate step, when present."""
    if path is None or not Path(path).is_file():
        return None
    return {f: float(v) for f, v in json.loads(Path(path).read_text())["max_f1"].items()}


def load_calibration(path, model_path) -> dict | None:
    """A run's calibration (from the calibrate step), checked to belong to `model_path`."""
    from .calibration import check_model

    if path is None or not Path(path).is_file():
        return None
    calibration = json.loads(Path(path).read_text())
    check_model(calibration, model_path)
    return calibration


@dataclass(frozen=True)
class Site:
    """Where a prediction's numbers come from: the calibration and the operating points fitted on one
    collection's val split (`nih`, or a split collection a run was calibrated on); neither without one."""

    name: str
    calibration: dict | None
    thresholds: dict[str, float] | None

    def describe(self) -> str:
        """In plain words, which calibration and thresholds are in use."""
        if self.calibration is None:
            return "the model's own uncalibrated probabilities, threshold 0.5 (no calibration.json)"
        fitted = f"calibrated on {self.name}'s validation split ({self.calibration['method']} scaling)"
        cut = f"operating points chosen on {self.name}'s validation split (max F1)" if self.thresholds else "0.5"
        return f"site {self.name}: probabilities {fitted}, {cut}"


UNCALIBRATED = Site("none", None, None)


class UnknownSite(LookupError):
    """A site the model has no calibration for; the message names those it has."""


class NoTrainedRun(LookupError):
    """Nothing to serve: no trained run on disk, not the one asked for, or an exported model without
    its own serving.json; the message says which (the command prints it, no traceback)."""


SERVING_INPUT = "image"  # the names in every format the export step writes
SERVING_LOGITS, SERVING_OUTPUT = "logits", "findings"  # (B, 14) logits and the model's own probabilities
SERVING_PLAIN, SERVING_EMBEDDING = "plain_logits", "embedding"  # the plain image's (B, 14) logits, (B, D) features
SERVING = "serving.json"  # what the export step writes beside its models


def onnx_session(path, threads: int | None = None):
    """An `onnxruntime.InferenceSession` of an ONNX model on the CPU (no TensorFlow needed)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # No busy-waiting between runs: beside TensorFlow's input pipeline (the score step reads its shards
    # with tf.data) spinning threads take the cores the other needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_onnx(path, threads: int | None = None):
    """(B, S, S, 1) pixels -> {`logits`, `findings`: (B, 14), ...} through `onnx_session`, every output
    in one run; the export step checks its ONNX models with this."""
    session = onnx_session(path, threads)
    names = [output.name for output in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(names, {SERVING_INPUT: np.asarray(x, np.float32)})))


def exported(model_path) -> dict:
    """The serving.json beside an exported model, checked to describe that very file."""
    from .files import sha256_file

    path = Path(model_path).with_name(SERVING)
    if not path.is_file():
        raise NoTrainedRun(f"{model_path}: no {SERVING} beside it; use the export step's folder as it is")
    serving = json.loads(path.read_text())
    want = serving["files"]["onnx"]["sha256"]
    if Path(model_path).name != serving["files"]["onnx"]["path"] or sha256_file(model_path) != want:
        raise NoTrainedRun(f"{path} describes another model than {model_path} (sha256 {want[:12]}...)")
    return serving


class Predictor:
    """A model loaded once, with its calibration and operating points per site; predicts and explains
    grayscale images. Without a calibration the probabilities are the model's own (and no TTA).

    A Keras model (a run's model.keras, `sites`: name -> (calibration.json, thresholds.json)) or the
    export step's ONNX model: that holds the TTA views itself and brings every site's calibration and
    operating points in the serving.json beside it; it scores through onnxruntime alone, and cannot
    explain (Grad-CAM needs the Keras model's gradients)."""

    UNLIKE = "unlike the images this model was trained and validated on"

    def __init__(self, model_path, sites: dict[str, tuple] | None = None, reference=None):
        """`reference`: the run's NIH features file (the score step's), whose out-of-distribution
        reference flags an image unlike NIH's (a Keras model only: the exported ONNX graph outputs an embedding
        too, but the serving.json beside it carries no reference, so an ONNX model's images are not checked)."""
        self.onnx = Path(model_path).suffix.lower() == ".onnx"
        self.reference = None
        if self.onnx:
            if sites:
                raise NoTrainedRun(f"{model_path}: an ONNX model's operating points and calibration are its {SERVING}")
            serving = exported(model_path)
            self.model, self.session = None, load_onnx(model_path)
            self.info = serving["model"]
            self.sites = {name: Site(name, given["calibration"], given["operating_points"])
                          for name, given in serving["sites"].items()}  # fmt: skip
            self.tta = bool(serving["tta"])
        else:
            from . import models
            from .ood import load_reference

            self.model = models.load(model_path)
            self.embedding_model = models.embedding_model(self.model)
            self.reference = load_reference(reference) if reference and Path(reference).is_file() else None
            self.info = models.info(self.model)
            self.sites = {
                name: Site(name, load_calibration(calibration, model_path), load_thresholds(thresholds))
                for name, (calibration, thresholds) in (sites or {}).items()
            }
            self.tta = any(s.calibration and s.calibration["tta"] for s in self.sites.values())
        self.size = int(self.info["image_size"])

    @property
    def default_site(self) -> str | None:
        """NIH's when the model has it (the collection it was validated on), else the first."""
        return NIH if NIH in self.sites else next(iter(self.sites), None)

    def site(self, name: str | None = None) -> Site:
        """The calibration and operating points of site `name` (the default site for None)."""
        name = name or self.default_site
        if name is None:
            return UNCALIBRATED
        if name not in self.sites:
            known = ", ".join(self.sites) or "none (the model has no calibration)"
            raise UnknownSite(f"no calibration for site {name!r}; this model's sites: {known}")
        return self.sites[name]

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """Full-resolution grayscale to the model's input, exactly as the shard stage does."""
        return resize(gray, self.size).astype(np.float32)[..., None]

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) logits (TTA'd as in the evaluation)."""
        return self._forward(batch)[0]

    def scored(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, S, S, 1) prepared images to ((B, 14) logits, each image's distance from the NIH training
        embeddings, None without a reference), from one forward pass."""
        logits, embedding = self._forward(batch)
        if embedding is None or self.reference is None:
            return logits, None
        from .ood import mahalanobis

        return logits, mahalanobis(self.reference, embedding)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, the plain images' embeddings; None from an ONNX model's serving path)."""
        if self.onnx:
            return np.asarray(self.session(batch)[SERVING_LOGITS], np.float32), None
        logits, _, embedding = forward_embedded(self.embedding_model, np.asarray(batch, np.float32), self.tta)
        return logits, embedding

    def unlike(self, distance: float | None) -> bool | None:
        """Whether an image's distance puts it past the reference's threshold (None: not checked)."""
        return None if distance is None or self.reference is None else bool(distance > self.reference["threshold"])

    def calibrated(self, logits: np.ndarray, site: str | None = None) -> np.ndarray:
        """Logits to the site's calibrated probabilities (the model's own without a calibration)."""
        from .calibration import apply

        return apply(self.site(site).calibration, logits)

    def predict(self, batch: np.ndarray, site: str | None = None) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) calibrated probabilities."""
        return self.calibrated(self.scores(batch), site)

    def above(self, probs: np.ndarray, site: str | None = None) -> list[str]:
        """Findings at or above the site's operating point (0.5 where none was chosen)."""
        cut = self.site(site).thresholds or {}
        return [f for f, p in zip(FINDINGS, probs) if p >= cut.get(f, 0.5)]

    def base_rate(self, site: str | None = None) -> dict[str, float] | None:
        """Each finding's prevalence in the training data, when the calibration records it."""
        calibration = self.site(site).calibration
        return calibration["base_rate"] if calibration else None

    def explain(self, prepared: np.ndarray, finding: str, display_size: int | None = None) -> np.ndarray:
        """Grad-CAM overlay (RGB uint8) of one finding on one prepared image, at the model's input
        size or enlarged to `display_size` for viewing."""
        import cv2

        from .gradcam import gradcam, overlay

        if self.onnx:
            raise ValueError("Grad-CAM needs the Keras model (model.keras), not its ONNX export")

        cam, _ = gradcam(self.model, prepared[None], FINDINGS.index(finding))
        gray, cam = prepared[..., 0], cam[0]
        if display_size and display_size != gray.shape[0]:
            shape = (display_size, display_size)
            gray = cv2.resize(gray, shape, interpolation=cv2.INTER_LINEAR)
            cam = cv2.resize(cam, shape, interpolation=cv2.INTER_LINEAR)
        return overlay(gray, cam)


def nih_first(sites) -> list[str]:
    """Site names NIH's first (the default), the others in name order."""
    return sorted(sites, key=lambda name: (name != NIH, name))


def sites_on_disk(run: str) -> dict[str, tuple[str | None, str | None]]:
    """A run's sites under results/runs/<run>/datasets/ (from the working directory), NIH first:
    name -> (calibration.json, thresholds.json), either None where the step has not written it."""
    patterns = (CALIBRATION, OPERATING_POINTS)
    names = {dataset_of(path) for pattern in patterns for path in Path().glob(pattern.format(run=run, dataset="*"))}
    found = {}
    for name in nih_first(names):
        files = [Path(pattern.format(run=run, dataset=name)) for pattern in patterns]
        found[name] = tuple(str(f) if f.exists() else None for f in files)
    return found


def on_disk() -> dict[str, tuple[str, dict, str | None]]:
    """The trained runs with a saved model under results/runs/ (from the working directory):
    name -> (model, its sites as `sites_on_disk` gives them, its NIH features file or None)."""
    found = {}
    for model in sorted(Path().glob(MODEL.format(run="*"))):
        run = model.parts[-3]
        features = Path(on(FEATURES, NIH).format(run=run))
        found[run] = (str(model), sites_on_disk(run), str(features) if features.is_file() else None)
    return found


def served(
    run: str | None, model: str | None, thresholds: str | None = None, calibration: str | None = None
) -> tuple[dict[str, tuple], str]:
    """What `cxr14 app` and `cxr14 predict` serve: a model file (with the `calibration` and
    `thresholds` given, as the site the calibration names), or the trained runs on disk (starting
    with `run`); (name -> (model, sites), the first name)."""
    given = {}
    if calibration or thresholds:
        name = json.loads(Path(calibration).read_text()).get("site", "given") if calibration else "given"
        given = {name: (calibration, thresholds)}
    if model:
        return {"model": (model, given)}, "model"
    runs = on_disk()
    if not runs:
        raise NoTrainedRun(f"no trained run under {RUN.format(run='*')}: run the workflow first, or give --model")
    first = run or next(iter(runs))
    if first not in runs:
        raise NoTrainedRun(
            f"run {first!r} has no trained model ({MODEL.format(run=first)}); trained runs: "
            f"{', '.join(runs)} (an ensemble has no model of its own: use one of its members)"
        )
    runs[first] = (runs[first][0], given | runs[first][1], runs[first][2]) if given else runs[first]
    return runs, first
