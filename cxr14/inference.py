"""Inference on single files, shared by the batch predictor and the web app: read PNG, JPEG or
DICOM into the same 8-bit grayscale the shard stage writes, then predict and explain."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .constants import FINDINGS
from .images import BadImage, decode, resize, to_gray8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DEFAULT_MAX_MB = 64


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def read_dicom(data: bytes) -> np.ndarray:
    """DICOM pixels with the modality and VOI LUT (window) of the header applied; MONOCHROME1,
    where high values are dark, is inverted so bone is bright as in the NIH PNGs."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        pixels = ds.pixel_array
    except Exception as exc:
        raise BadImage(f"unreadable DICOM ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[0]  # a multi-frame file: the first frame
    if pixels.ndim == 2:
        pixels = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            pixels = pixels.max() - pixels
    return to_gray8(pixels)


def read_gray(data: bytes, max_mb: float = DEFAULT_MAX_MB) -> np.ndarray:
    """Any supported file's bytes to full-resolution grayscale uint8 (raises BadImage)."""
    if not data:
        raise BadImage("empty file")
    if len(data) > max_mb * 2**20:
        raise BadImage(f"file is {len(data) / 2**20:.1f} MB, over the {max_mb:g} MB limit")
    return read_dicom(data) if _is_dicom(data) else decode(data)


def load_thresholds(path) -> dict[str, float] | None:
    """The val-chosen max-F1 operating points written by the evaluation stage, when present."""
    if path is None or not Path(path).is_file():
        return None
    return {f: float(v) for f, v in json.loads(Path(path).read_text())["max_f1"].items()}


class Predictor:
    """A model loaded once, with its operating points; predicts and explains grayscale images."""

    def __init__(self, model_path, thresholds_path=None):
        from . import models

        self.model = models.load(model_path)
        self.info = models.info(self.model)
        self.size = int(self.info["image_size"])
        self.thresholds = load_thresholds(thresholds_path)

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """Full-resolution grayscale to the model's input, exactly as the shard stage does."""
        return resize(gray, self.size).astype(np.float32)[..., None]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) probabilities."""
        return np.asarray(self.model.predict_on_batch(np.asarray(batch, np.float32)), np.float32)

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
