"""Decode any chest X-ray PNG/JPEG to one 8-bit channel and resize it: the one preprocessing path
shared by the shard stage, the batch predictor and the web app, so the same pixels give the same numbers."""

from __future__ import annotations

import cv2
import numpy as np


class BadImage(ValueError):
    """The file is not a decodable image; the message says why."""


def to_gray8(img: np.ndarray) -> np.ndarray:
    """Any decoded array (gray, BGR, BGRA; 8 or 16 bit, or float) to one 8-bit channel.

    Colour is converted with OpenCV's luminance weights and alpha is dropped (NIH's RGBA PNGs are
    opaque). Deeper images are stretched linearly from their own minimum to maximum, since 12- and
    16-bit radiographs rarely use the full range of their type.
    """
    if img.ndim == 3:
        code = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(img.shape[2])
        if img.shape[2] not in (1, 3, 4):
            raise BadImage(f"unsupported channel count {img.shape[2]}")
        img = img[..., 0] if code is None else cv2.cvtColor(img, code)
    if img.ndim != 2:
        raise BadImage(f"unsupported image shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def decode(data: bytes) -> np.ndarray:
    """Encoded PNG/JPEG bytes to a grayscale uint8 array (raises BadImage)."""
    if not data:
        raise BadImage("empty file")
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadImage("not a decodable image (truncated or corrupt)")
    return to_gray8(img)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation to size x size (NIH images are square; others are stretched).

    Where the image shrinks by a whole factor k >= 2 to a side still >= size (1024 -> 256 on the
    way to 224), that step goes first: OpenCV averages whole k x k blocks ~4x faster than it
    resamples a fractional area, and the result differs from one direct step by under one gray
    level on average. Every caller (shards, predict, app) goes through here, so they agree.
    """
    if img.shape == (size, size):
        return img
    h, w = img.shape[:2]
    k = min(h, w) // size
    if k >= 2 and h % k == 0 and w % k == 0:
        img = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if img.shape[:2] == (size, size):
            return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def load(path, size: int) -> np.ndarray:
    """A file to the (size, size) uint8 array the model sees."""
    with open(path, "rb") as fh:
        return resize(decode(fh.read()), size)


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes with a fixed compression level (so the same pixels give the same bytes)."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise BadImage("PNG encoding failed")
    return buf.tobytes()
