"""What a run's network looked at on its test images: Grad-CAM galleries of its most confident true
positives, false positives and false negatives, and the pointing game and IoU against the NIH boxes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import models, prediction_table
from .constants import FINDINGS
from .data import Shards, dataset
from .gradcam import box_to_pixels, gradcam, iou, pointing_hit

BOX_LABELS = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently
BOX_COLUMNS = ["image_index", "finding", "x", "y", "w", "h"]


def read_boxes(path) -> pd.DataFrame:
    """BBox_List_2017.csv as image_index, finding (our spelling), x, y, w, h (1024-px space)."""
    raw = pd.read_csv(path, header=None, skiprows=1, usecols=range(6), names=BOX_COLUMNS)
    raw["finding"] = raw.finding.replace(BOX_LABELS)
    unknown = set(raw.finding) - set(FINDINGS)
    if unknown:
        raise ValueError(f"{path}: unknown finding(s) {sorted(unknown)}")
    return raw


def collect_images(shards, names: set[str], batch_size: int) -> dict[str, np.ndarray]:
    """The (S, S, 1) pixels of the named images, in one pass over the shards."""
    found = {}
    for x, _, meta in dataset(shards, batch_size, with_metadata=True):
        for k, name in enumerate(s.decode() for s in meta["image_index"].numpy()):
            if name in names:
                found[name] = x[k].numpy()
    return found


def gallery_picks(test: pd.DataFrame, thresholds: dict, k: int) -> list[tuple[str, str, str, float]]:
    """Per finding, the k most confident true positives, false positives and false negatives
    at the val-chosen max-F1 threshold: (finding, kind, image_index, probability)."""
    picks = []
    for name in FINDINGS:
        t = thresholds[name]["max_f1"]["threshold"]
        column = prediction_table.score(name)
        y, p = test[prediction_table.label(name)], test[column]
        for kind, mask, ascending in (
            ("TP", (y == 1) & (p >= t), False),
            ("FP", (y == 0) & (p >= t), False),
            ("FN", (y == 1) & (p < t), True),
        ):
            top = test[mask].sort_values(column, ascending=ascending).head(k)
            picks += [(name, kind, image, float(prob)) for image, prob in zip(top.image_index, top[column])]
    return picks


def gradcams(model, images: dict, pairs: list[tuple[str, str]], chunk: int = 32):
    """(pixels, Grad-CAM map) for each (image_index, finding), computed `chunk` images at a time."""
    for start in range(0, len(pairs), chunk):
        part = pairs[start : start + chunk]
        x = np.stack([images[name] for name, _ in part])
        cams, _ = gradcam(model, x, np.array([FINDINGS.index(f) for _, f in part]))
        yield from zip(x, cams)


def localisation(model, boxes: pd.DataFrame, images: dict, size: int) -> tuple[dict, list]:
    """Pointing-game hit rate and mean IoU per finding on the test images with boxes."""
    boxes = boxes[boxes.image_index.isin(images)].reset_index(drop=True)
    per_finding, examples = {}, []
    maps = gradcams(model, images, list(zip(boxes.image_index, boxes.finding)))
    for row, (img, cam) in zip(boxes.itertuples(), maps):
        box = box_to_pixels((row.x, row.y, row.w, row.h), size)
        stats = per_finding.setdefault(row.finding, {"boxes": 0, "hits": 0, "iou_sum": 0.0})
        hit = pointing_hit(cam, box)
        stats["boxes"] += 1
        stats["hits"] += int(hit)
        stats["iou_sum"] += iou(cam, box)
        if len(examples) < 12:
            examples.append((row.finding, row.image_index, img, cam, box, hit))
    out = {
        f: {"boxes": s["boxes"], "pointing_game": s["hits"] / s["boxes"], "mean_iou": s["iou_sum"] / s["boxes"]}
        for f, s in sorted(per_finding.items(), key=lambda kv: FINDINGS.index(kv[0]))
    }
    return out, examples


def explain(
    model_path, test_manifest, test: pd.DataFrame, points: dict, boxes_csv, gallery_k: int, batch_size: int
) -> dict:
    """A trained run's explanations on its (calibrated) `test` rows: {"model": its info, "localisation":
    per finding, "localisation_examples", "gallery": (finding, kind, image, probability, pixels, map)}."""
    model = models.load(model_path)
    test_src = Shards.from_manifest(test_manifest)
    picks = gallery_picks(test, points, gallery_k)
    boxes = read_boxes(boxes_csv) if boxes_csv else pd.DataFrame(columns=BOX_COLUMNS)
    boxes = boxes[boxes.image_index.isin(set(test.image_index))]
    images = collect_images(test_src, {n for _, _, n, _ in picks} | set(boxes.image_index), batch_size)
    located, examples = localisation(model, boxes, images, test_src.image_size)
    maps = gradcams(model, images, [(name, finding) for finding, _, name, _ in picks])
    return {
        "model": models.info(model),
        "localisation": located,
        "localisation_examples": examples,
        "gallery": [(*pick, img, cam) for pick, (img, cam) in zip(picks, maps)],
    }
