"""Evaluate a trained model on the official test split: predictions, every metric of the report,
val-chosen operating points, subgroups, expert labels, Grad-CAM galleries and box localisation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics
from .constants import FINDINGS
from .files import atomic, write_json

log = logging.getLogger(__name__)

# Published per-finding test AUROCs, in FINDINGS order.
PUBLISHED = {
    "Wang et al. 2017 (ChestX-ray8, official patient-wise split)": [
        0.700, 0.810, 0.759, 0.661, 0.693, 0.669, 0.658, 0.799, 0.703, 0.805, 0.833, 0.786, 0.684, 0.872],
    "CheXNet, Rajpurkar et al. 2017 (random patient split, not the official one)": [
        0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901, 0.8878, 0.9371, 0.8047, 0.8062, 0.9164],
}
BOX_LABELS = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently


def predict(model, shards, batch_size: int, tta: bool = False) -> pd.DataFrame:
    """One row per image: its metadata, labels y_<finding> and scores p_<finding>; with `tta`, p_ is
    the mean over the TTA views and p_notta_ the plain image's score, from the same pass."""
    from .data import dataset
    from .inference import forward, tta_scores

    rows = []
    for x, y, meta in dataset(shards, batch_size, with_metadata=True):
        if tta:
            p, plain = tta_scores(model, x)
        else:
            p = forward(model, x, tta=False)
        frame = pd.DataFrame({
            "image_index": [s.decode() for s in meta["image_index"].numpy()],
            "patient_id": meta["patient_id"].numpy(),
            "age_years": meta["age_years"].numpy().astype(np.float64),
            "sex": [s.decode() for s in meta["sex"].numpy()],
            "view": [s.decode() for s in meta["view"].numpy()],
        })
        for k, name in enumerate(FINDINGS):
            frame[f"y_{name}"] = y.numpy()[:, k].astype(np.int8)
            frame[f"p_{name}"] = p[:, k]
        if tta:
            for k, name in enumerate(FINDINGS):
                frame[f"p_notta_{name}"] = plain[:, k]
        rows.append(frame)
    return pd.concat(rows, ignore_index=True).sort_values("image_index", ignore_index=True)


def scored_with_tta(pred: pd.DataFrame) -> bool:
    """Whether a predictions table holds TTA scores (and the plain image's, as p_notta_<finding>)."""
    return f"p_notta_{FINDINGS[0]}" in pred.columns


def label_score_arrays(pred: pd.DataFrame):
    """(labels, probabilities) of the 14 findings, (n, 14) each, from a predictions table."""
    return pred[[f"y_{f}" for f in FINDINGS]].to_numpy(), pred[[f"p_{f}" for f in FINDINGS]].to_numpy(np.float64)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def operating_points(val: pd.DataFrame, test: pd.DataFrame) -> dict:
    """Thresholds chosen on val only (max F1, Youden's J), then the test figures at each."""
    out = {}
    for name in FINDINGS:
        y_val, p_val = val[f"y_{name}"].to_numpy(), val[f"p_{name}"].to_numpy()
        y_test, p_test = test[f"y_{name}"].to_numpy(), test[f"p_{name}"].to_numpy()
        chosen = metrics.thresholds(y_val, p_val)
        out[name] = {rule: metrics.at_threshold(y_test, p_test, t) for rule, t in chosen.items()}
    return out


def subgroups(test: pd.DataFrame) -> dict:
    """AUROC per finding and its mean for each sex, age band and view, with counts."""
    groups = {"sex": test.sex.to_numpy(), "age": metrics.age_band(test.age_years.to_numpy()),
              "view": test.view.to_numpy()}
    y, p = label_score_arrays(test)
    out = {}
    for kind, values in groups.items():
        out[kind] = {}
        order = [b for _, _, b in metrics.AGE_BANDS] + ["unknown"] if kind == "age" else sorted(set(values))
        for value in [v for v in order if v in set(values)]:
            mask = values == value
            aurocs = [metrics.weighted_auroc(y[mask, j], p[mask, j]) for j in range(len(FINDINGS))]
            finite = [a for a in aurocs if np.isfinite(a)]
            out[kind][str(value)] = {
                "images": int(mask.sum()), "patients": int(test.patient_id[mask].nunique()),
                "positives": dict(zip(FINDINGS, y[mask].sum(axis=0).astype(int).tolist())),
                "auroc": dict(zip(FINDINGS, aurocs)),
                "mean_auroc": float(np.mean(finite)) if finite else float("nan"),
            }
    return out


def expert_comparison(test: pd.DataFrame, expert_csv) -> dict | None:
    """AUROC against the Google 2019 expert labels beside the NLP labels, on the same test images."""
    if expert_csv is None:
        return None
    expert = pd.read_csv(expert_csv)
    expert = expert.rename(columns={"Image Index": "image_index"})
    merged = test.merge(expert[["image_index", "Pneumothorax", "Nodule or mass"]].rename(
        columns={"Pneumothorax": "expert_ptx", "Nodule or mass": "expert_nm"}), on="image_index")
    out = {"images": int(len(merged))}
    targets = {
        "Pneumothorax": (merged.get("expert_ptx"), merged["p_Pneumothorax"], merged["y_Pneumothorax"]),
        "Nodule or mass": (merged.get("expert_nm"), np.maximum(merged["p_Nodule"], merged["p_Mass"]),
                           merged["y_Nodule"] | merged["y_Mass"]),
    }
    for name, (exp, score, nlp) in targets.items():
        exp = (exp.astype(str).str.upper() == "YES").to_numpy() if exp is not None else np.zeros(0, bool)
        score, nlp = np.asarray(score, float), np.asarray(nlp).astype(bool)
        out[name] = {"images": int(len(exp)), "expert_positives": int(exp.sum()), "nlp_positives": int(nlp.sum()),
                     "auroc_expert": metrics.weighted_auroc(exp, score) if len(exp) else float("nan"),
                     "auroc_nlp": metrics.weighted_auroc(nlp, score) if len(exp) else float("nan"),
                     "label_agreement": float(np.mean(exp == nlp)) if len(exp) else float("nan")}
    return out


def read_boxes(path) -> pd.DataFrame:
    """BBox_List_2017.csv as image_index, finding (our spelling), x, y, w, h (1024-px space)."""
    raw = pd.read_csv(path, header=None, skiprows=1, usecols=range(6),
                      names=["image_index", "finding", "x", "y", "w", "h"])
    raw["finding"] = raw.finding.replace(BOX_LABELS)
    unknown = set(raw.finding) - set(FINDINGS)
    if unknown:
        raise ValueError(f"{path}: unknown finding(s) {sorted(unknown)}")
    return raw


def collect_images(shards, names: set[str], batch_size: int) -> dict[str, np.ndarray]:
    """The (S, S, 1) pixels of the named images, in one pass over the shards."""
    from .data import dataset

    found = {}
    for x, _, meta in dataset(shards, batch_size, with_metadata=True):
        idx = [s.decode() for s in meta["image_index"].numpy()]
        for k, name in enumerate(idx):
            if name in names:
                found[name] = x[k].numpy()
    return found


def gallery_picks(test: pd.DataFrame, thresholds: dict, k: int) -> list[tuple[str, str, str, float]]:
    """Per finding, the k most confident true positives, false positives and false negatives
    at the val-chosen max-F1 threshold: (finding, kind, image_index, probability)."""
    picks = []
    for name in FINDINGS:
        t = thresholds[name]["max_f1"]["threshold"]
        y, p = test[f"y_{name}"], test[f"p_{name}"]
        for kind, mask, ascending in (("TP", (y == 1) & (p >= t), False), ("FP", (y == 0) & (p >= t), False),
                                      ("FN", (y == 1) & (p < t), True)):
            top = test[mask].sort_values(f"p_{name}", ascending=ascending).head(k)
            picks += [(name, kind, r.image_index, float(getattr(r, f"p_{name}"))) for r in top.itertuples()]
    return picks


def gradcams(model, images: dict, pairs: list[tuple[str, str]], chunk: int = 32):
    """(pixels, Grad-CAM map) for each (image_index, finding), computed `chunk` images at a time."""
    from .gradcam import gradcam

    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        x = np.stack([images[name] for name, _ in part])
        cams, _ = gradcam(model, x, np.array([FINDINGS.index(f) for _, f in part]))
        yield from zip(x, cams)


def localisation(model, boxes: pd.DataFrame, images: dict, size: int) -> tuple[dict, list]:
    """Pointing-game hit rate and mean IoU per finding on the test images with boxes."""
    from .gradcam import box_to_pixels, iou, pointing_hit

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
    out = {f: {"boxes": s["boxes"], "pointing_game": s["hits"] / s["boxes"], "mean_iou": s["iou_sum"] / s["boxes"]}
           for f, s in sorted(per_finding.items(), key=lambda kv: FINDINGS.index(kv[0]))}
    return out, examples


def score(*, model, val_manifest, test_manifest, predictions, batch_size: int, tta: bool,
          threads: int | None = None) -> None:
    """Step `score`: a trained run's scores on the val and test shards, one row per image, to
    `predictions` (Parquet); with `tta`, test-time augmented, with the plain scores beside them."""
    from . import models
    from .data import Shards, use_threads

    use_threads(threads)
    net = models.load(model)
    size = models.info(net)["image_size"]
    sources = {"val": Shards.from_manifest(val_manifest, verify=True),
               "test": Shards.from_manifest(test_manifest, verify=True)}
    for split, src in sources.items():
        if src.image_size != size:
            raise ValueError(f"{model} takes {size} px but the {split} shards are {src.image_size} px")
    pred = pd.concat([predict(net, src, batch_size, tta).assign(split=split) for split, src in sources.items()],
                     ignore_index=True)
    with atomic(predictions) as staged:
        pred.to_parquet(staged, index=False)
    log.info("%s: %d val and %d test images scored", model, sources["val"].images, sources["test"].images)


def ensemble(*, members: list, predictions, names: list[str], weights: list[float]) -> None:
    """Step `ensemble`: the (weighted) mean of the member runs' probabilities, image by image.
    The members must have scored the same images with the same findings."""
    frames = [pd.read_parquet(p).sort_values(["split", "image_index"], ignore_index=True) for p in members]
    first = frames[0]
    for name, frame in zip(names[1:], frames[1:]):
        if list(frame.columns) != list(first.columns):
            raise ValueError(f"ensemble member {name} has other findings or columns than {names[0]}: "
                             f"{sorted(set(frame.columns) ^ set(first.columns))}")
        if not frame[["split", "image_index"]].equals(first[["split", "image_index"]]):
            raise ValueError(f"ensemble members {names[0]} and {name} were scored on different images")
    w = np.asarray(weights or [1.0] * len(frames), np.float64)
    probs = [c for c in first.columns if c.startswith("p_")]  # with the plain scores of TTA'd members
    out = first.copy()
    out[probs] = (sum(wk * f[probs].to_numpy(np.float64) for wk, f in zip(w, frames)) / w.sum()).astype(np.float32)
    with atomic(predictions) as staged:
        out.to_parquet(staged, index=False)
    log.info("ensemble of %s (weights %s): %d images", ", ".join(names), w.tolist(), len(out))


def evaluate(*, predictions, calibration, model, test_manifest, table, cleaning_report, boxes, expert_labels,
             metrics, thresholds, report, figures, run: str, members: list[str], n_boot: int, seed: int,
             gallery_k: int, batch_size: int, tta: bool, threads: int | None = None) -> dict:
    """Step `evaluate`: a run's `predictions`, calibrated with its `calibration` (fitted on val), on
    the official test split (operating points chosen on calibrated val) to `metrics` and `thresholds`
    (JSON) and the HTML `report` with its `figures/`. Grad-CAM and localisation need the `model` and
    `test_manifest` (an ensemble has neither: both are []); `expert_labels` may be [] (that section is
    left out). `tta` is how the predictions were scored (the report compares with the plain scores)."""
    from .data import use_threads
    from .report import render

    use_threads(threads)
    pred = pd.read_parquet(predictions)
    if scored_with_tta(pred) != tta:
        raise ValueError(f"{predictions} was scored {'without' if tta else 'with'} test-time augmentation but this "
                         f"run's evaluate.tta is {tta}: rerun its score step (for an ensemble: its members')")
    result = assess(pred, model or None, test_manifest or None, members=members,
                    calibration=json.loads(Path(calibration).read_text()), boxes_csv=boxes,
                    expert_csv=expert_labels or None, n_boot=n_boot, seed=seed, gallery_k=gallery_k,
                    batch_size=batch_size)
    write_json(result["metrics"], metrics)
    points = result["metrics"]["thresholds"]
    write_json({rule: {f: points[f][rule] for f in FINDINGS} for rule in ("max_f1", "youden")} | {"chosen_on": "val"},
               thresholds)
    render(result, pd.read_parquet(table), json.loads(Path(cleaning_report).read_text()), report, figures,
           title=f"cxr14 evaluation: run {run}")
    return result["metrics"]


def calibrated(pred: pd.DataFrame, calibration: dict | None) -> pd.DataFrame:
    """The predictions with p_<finding> mapped through the calibration (raw scores dropped)."""
    from .calibrate import apply

    out = pred.drop(columns=[c for c in pred.columns if c.startswith("p_notta_")])
    probs = [f"p_{f}" for f in FINDINGS]
    out[probs] = apply(calibration, pred[probs].to_numpy(np.float64))
    return out


def calibration_section(y: np.ndarray, before: np.ndarray, after: np.ndarray, patients: np.ndarray,
                        reliability: dict, calibration: dict | None, n_boot: int, seed: int) -> dict:
    """ECE (equal-width and adaptive bins) and Brier on test before and after calibration, per finding
    (from `reliability`) and as means with patient-bootstrap CIs, and how far AUROC moved (nothing,
    for a strictly increasing map)."""
    keys = ("ece", "ece_adaptive", "brier")
    per_finding = {}
    for f in FINDINGS:
        b, a = reliability[f]["before"], reliability[f]["after"]
        per_finding[f] = {"method": calibration["findings"][f]["method"] if calibration else "none",
                          **{k: a[k] for k in keys}, "before": {k: b[k] for k in keys}}
    change = [abs(metrics.weighted_auroc(y[:, j], after[:, j]) - metrics.weighted_auroc(y[:, j], before[:, j]))
              for j in range(len(FINDINGS))]
    return {
        "method": calibration["method"] if calibration else "none", "fitted_on": "val",
        "uncalibrated": calibration["uncalibrated"] if calibration else list(FINDINGS),
        "min_positives": calibration and calibration["min_positives"],
        "before": metrics.bootstrap_calibration(y, before, patients, n_boot, seed),
        "after": metrics.bootstrap_calibration(y, after, patients, n_boot, seed),
        "auroc_max_change": float(np.nanmax(change)) if np.isfinite(change).any() else None,
        "findings": per_finding,
    }


def tta_section(raw: pd.DataFrame, n_boot: int, seed: int) -> dict | None:
    """AUROC on test with and without test-time augmentation, on the same images, with the paired
    patient-bootstrap difference of the mean."""
    from .inference import TTA_VIEWS

    if not scored_with_tta(raw):
        return None
    y, with_tta = label_score_arrays(raw)
    without = raw[[f"p_notta_{f}" for f in FINDINGS]].to_numpy(np.float64)
    diff = metrics.paired_bootstrap(y, with_tta, without, raw.patient_id.to_numpy(), n_boot, seed)
    auroc = {name: {f: metrics.weighted_auroc(y[:, j], scores[:, j]) for j, f in enumerate(FINDINGS)}
             for name, scores in (("with", with_tta), ("without", without))}
    return {"views": len(TTA_VIEWS), "transforms": [list(v) for v in TTA_VIEWS], "diff": diff["mean"],
            "auroc": auroc["with"], "auroc_without": auroc["without"],
            "mean_auroc": float(np.nanmean(list(auroc["with"].values()))),
            "mean_auroc_without": float(np.nanmean(list(auroc["without"].values())))}


def assess(pred: pd.DataFrame, model_path, test_manifest, *, members: list[str], calibration: dict | None,
           boxes_csv, expert_csv, n_boot: int, seed: int, gallery_k: int, batch_size: int) -> dict:
    """Every metric of the report from the predictions (calibrated, when a calibration is given), plus
    the in-memory material it draws (curves; Grad-CAM examples when there is one model to explain)."""
    raw_test = pred[pred.split == "test"].reset_index(drop=True)
    pred = calibrated(pred, calibration)
    val = pred[pred.split == "val"].reset_index(drop=True)
    test = pred[pred.split == "test"].reset_index(drop=True)
    y, p = label_score_arrays(test)
    boot = metrics.bootstrap_auroc(y, p, test.patient_id.to_numpy(), n_boot=n_boot, seed=seed)
    points = operating_points(val, test)
    curves = {f: metrics.curves(y[:, j], p[:, j]) for j, f in enumerate(FINDINGS)}
    _, raw_p = label_score_arrays(raw_test)
    reliability = {f: {"after": metrics.reliability(y[:, j], p[:, j]),
                       "before": metrics.reliability(y[:, j], raw_p[:, j])} for j, f in enumerate(FINDINGS)}
    result = {
        "split": "official test split (test_list.txt)",
        "images": int(len(test)), "patients": int(test.patient_id.nunique()),
        "auroc": dict(zip(FINDINGS, boot["auroc"])),
        "auroc_ci": dict(zip(FINDINGS, boot["ci"])),
        "mean_auroc": boot["mean_auroc"], "mean_auroc_ci": boot["mean_ci"],
        "bootstrap": {"replicates": n_boot, "unit": "patient", "level": 0.95, "seed": seed},
        "auprc": {f: curves[f]["auprc"] for f in FINDINGS},
        "positives": dict(zip(FINDINGS, y.sum(axis=0).astype(int).tolist())),
        "thresholds": {f: {rule: v["threshold"] for rule, v in points[f].items()} for f in FINDINGS},
        "operating_points": points,
        "calibration": calibration_section(y, raw_p, p, test.patient_id.to_numpy(), reliability, calibration,
                                           n_boot, seed),
        "tta": tta_section(raw_test, n_boot, seed),
        "published": {name: {"auroc": dict(zip(FINDINGS, vals)), "mean_auroc": float(np.mean(vals))}
                      for name, vals in PUBLISHED.items()},
        "subgroups": subgroups(test),
        "expert_labels": expert_comparison(test, expert_csv),
        "localisation": None,
    }
    gallery, loc_examples = [], []
    if model_path is None:
        result["model"] = {"backbone": "ensemble of " + " + ".join(members), "members": members, "image_size": None}
    else:
        from . import models
        from .data import Shards

        model = models.load(model_path)
        result["model"] = models.info(model)
        test_src = Shards.from_manifest(test_manifest)
        picks = gallery_picks(test, points, gallery_k)
        boxes = read_boxes(boxes_csv) if boxes_csv else pd.DataFrame(columns=["image_index", "finding", "x", "y", "w", "h"])
        boxes = boxes[boxes.image_index.isin(set(test.image_index))]
        images = collect_images(test_src, {n for _, _, n, _ in picks} | set(boxes.image_index), batch_size)
        result["localisation"], loc_examples = localisation(model, boxes, images, test_src.image_size)
        maps = gradcams(model, images, [(name, finding) for finding, _, name, _ in picks])
        gallery = [(*pick, img, cam) for pick, (img, cam) in zip(picks, maps)]
    result = _nan_to_none(result)
    log.info("test mean AUROC %.4f (95%% CI %.4f-%.4f) on %d images", result["mean_auroc"],
             *result["mean_auroc_ci"], result["images"])
    return {"metrics": result, "curves": curves, "reliability": reliability, "gallery": gallery,
            "localisation_examples": loc_examples}
