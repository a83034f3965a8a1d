"""Inference on single files, shared by the batch predictor and the web app: read PNG, JPEG or
DICOM into the same 8-bit grayscale the shard stage writes, then predict and explain."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .constants import FINDINGS
from .images import BadImage, decode, resize, to_gray8
from .runs import CALIBRATION, MODEL, RUN, THRESHOLDS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DEFAULT_MAX_MB = 64


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def read_dicom(data: bytes) -> np.ndarray:
    """A DICOM image to 8-bit grayscale by the rule radiology viewers follow (DICOM PS3.3 C.11):

    1. the modality LUT (RescaleSlope and RescaleIntercept, or a Modality LUT Sequence);
    2. the header's VOI LUT Sequence, else its window (WindowCenter, WindowWidth, VOILUTFunction),
       else nothing;
    3. a linear map onto 0-255 of the range those steps can give: the VOI LUT's entries, or the
       stored range (BitsStored, signed or not) through the rescale. It is never the image's own
       minimum and maximum, so an 8-bit image stored without a window keeps its pixels exactly;
    4. MONOCHROME1 (high values dark) inverted, so bone is bright as in the NIH PNGs.

    Colour images are converted to gray as PNGs are; a multi-frame file gives its first frame.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        pixels = ds.pixel_array
    except Exception as exc:
        raise BadImage(f"unreadable DICOM ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[0]  # a multi-frame file: the first frame
    if pixels.ndim == 3:
        return to_gray8(np.ascontiguousarray(pixels[..., ::-1]))  # pydicom gives RGB; OpenCV takes BGR
    values = np.asarray(apply_modality_lut(pixels, ds), np.float64)
    lo, hi = _dicom_output_range(ds, pixels)
    if "VOILUTSequence" in ds:
        values = np.asarray(apply_voi(values, ds), np.float64)
        lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_windowing(values, ds)  # onto the same output range as the rescaled stored values
    gray = np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return 255 - gray if ds.get("PhotometricInterpretation", "") == "MONOCHROME1" else gray


def _dicom_output_range(ds, pixels: np.ndarray) -> tuple[float, float]:
    """The values a DICOM image's modality LUT can give (the range pydicom's windowing maps onto)."""
    if "ModalityLUTSequence" in ds:
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    lo, hi = (0, 2**bits - 1) if ds.get("PixelRepresentation", 0) == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return float(lo), float(hi)


def read_gray(data: bytes, max_mb: float = DEFAULT_MAX_MB) -> np.ndarray:
    """Any supported file's bytes to full-resolution grayscale uint8 (raises BadImage)."""
    if not data:
        raise BadImage("empty file")
    if len(data) > max_mb * 2**20:
        raise BadImage(f"file is {len(data) / 2**20:.1f} MB, over the {max_mb:g} MB limit")
    return read_dicom(data) if _is_dicom(data) else decode(data)


# Test-time augmentation: small anatomy-safe views, (shift x, shift y) as fractions of the side and a
# zoom about the centre; no flips (the heart is on the left). The identity view is always first.
TTA_VIEWS = ((0.0, 0.0, 1.0), (-0.03, 0.0, 1.0), (0.03, 0.0, 1.0), (0.0, 0.0, 1.05), (0.0, 0.0, 0.95))


def tta_views(x) -> list:
    """The TTA_VIEWS of a (B, S, S, C) batch (bilinear, edges extended)."""
    import keras

    size = x.shape[1]
    centre = (size - 1) / 2
    views = []
    for dx, dy, scale in TTA_VIEWS:
        if (dx, dy, scale) == (0.0, 0.0, 1.0):
            views.append(x)
            continue
        # keras maps each output pixel (u, v) to the input pixel (a0 u + a2, b1 v + b2).
        shift = centre * (1 - 1 / scale)
        transform = np.array([1 / scale, 0, shift - dx * size, 0, 1 / scale, shift - dy * size, 0, 0], np.float32)
        views.append(keras.ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="nearest"))
    return views


def view_scores(model, x) -> np.ndarray:
    """(V, B, 14) scores of each of the TTA_VIEWS of a (B, S, S, C) batch, in one forward pass."""
    import keras

    views = tta_views(x)
    scores = np.asarray(model.predict_on_batch(keras.ops.concatenate(views, axis=0)), np.float64)
    return scores.reshape(len(views), -1, scores.shape[-1])


def tta_scores(model, x) -> tuple[np.ndarray, np.ndarray]:
    """(TTA mean, plain image's) (B, 14) scores of a batch, from one forward pass over its views."""
    views = view_scores(model, x)
    return views.mean(axis=0).astype(np.float32), views[0].astype(np.float32)


def forward(model, x, tta: bool) -> np.ndarray:
    """(B, S, S, C) model inputs to (B, 14) scores; with `tta` the mean over TTA_VIEWS. Evaluation,
    `predict` and the app all score through here, so they agree."""
    if not tta:
        return np.asarray(model.predict_on_batch(x), np.float32)
    return tta_scores(model, x)[0]


def load_thresholds(path) -> dict[str, float] | None:
    """The val-chosen max-F1 operating points written by the evaluation stage, when present."""
    if path is None or not Path(path).is_file():
        return None
    return {f: float(v) for f, v in json.loads(Path(path).read_text())["max_f1"].items()}


def load_calibration(path, model_path) -> dict | None:
    """A run's calibration (from the calibrate step), checked to belong to `model_path`."""
    from .calibrate import check_model

    if path is None or not Path(path).is_file():
        return None
    calibration = json.loads(Path(path).read_text())
    check_model(calibration, model_path)
    return calibration


class Predictor:
    """A model loaded once, with its calibration and operating points; predicts and explains
    grayscale images. Without a calibration the scores are the model's own (and no TTA)."""

    def __init__(self, model_path, thresholds_path=None, calibration_path=None):
        from . import models

        self.model = models.load(model_path)
        self.info = models.info(self.model)
        self.size = int(self.info["image_size"])
        self.thresholds = load_thresholds(thresholds_path)
        self.calibration = load_calibration(calibration_path, model_path)
        self.tta = bool(self.calibration and self.calibration["tta"])

    @property
    def base_rate(self) -> dict[str, float] | None:
        """Each finding's prevalence in the training data, when the calibration records it."""
        return self.calibration["base_rate"] if self.calibration else None

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """Full-resolution grayscale to the model's input, exactly as the shard stage does."""
        return resize(gray, self.size).astype(np.float32)[..., None]

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) raw model scores (TTA'd as in the evaluation)."""
        return forward(self.model, np.asarray(batch, np.float32), self.tta)

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        """Raw scores to calibrated probabilities (the scores themselves without a calibration)."""
        from .calibrate import apply

        return apply(self.calibration, scores)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) calibrated probabilities."""
        return self.calibrated(self.scores(batch))

    def above(self, probs: np.ndarray) -> list[str]:
        """Findings at or above their operating point (0.5 where the evaluation chose none)."""
        cut = self.thresholds or {}
        return [f for f, p in zip(FINDINGS, probs) if p >= cut.get(f, 0.5)]

    def explain(self, prepared: np.ndarray, finding: str, display_size: int | None = None) -> np.ndarray:
        """Grad-CAM overlay (RGB uint8) of one finding on one prepared image, at the model's input
        size or enlarged to `display_size` for viewing."""
        import cv2

        from .gradcam import gradcam, overlay

        cam, _ = gradcam(self.model, prepared[None], FINDINGS.index(finding))
        gray, cam = prepared[..., 0], cam[0]
        if display_size and display_size != gray.shape[0]:
            shape = (display_size, display_size)
            gray = cv2.resize(gray, shape, interpolation=cv2.INTER_LINEAR)
            cam = cv2.resize(cam, shape, interpolation=cv2.INTER_LINEAR)
        return overlay(gray, cam)


class NoTrainedRun(LookupError):
    """Nothing to serve: no trained run on disk, or not the one asked for; the message says which."""


def on_disk() -> dict[str, tuple[str, str | None, str | None]]:
    """The trained runs with a saved model under results/runs/ (from the working directory):
    name -> (model, thresholds or None, calibration or None)."""
    found = {}
    for model in sorted(Path().glob(MODEL.format(run="*"))):
        run = model.parts[-3]
        sidecars = [Path(pattern.format(run=run)) for pattern in (THRESHOLDS, CALIBRATION)]
        found[run] = (str(model), *(str(p) if p.exists() else None for p in sidecars))
    return found


def served(
    run: str | None, model: str | None, thresholds: str | None, calibration: str | None = None
) -> tuple[dict[str, tuple], str]:
    """What `cxr14 app` and `cxr14 predict` serve: a model file, or the trained runs on disk
    (starting with `run`); (name -> (model, thresholds, calibration), the first name)."""
    if model:
        return {"model": (model, thresholds, calibration)}, "model"
    runs = on_disk()
    if not runs:
        raise NoTrainedRun(f"no trained run under {RUN.format(run='*')}: run the workflow first, or give --model")
    first = run or next(iter(runs))
    if first not in runs:
        raise NoTrainedRun(
            f"run {first!r} has no trained model ({MODEL.format(run=first)}); trained runs: "
            f"{', '.join(runs)} (an ensemble has no model of its own: use one of its members)"
        )
    if thresholds or calibration:
        own = runs[first]
        runs[first] = (own[0], thresholds or own[1], calibration or own[2])
    return runs, first
