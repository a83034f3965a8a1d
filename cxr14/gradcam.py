"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map of any cxr14 backbone,
and the localisation scores against boxes. The evaluation report and the web app both call this."""

from __future__ import annotations

import cv2
import numpy as np


def _forward(model, x):
    """Run a cxr14 model layer by layer, returning (backbone feature map, logits).

    The backbone is a nested model, whose inner tensors a loaded model does not expose, so the
    outer chain (info, gray_to_rgb, scaling, backbone, pool, dropout, head) is replayed instead.
    The head is applied without its sigmoid: Grad-CAM differentiates the class score (logit),
    since a saturated probability has no gradient.
    """
    import tensorflow as tf

    h, features = x, None
    for layer in model.layers[1:]:
        if layer.name == "findings":
            h = tf.matmul(tf.cast(h, layer.kernel.dtype), layer.kernel) + layer.bias
        elif layer.name == "gray_to_rgb":
            h = layer([h, h, h])
        else:
            h = layer(h, training=False)
        if layer.name == "backbone":
            features = h
    return features, h


def gradcam(model, images: np.ndarray, class_index: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, S, S) in [0, 1] at the input's size, and the model's probabilities (B, 14).

    `images`: (B, S, S, 1) float32 in 0..255; `class_index`: one finding index or one per image.
    """
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    classes = np.broadcast_to(np.asarray(class_index), (len(images),))
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        features, logits = _forward(model, x)
        target = tf.gather(logits, classes, axis=1, batch_dims=1)
    grads = tape.gradient(target, features)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1)).numpy()
    size = images.shape[1]
    out = np.zeros((len(images), size, size), np.float32)
    for k, cam in enumerate(cams):
        cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
        top = cam.max()
        out[k] = cam / top if top > 0 else cam
    return out, np.asarray(tf.sigmoid(tf.cast(logits, tf.float32)), np.float32)


def overlay(gray: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 picture: the X-ray in gray with the heatmap in the 'jet' colours on top."""
    gray = np.asarray(gray, np.float32).squeeze()
    base = cv2.cvtColor(np.clip(gray, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    if cam.shape != gray.shape:
        cam = cv2.resize(cam, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)[..., ::-1]
    mix = (1 - alpha * cam[..., None]) * base + alpha * cam[..., None] * heat
    return np.clip(mix, 0, 255).astype(np.uint8)


def box_to_pixels(box_1024, size: int) -> tuple[int, int, int, int]:
    """A (x, y, w, h) box in NIH 1024-px coordinates as (x0, y0, x1, y1) pixels at `size`."""
    x, y, w, h = (float(v) * size / 1024.0 for v in box_1024)
    x0, y0 = int(np.floor(max(x, 0))), int(np.floor(max(y, 0)))
    x1, y1 = int(np.ceil(min(x + w, size))), int(np.ceil(min(y + h, size)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def pointing_hit(cam: np.ndarray, box_px) -> bool:
    """Pointing game: is the heatmap's maximum inside the box? (A flat map points nowhere.)"""
    if cam.max() <= max(cam.min(), 0):
        return False
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    x0, y0, x1, y1 = box_px
    return bool(x0 <= x < x1 and y0 <= y < y1)


def iou(cam: np.ndarray, box_px, threshold: float = 0.5) -> float:
    """IoU of the heatmap thresholded at `threshold` x its maximum with the box."""
    mask = cam >= threshold * cam.max() if cam.max() > 0 else np.zeros_like(cam, bool)
    box = np.zeros_like(mask)
    x0, y0, x1, y1 = box_px
    box[y0:y1, x0:x1] = True
    union = np.logical_or(mask, box).sum()
    return float(np.logical_and(mask, box).sum() / union) if union else 0.0
