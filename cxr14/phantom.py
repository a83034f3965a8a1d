"""Synthetic chest-like "phantom" radiographs with each finding planted as a visible pattern, for the
offline demo (`cxr14.steps.demo`), the app's example images, tests and benchmarks.

The images are chest-like grayscale pictures (body, lungs, heart, spine, ribs, diaphragm) in which
each finding is planted as a visible pattern: an enlarged heart shadow for Cardiomegaly, a blunted
costophrenic angle for Effusion, a bright round nodule, an apical lucency for Pneumothorax, and so
on; labels co-occur the way they do in the real data (Effusion with Cardiomegaly and Edema,
Infiltration with Effusion).
"""

from __future__ import annotations

import cv2
import numpy as np

from .constants import FINDINGS

# Demo prevalence per finding (far above the real one, so a small demo has positives for each).
PREVALENCE = {
    "Atelectasis": 0.12,
    "Cardiomegaly": 0.10,
    "Effusion": 0.13,
    "Infiltration": 0.14,
    "Mass": 0.08,
    "Nodule": 0.09,
    "Pneumonia": 0.07,
    "Pneumothorax": 0.08,
    "Consolidation": 0.07,
    "Edema": 0.06,
    "Emphysema": 0.06,
    "Fibrosis": 0.06,
    "Pleural_Thickening": 0.07,
    "Hernia": 0.05,
}


# P(second | first) boosts that give the real data's best-known co-occurrences.
CO_OCCURRENCE = {
    ("Cardiomegaly", "Effusion"): 0.5,
    ("Edema", "Effusion"): 0.5,
    ("Infiltration", "Effusion"): 0.3,
    ("Mass", "Nodule"): 0.25,
    ("Atelectasis", "Effusion"): 0.3,
}


# Findings the real BBox_List has boxes for, with the list's own spelling.
BOX_NAMES = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Effusion",
    "Infiltration": "Infiltrate",
    "Mass": "Mass",
    "Nodule": "Nodule",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}


def _ellipse(canvas, center, axes, value, angle=0.0, blur=0):
    mask = np.zeros(canvas.shape, np.float32)
    cv2.ellipse(
        mask, (int(center[0]), int(center[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)), angle, 0, 360, 1.0, -1
    )
    if blur:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    canvas += value * mask
    return mask


def _add(canvas, value, draw):
    """Draw with `draw(mask)` at 1.0 on an empty mask and add `value` times it (X-ray densities add up)."""
    mask = np.zeros(canvas.shape, np.float32)
    draw(mask)
    canvas += value * mask


def render(findings: set[str], rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """One phantom radiograph (uint8, size x size) and the box (x, y, w, h) of each localisable finding."""
    s = size / 256.0
    img = np.full((size, size), 0.08, np.float32)
    cx = size / 2 + rng.normal(0, 4 * s)
    _ellipse(img, (cx, 150 * s), (110 * s, 130 * s), 0.45, blur=6 * s)  # body
    lung_dark = -0.28 * (1.5 if "Emphysema" in findings else 1.0)
    lung_axes = (40 * s, 78 * s) if "Emphysema" not in findings else (46 * s, 90 * s)
    lungs = {side: (cx + side * 48 * s, 118 * s) for side in (-1, 1)}
    for center in lungs.values():
        _ellipse(img, center, lung_axes, lung_dark, blur=4 * s)
    for k in range(7):  # ribs
        y = int((62 + 20 * k) * s)
        for side in (-1, 1):
            _add(
                img,
                0.07,
                lambda m, y=y, side=side: cv2.ellipse(
                    m,
                    (int(cx + side * 30 * s), y),
                    (int(55 * s), int(14 * s)),
                    0,
                    180 if side < 0 else 270,
                    270 if side < 0 else 360,
                    1.0,
                    max(1, int(2 * s)),
                ),
            )
    _add(img, 0.15, lambda m: cv2.rectangle(m, (int(cx - 7 * s), int(20 * s)), (int(cx + 7 * s), size), 1.0, -1))
    heart_w = (46 if "Cardiomegaly" in findings else 26) * s
    heart = (cx + 12 * s, 165 * s)
    _ellipse(img, heart, (heart_w, 32 * s), 0.3, blur=3 * s)
    _ellipse(img, (cx, 214 * s), (100 * s, 20 * s), 0.22, blur=3 * s)  # diaphragm
    boxes = {}

    def box(name, x0, y0, x1, y1):
        boxes[name] = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))

    if "Cardiomegaly" in findings:
        box("Cardiomegaly", heart[0] - heart_w, heart[1] - 30 * s, heart[0] + heart_w, heart[1] + 30 * s)
    side = lambda: lungs[int(rng.choice([-1, 1]))]  # noqa: E731
    if "Effusion" in findings:  # blunted costophrenic angle: fluid fills the lung base
        lx, _ = side()
        _ellipse(img, (lx, 188 * s), (42 * s, 22 * s), 0.3, blur=3 * s)
        box("Effusion", lx - 42 * s, 166 * s, lx + 42 * s, 210 * s)
    if "Nodule" in findings:
        lx, ly = side()
        x, y = lx + rng.uniform(-20, 20) * s, ly + rng.uniform(-40, 30) * s
        _ellipse(img, (x, y), (6 * s, 6 * s), 0.45, blur=1 * s)
        box("Nodule", x - 7 * s, y - 7 * s, x + 7 * s, y + 7 * s)
    if "Mass" in findings:
        lx, ly = side()
        x, y = lx + rng.uniform(-12, 12) * s, ly + rng.uniform(-30, 20) * s
        _ellipse(img, (x, y), (17 * s, 15 * s), 0.38, blur=2 * s)
        box("Mass", x - 18 * s, y - 16 * s, x + 18 * s, y + 16 * s)
    if "Pneumothorax" in findings:  # apical lucency with no lung markings
        lx, ly = side()
        _ellipse(img, (lx, ly - 55 * s), (34 * s, 20 * s), -0.25)
        box("Pneumothorax", lx - 34 * s, ly - 75 * s, lx + 34 * s, ly - 35 * s)
    if "Atelectasis" in findings:  # plate-like band in the lower zone
        lx, ly = side()
        y = ly + 35 * s
        _add(
            img,
            0.4,
            lambda m: cv2.line(
                m, (int(lx - 30 * s), int(y)), (int(lx + 30 * s), int(y + 6 * s)), 1.0, max(2, int(5 * s))
            ),
        )
        box("Atelectasis", lx - 30 * s, y - 4 * s, lx + 30 * s, y + 10 * s)
    if "Infiltration" in findings:  # patchy texture over one lung
        lx, ly = side()
        patch = (rng.random((size, size)) > 0.9).astype(np.float32)
        patch = cv2.GaussianBlur(patch, (0, 0), 2.5 * s)
        mask = np.zeros_like(img)
        _ellipse(mask, (lx, ly), (36 * s, 60 * s), 1.0)
        img += 0.9 * patch * mask
        box("Infiltration", lx - 36 * s, ly - 60 * s, lx + 36 * s, ly + 60 * s)
    if "Pneumonia" in findings:  # dense fuzzy mid-zone opacity
        lx, ly = side()
        _ellipse(img, (lx, ly + 5 * s), (26 * s, 22 * s), 0.3, blur=7 * s)
        box("Pneumonia", lx - 30 * s, ly - 20 * s, lx + 30 * s, ly + 30 * s)
    if "Consolidation" in findings:  # homogeneous lobe with a sharp edge
        lx, ly = side()
        _add(
            img,
            0.25,
            lambda m: cv2.rectangle(
                m, (int(lx - 30 * s), int(ly + 10 * s)), (int(lx + 30 * s), int(ly + 45 * s)), 1.0, -1
            ),
        )
    if "Edema" in findings:  # bilateral perihilar haze
        for lx, ly in lungs.values():
            _ellipse(img, ((lx + cx) / 2, ly + 10 * s), (25 * s, 35 * s), 0.2, blur=8 * s)
    if "Fibrosis" in findings:  # reticular lines in the upper zones
        for lx, ly in lungs.values():
            for k in range(-3, 4):
                x = int(lx + 8 * k * s)
                _add(
                    img,
                    0.15,
                    lambda m, x=x, ly=ly: cv2.line(
                        m, (x, int(ly - 60 * s)), (x + int(6 * s), int(ly - 15 * s)), 1.0, max(1, int(s))
                    ),
                )
    if "Pleural_Thickening" in findings:  # bright rim along the lateral chest wall
        for side_sign in (-1, 1):
            x = int(cx + side_sign * 88 * s)
            _add(img, 0.3, lambda m, x=x: cv2.line(m, (x, int(55 * s)), (x, int(180 * s)), 1.0, max(2, int(4 * s))))
    if "Hernia" in findings:  # gas bubble above the diaphragm behind the heart
        _ellipse(img, (cx - 10 * s, 200 * s), (20 * s, 12 * s), -0.3, blur=1 * s)
    img += rng.normal(0, 0.025, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.7 * s)
    return np.clip(img * 255.0, 0, 255).astype(np.uint8), boxes


def draw_labels(rng: np.random.Generator, prevalence: dict = PREVALENCE) -> set[str]:
    found = {f for f in FINDINGS if rng.random() < prevalence[f]}
    for (first, second), p in CO_OCCURRENCE.items():
        if first in found and rng.random() < p:
            found.add(second)
    return found
