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
from .inference import Predictor, UnknownSite, served

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


# site: whose calibration and operating points the row uses (`none` without a calibration);
# p_<finding>: the calibrated probability (the model's own when the run has no calibration);
# raw_<finding>: the model's own probability; logit_<finding>: its logit, what the calibration maps;
# base_rate_<finding>: its prevalence in the training data;
# findings: those at or above the site's val-chosen operating point;
# undecided: those the site makes no decision on (no operating point, or it does not label them: their
# p_ is blank too); caveats: per finding, what its probability or decision rests on where it matters
# (a map or point fitted on too few val positives, or at an optimiser bound; why a point is missing).
CSV_COLUMNS = [
    "path",
    "image",
    "site",
    *[f"p_{f}" for f in FINDINGS],
    *[f"raw_{f}" for f in FINDINGS],
    *[f"logit_{f}" for f in FINDINGS],
    *[f"base_rate_{f}" for f in FINDINGS],
    "findings",
    "undecided",
    "caveats",
    "ood_distance",  # from the NIH training embeddings (blank: not checked, e.g. an ONNX model)
    "unlike_training",  # yes: past the run's out-of-distribution threshold (NIH val's 99th percentile)
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
    site: str | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Write `out_csv` with `site`'s calibration and operating points (the predictor's default site
    for None); return (images predicted, [(file, reason)] for the files skipped)."""
    from .logistic import sigmoid

    if gradcam_dir:
        Path(gradcam_dir).mkdir(parents=True, exist_ok=True)
    errors, done, unusual = [], 0, []
    base_rate = predictor.base_rate(site)
    base_rates = [f"{base_rate[f]:.6f}" if base_rate else "" for f in FINDINGS]
    used = predictor.site(site)
    caveats = "; ".join(f"{f}: {why}" for f, why in used.caveats().items())
    if caveats:
        log.warning("site %s: %s", used.name, caveats)
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
            logits, distances = predictor.scored(np.stack(batch))
            probs = predictor.calibrated(logits, site)
            distances = [None] * len(batch) if distances is None else distances
            for path, prepared, p, z, d in zip(names, batch, probs, logits, distances):
                unlike = predictor.unlike(d)
                decided = predictor.decisions(p, site)
                writer.writerow(
                    [
                        str(path),
                        path.name,
                        used.name,
                        *[f"{v:.6f}" if np.isfinite(v) else "" for v in p],
                        *[f"{v:.6f}" for v in sigmoid(z)],
                        *[f"{v:.6f}" for v in z],
                        *base_rates,
                        "|".join(f for f, called in zip(FINDINGS, decided) if called),
                        "|".join(f for f, called in zip(FINDINGS, decided) if called is None),
                        caveats,
                        "" if d is None else f"{d:.4f}",
                        {None: "", True: "yes", False: "no"}[unlike],
                    ]
                )
                if unlike:
                    unusual.append(str(path))
                if gradcam_dir:
                    _save_gradcam(predictor, prepared, p, Path(gradcam_dir) / f"{path.stem}_gradcam.png")
            done += len(batch)
    if unusual:
        log.warning("%d image(s) %s, so their scores mean less: %s", len(unusual), predictor.UNLIKE,
                    ", ".join(unusual[:5]) + (" ..." if len(unusual) > 5 else ""))  # fmt: skip
    return done, errors


def _save_gradcam(predictor, prepared, probs, path: Path) -> None:
    import cv2

    top = FINDINGS[int(np.argmax(np.nan_to_num(probs, nan=-1.0)))]  # (a finding without a map is NaN)
    cv2.imwrite(str(path), predictor.explain(prepared, top)[..., ::-1])


def main(args) -> int:
    files = expand(args.paths)
    if not files:
        print(f"no image files found in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    runs, first = served(args.run, args.model, args.thresholds, args.calibration)
    predictor = Predictor(*runs[first])
    if args.gradcam_dir and not predictor.explains:
        print(f"--gradcam-dir: Grad-CAM needs the Keras model, not {args.model}", file=sys.stderr)
        return 2
    try:
        site = predictor.site(args.site)
    except UnknownSite as exc:
        print(f"--site: {exc}", file=sys.stderr)
        return 2
    which = f"run {first}" if not args.model else args.model
    print(f"predicting with {which}: {site.describe()}", file=sys.stderr)
    done, errors = predict_files(
        predictor,
        files,
        args.out,
        gradcam_dir=args.gradcam_dir,
        batch_size=args.batch_size,
        max_mb=args.max_mb,
        max_megapixels=args.max_megapixels,
        site=args.site,
    )
    for path, reason in errors:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    state = f"probabilities calibrated for site {site.name}" if site.calibration else "uncalibrated (no calibration)"
    print(
        f"{done} images predicted into {args.out} ({state}{', with TTA' if predictor.tta else ''}); "
        f"{len(errors)} skipped. {DISCLAIMER}",
        file=sys.stderr,
    )
    return 0 if done else 1
