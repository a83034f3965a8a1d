"""The numbers of an evaluation, from a predictions table alone (no model and no TensorFlow):
AUROC with patient-bootstrap CIs, the operating points chosen on val (by the calibrate step) on test,
calibration before and after, test-time augmentation, subgroups and the expert labels."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from . import metrics, prediction_table
from .calibration import calibrated
from .constants import FINDINGS
from .engines import TTA_VIEWS

log = logging.getLogger(__name__)

# Published per-finding test AUROCs, in FINDINGS order.
PUBLISHED = {
    "Wang et al. 2017 (ChestX-ray8, official patient-wise split)": [
        0.700, 0.810, 0.759, 0.661, 0.693, 0.669, 0.658, 0.799, 0.703, 0.805, 0.833, 0.786, 0.684, 0.872,
    ],
    "CheXNet, Rajpurkar et al. 2017 (random patient split, not the official one)": [
        0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901, 0.8878, 0.9371, 0.8047, 0.8062,
        0.9164,
    ],
}  # fmt: skip


def operating_points(test: pd.DataFrame, chosen: dict, weights: np.ndarray) -> dict:
    """The test figures (with patient-bootstrap CIs from `weights`) at each operating point `chosen`
    on val ({rule: {finding: threshold}}, the calibrate step's thresholds.json)."""
    out = {}
    for name in FINDINGS:
        y, s = test[prediction_table.label(name)].to_numpy(), test[prediction_table.score(name)].to_numpy()
        out[name] = metrics.at_points(y, s, chosen, name, weights)
    return out


def subgroups(test: pd.DataFrame, thresholds: dict[str, float], n_boot: int, seed: int, findings=FINDINGS) -> dict:
    """Per sex, age band and view: counts, AUROC per finding, the mean AUROC with a patient-bootstrap
    CI, and the underdiagnosis rate (Seyyed-Kalantari et al. 2021): the share of images with a
    positive finding that the run calls "no finding" (no score at or above its operating point in
    `thresholds`), with a CI; per kind, the gap between its highest and lowest rate, with a CI. One
    set of replicates (patients of the whole table) serves every group, so the gap's CI is paired.
    Only `findings` count (an external collection's labelled ones)."""
    y, p = prediction_table.arrays(test, findings)
    weights = metrics.patient_bootstrap_weights(test.patient_id.to_numpy(), n_boot, seed)
    sick = (y == 1).any(axis=1)
    missed = sick & ~(p >= np.array([thresholds[f] for f in findings])).any(axis=1)
    groups = {
        "sex": test.sex.to_numpy(),
        "age": metrics.age_band(test.age_years.to_numpy()),
        "view": test.view.to_numpy(),
    }
    out = {}
    for kind, values in groups.items():
        out[kind], rates = {}, {}
        order = [b for _, _, b in metrics.AGE_BANDS] + ["unknown"] if kind == "age" else sorted(set(values))
        for value in [v for v in order if v in set(values)]:
            mask = values == value
            w = weights[:, mask]
            reps = metrics.bootstrap_reps(y[mask], p[mask], w)
            aurocs = [metrics.weighted_auroc(y[mask, j], p[mask, j]) for j in range(len(findings))]
            valid = np.isfinite(aurocs)
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without positives is NaN
                mean_reps = np.nanmean(reps[:, valid], axis=1) if valid.any() else np.full(n_boot, np.nan)
                rates[str(value)] = (w * missed[mask]).sum(axis=1) / (w * sick[mask]).sum(axis=1)
            rate = float(missed[mask].sum() / sick[mask].sum()) if sick[mask].any() else float("nan")
            out[kind][str(value)] = {
                "images": int(mask.sum()),
                "patients": int(test.patient_id[mask].nunique()),
                "positives": dict(zip(findings, (y[mask] == 1).sum(axis=0).astype(int).tolist())),
                "auroc": dict(zip(findings, aurocs)),
                "mean_auroc": float(np.mean(np.asarray(aurocs)[valid])) if valid.any() else float("nan"),
                "mean_auroc_ci": _interval(mean_reps),
                "with_finding": int(sick[mask].sum()),
                "underdiagnosis": rate,
                "underdiagnosis_ci": _interval(rates[str(value)]),
            }
        out[kind] = {"groups": out[kind], "underdiagnosis_gap": _gap(out[kind], rates)}
    return out


def _interval(reps: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap replicates (NaN ones skipped; NaNs when none is left)."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return [float("nan")] * 2
    alpha = (1 - level) / 2
    return [float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))]


def _gap(groups: dict, rates: dict) -> dict | None:
    """The highest minus the lowest underdiagnosis rate of a kind's groups (those with a rate), with
    the CI of that same pair's difference over the shared replicates."""
    known = {g: s["underdiagnosis"] for g, s in groups.items() if np.isfinite(s["underdiagnosis"])}
    if len(known) < 2:
        return None
    high, low = max(known, key=known.get), min(known, key=known.get)
    diff = rates[high] - rates[low]
    return {"highest": high, "lowest": low, "gap": known[high] - known[low], "ci": _interval(diff)}


def expert_comparison(test: pd.DataFrame, expert_csv) -> dict | None:
    """AUROC against the Google 2019 expert labels beside the NLP labels, on the same test images."""
    if expert_csv is None:
        return None
    expert = pd.read_csv(expert_csv).rename(columns={"Image Index": "image_index"})
    expert = expert[["image_index", "Pneumothorax", "Nodule or mass"]].rename(
        columns={"Pneumothorax": "expert_ptx", "Nodule or mass": "expert_nm"}
    )
    merged = test.merge(expert, on="image_index")
    out = {"images": int(len(merged))}
    p, y = prediction_table.score, prediction_table.label
    targets = {
        "Pneumothorax": (merged.get("expert_ptx"), merged[p("Pneumothorax")], merged[y("Pneumothorax")]),
        "Nodule or mass": (
            merged.get("expert_nm"),
            np.maximum(merged[p("Nodule")], merged[p("Mass")]),
            merged[y("Nodule")] | merged[y("Mass")],
        ),
    }
    for name, (exp, score, nlp) in targets.items():
        exp = (exp.astype(str).str.upper() == "YES").to_numpy() if exp is not None else np.zeros(0, bool)
        score, nlp = np.asarray(score, float), np.asarray(nlp).astype(bool)
        out[name] = {
            "images": int(len(exp)),
            "expert_positives": int(exp.sum()),
            "nlp_positives": int(nlp.sum()),
            "auroc_expert": metrics.weighted_auroc(exp, score) if len(exp) else float("nan"),
            "auroc_nlp": metrics.weighted_auroc(nlp, score) if len(exp) else float("nan"),
            "label_agreement": float(np.mean(exp == nlp)) if len(exp) else float("nan"),
        }
    return out


def calibration_section(
    y: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    patients: np.ndarray,
    reliability: dict,
    calibration: dict | None,
    n_boot: int,
    seed: int,
) -> dict:
    """ECE (equal-width and adaptive bins) and Brier on test before and after calibration, per finding
    (from `reliability`) and as means with patient-bootstrap CIs, and how far AUROC moved (nothing,
    for a strictly increasing map)."""
    keys = ("ece", "ece_adaptive", "brier")
    per_finding = {}
    for f in FINDINGS:
        b, a = reliability[f]["before"], reliability[f]["after"]
        per_finding[f] = {
            "method": calibration["findings"][f]["method"] if calibration else "none",
            **{k: a[k] for k in keys},
            "before": {k: b[k] for k in keys},
        }
    change = [
        abs(metrics.weighted_auroc(y[:, j], after[:, j]) - metrics.weighted_auroc(y[:, j], before[:, j]))
        for j in range(len(FINDINGS))
    ]
    return {
        "method": calibration["method"] if calibration else "none",
        "fitted_on": "val",
        "uncalibrated": [] if calibration else list(FINDINGS),
        "shared": calibration["shared"] if calibration else [],
        "shared_temperature": calibration and calibration["shared_temperature"],
        "min_positives": calibration and calibration["min_positives"],
        "before": metrics.bootstrap_calibration(y, before, patients, n_boot, seed),
        "after": metrics.bootstrap_calibration(y, after, patients, n_boot, seed),
        "auroc_max_change": float(np.nanmax(change)) if np.isfinite(change).any() else None,
        "findings": per_finding,
    }


def tta_section(raw: pd.DataFrame, n_boot: int, seed: int) -> dict | None:
    """AUROC on test with and without test-time augmentation, on the same images, with the paired
    patient-bootstrap difference of the mean."""
    if not prediction_table.with_tta(raw):
        return None
    y, _ = prediction_table.arrays(raw)
    with_tta, without = prediction_table.logits(raw), prediction_table.plain_logits(raw)
    diff = metrics.paired_bootstrap(y, with_tta, without, raw.patient_id.to_numpy(), n_boot, seed)
    auroc = {
        name: {f: metrics.weighted_auroc(y[:, j], scores[:, j]) for j, f in enumerate(FINDINGS)}
        for name, scores in (("with", with_tta), ("without", without))
    }
    return {
        "views": len(TTA_VIEWS),
        "transforms": [list(v) for v in TTA_VIEWS],
        "diff": diff["mean"],
        "auroc": auroc["with"],
        "auroc_without": auroc["without"],
        "mean_auroc": float(np.nanmean(list(auroc["with"].values()))),
        "mean_auroc_without": float(np.nanmean(list(auroc["without"].values()))),
    }


def assess(
    table: pd.DataFrame, *, calibration: dict | None, thresholds: dict, expert_csv, n_boot: int, seed: int
) -> dict:
    """Every number of the report from a predictions table (calibrated, when a calibration is given)
    and the operating points chosen on its val split (`thresholds`):
    {"metrics": the JSON-ready numbers, "curves" and "reliability": what the figures draw, "test": the
    calibrated test rows}. The model's own sections (`model`, `localisation`) are left for the caller."""
    raw_test = table[table.split == "test"].reset_index(drop=True)
    table = calibrated(table, calibration)
    test = table[table.split == "test"].reset_index(drop=True)
    y, p = prediction_table.arrays(test)
    patients = test.patient_id.to_numpy()
    boot = metrics.bootstrap_auroc(y, p, patients, n_boot=n_boot, seed=seed)
    points = operating_points(test, thresholds, metrics.patient_bootstrap_weights(patients, n_boot, seed))
    curves = {f: metrics.curves(y[:, j], p[:, j]) for j, f in enumerate(FINDINGS)}
    _, raw_p = prediction_table.arrays(raw_test)
    reliability = {
        f: {"after": metrics.reliability(y[:, j], p[:, j]), "before": metrics.reliability(y[:, j], raw_p[:, j])}
        for j, f in enumerate(FINDINGS)
    }
    numbers = {
        "split": "official test split (test_list.txt)",
        "images": int(len(test)),
        "patients": int(test.patient_id.nunique()),
        "auroc": dict(zip(FINDINGS, boot["auroc"])),
        "auroc_ci": dict(zip(FINDINGS, boot["ci"])),
        "mean_auroc": boot["mean_auroc"],
        "mean_auroc_ci": boot["mean_ci"],
        "bootstrap": {"replicates": n_boot, "unit": "patient", "level": 0.95, "seed": seed},
        "auprc": {f: curves[f]["auprc"] for f in FINDINGS},
        "positives": dict(zip(FINDINGS, y.sum(axis=0).astype(int).tolist())),
        "thresholds": {f: {rule: v["threshold"] for rule, v in points[f].items()} for f in FINDINGS},
        "thresholds_chosen_on": thresholds.get("chosen_on", "nih val"),
        "operating_point_targets": thresholds.get("targets"),
        "operating_points": points,
        "calibration": calibration_section(y, raw_p, p, patients, reliability, calibration, n_boot, seed),
        "tta": tta_section(raw_test, n_boot, seed),
        "published": {
            name: {"auroc": dict(zip(FINDINGS, vals)), "mean_auroc": float(np.mean(vals))}
            for name, vals in PUBLISHED.items()
        },
        "subgroups": subgroups(test, {f: points[f]["max_f1"]["threshold"] for f in FINDINGS}, n_boot, seed),
        "expert_labels": expert_comparison(test, expert_csv),
        "localisation": None,
    }
    return {"metrics": numbers, "curves": curves, "reliability": reliability, "test": test}
