"""Batch prediction over files, folders and globs: one CSV row per image, bad files reported and skipped."""

from __future__ import annotations

import csv
import glob
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .constants import DISCLAIMER, FINDINGS
from .files import atomic
from .images import DEFAULT_MAX_MB, DEFAULT_MAX_MEGAPIXELS, IMAGE_SUFFIXES, BadImage, read_gray
from .inference import Predictor, served

log = logging.getLogger(__name__)


def expand(paths: list[str]) -> list[Path]:
    """Files as given, image files under folders (recursively) and glob matches, sorted, unique."""
    found: list[Path] = []
    for item in paths:
        matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        for path in matches:
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                found.append(path)
    return list(dict.fromkeys(found))


# p_<finding>: the calibrated probability (the raw score when the run has no calibration);
# raw_<finding>: the model's own score; base_rate_<finding>: its prevalence in the training data;
# findings: those at or above their val-chosen operating point.
CSV_COLUMNS = [
    "path",
    "image",
    *[f"p_{f}" for f in FINDINGS],
    *[f"raw_{f}" for f in FINDINGS],
    *[f"base_rate_{f}" for f in FINDINGS],
    "findings",
]


def predict_files(
    predictor: Predictor,
    files: list[Path],
    out_csv,
    *,
    batch_size: int,
    gradcam_dir=None,
    max_mb: float = DEFAULT_MAX_MB,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    progress: bool = True,
) -> tuple[int, list[tuple[str, str]]]:
    """Write `out_csv`; return (images predicted, [(file, reason)] for the files skipped)."""
    if gradcam_dir:
        Path(gradcam_dir).mkdir(parents=True, exist_ok=True)
    errors, done = [], 0
    base_rates = [f"{predictor.base_rate[f]:.6f}" if predictor.base_rate else "" for f in FINDINGS]
    with atomic(out_csv) as staged, open(staged, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for start in tqdm(range(0, len(files), batch_size), desc="predict", unit="batch", disable=not progress):
            batch, names = [], []
            for path in files[start : start + batch_size]:
                try:
                    batch.append(predictor.prepare(read_gray(path.read_bytes(), max_mb, max_megapixels)))
                    names.append(path)
                except (BadImage, OSError) as exc:
                    errors.append((str(path), str(exc)))
                    log.warning("skipped %s: %s", path, exc)
            if not batch:
                continue
            scores = predictor.scores(np.stack(batch))
            probs = predictor.calibrated(scores)
            for path, prepared, p, raw in zip(names, batch, probs, scores):
                writer.writerow(
                    [
                        str(path),
                        path.name,
                        *[f"{v:.6f}" for v in p],
                        *[f"{v:.6f}" for v in raw],
                        *base_rates,
                        "|".join(predictor.above(p)),
                    ]
                )
                if gradcam_dir:
                    _save_gradcam(predictor, prepared, p, Path(gradcam_dir) / f"{path.stem}_gradcam.png")
            done += len(batch)
    return done, errors


def _save_gradcam(predictor, prepared, probs, path: Path) -> None:
    import cv2

    top = FINDINGS[int(np.argmax(probs))]
    cv2.imwrite(str(path), predictor.explain(prepared, top)[..., ::-1])


def main(args) -> int:
    files = expand(args.paths)
    if not files:
        print(f"no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    runs, first = served(args.run, args.model, args.thresholds, args.calibration)
    predictor = Predictor(*runs[first])
    if args.gradcam_dir and predictor.onnx:
        print(f"--gradcam-dir: Grad-CAM needs the Keras model, not {args.model}", file=sys.stderr)
        return 2
    print(f"predicting with run {first}" if not args.model else f"predicting with {args.model}", file=sys.stderr)
    done, errors = predict_files(
        predictor,
        files,
        args.out,
        gradcam_dir=args.gradcam_dir,
        batch_size=args.batch_size,
        max_mb=args.max_mb,
        max_megapixels=args.max_megapixels,
    )
    for path, reason in errors:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    state = "calibrated probabilities" if predictor.calibration else "uncalibrated scores (no calibration.json)"
    print(
        f"{done} images predicted into {args.out} ({state}{', with TTA' if predictor.tta else ''}); "
        f"{len(errors)} skipped. {DISCLAIMER}",
        file=sys.stderr,
    )
    return 0 if done else 1
