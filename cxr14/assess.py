"""The judgement of a run's scores on a collection, from predictions tables alone (no model and no
TensorFlow): NIH's official test split and every other collection alike, into one result of one shape
(`schemas/metrics.schema.yaml`, checked before it is written). Per finding the collection labels, on the
images labelled for it: AUROC with a patient-bootstrap CI, the `FINDING_METRICS`, the label-free AUROC
estimate, calibration and the operating points chosen on NIH val; the means; calibration before and
after; test-time augmentation; subgroups. Optional parts, where the inputs are there: the run's NIH
test figures beside another collection's (and the drop), a site's own calibration beside NIH's, the
published figures of a collection that has them. The expert labels (`expert_comparison`) are a step of
their own, on NIH."""

from __future__ import annotations

import logging
import warnings
from importlib import resources

import numpy as np
import pandas as pd

from . import metrics, prediction_table
from .calibration import PRIOR_SD, SHARED, UNLABELLED, calibrated, fit_table
from .constants import FINDINGS, NIH
from .engines import TTA_VIEWS
from .files import json_safe

log = logging.getLogger(__name__)

# Published per-finding test AUROCs on NIH's test split, in FINDINGS order.
PUBLISHED_NIH = {
    "Wang et al. 2017 (ChestX-ray8, official patient-wise split)": [
        0.700, 0.810, 0.759, 0.661, 0.693, 0.669, 0.658, 0.799, 0.703, 0.805, 0.833, 0.786, 0.684, 0.872,
    ],
    "CheXNet, Rajpurkar et al. 2017 (random patient split, not the official one)": [
        0.8094, 0.9248, 0.8638, 0.7345, 0.8676, 0.7802, 0.7680, 0.8887, 0.7901, 0.8878, 0.9371, 0.8047, 0.8062,
        0.9164,
    ],
}  # fmt: skip
# By collection: the figures published on it, shown beside the run's.
PUBLISHED = {NIH: PUBLISHED_NIH}


def operating_points(test: pd.DataFrame, chosen: dict, weights: np.ndarray) -> dict:
    """The test figures (with patient-bootstrap CIs from `weights`) at each operating point `chosen`
    on val ({rule: {finding: threshold or None}}, the calibrate step's thresholds.json): None where no
    point was chosen."""
    out = {}
    for name in FINDINGS:
        y, s = test[prediction_table.label(name)].to_numpy(), test[prediction_table.score(name)].to_numpy()
        out[name] = metrics.at_points(y, s, chosen, name, weights)
    return out


GAP_MIN_PATIENTS = 10  # patients with a finding a group needs to enter the underdiagnosis gap


def subgroups(test: pd.DataFrame, thresholds: dict[str, float], n_boot: int, seed: int, findings=FINDINGS) -> dict:
    """Per sex, age band and view: counts, AUROC per finding, the mean AUROC with a patient-bootstrap
    CI, and the underdiagnosis rate (Seyyed-Kalantari et al. 2021): the share of images with a
    positive finding that the run calls "no finding" (no score at or above its operating point in
    `thresholds`), with a CI; per kind, the gap between its highest and lowest rate, with a CI
    (`underdiagnosis_gap`). One set of replicates (patients of the whole table) serves every group, so the groups'
    rates move together in each replicate, as the gap's CI needs.
    Only `findings` count (an external collection's labelled ones)."""
    y, p = prediction_table.arrays(test, findings)
    weights = metrics.patient_bootstrap_weights(test.patient_id.to_numpy(), n_boot, seed)
    sick = (y == 1).any(axis=1)
    missed = sick & ~(p >= np.array([thresholds[f] for f in findings])).any(axis=1)
    patient = test.patient_id.to_numpy()
    groups = {
        "sex": test.sex.to_numpy(),
        "age": metrics.age_band(test.age_years.to_numpy()),
        "view": test.view.to_numpy(),
    }
    out = {}
    for kind, values in groups.items():
        out[kind], rates, spread = {}, {}, {}
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
                "patients_with_finding": int(test.patient_id[mask & sick].nunique()),
                "underdiagnosis": rate,
                "underdiagnosis_ci": _interval(rates[str(value)]),
            }
            spread[str(value)] = np.sqrt(metrics.jackknife_variance(missed[mask & sick], patient[mask & sick])[0])
        out[kind] = {"groups": out[kind], "underdiagnosis_gap": underdiagnosis_gap(out[kind], rates, spread)}
    return out


def _interval(reps: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap replicates (NaN ones skipped; NaNs when none is left)."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return [float("nan")] * 2
    alpha = (1 - level) / 2
    return [float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))]


def underdiagnosis_gap(groups: dict, rates: dict, spread: dict | None = None, level: float = 0.95) -> dict | None:
    """The highest minus the lowest underdiagnosis rate of a kind's groups (those with a rate): two
    different groups, also where rates tie (then a gap of 0, `tied`). Its CI is simultaneous over
    every pair of groups, so choosing the pair on the same data does not narrow it (the winner's
    curse of bootstrapping the pair picked on the point estimates): c is the `level` quantile, over
    the patient-bootstrap replicates, of the range (max minus min, groups chosen in each replicate)
    of the groups' rates less their point rates; every pair's difference then lies within c of its
    point with probability `level`, and so does the largest, the gap: [max(0, gap - c), gap + c].
    Valid at a true gap of 0 too, where a percentile interval of max - min never reaches 0.
    Only groups with at least `GAP_MIN_PATIENTS` patients with a finding are compared (`compared`): a
    rate of a handful of patients is 0 or 1 in nearly every replicate, so its bootstrap spread says
    nothing of its uncertainty, and that group would set the gap (an age band of 3 children: a CI that
    covered the true gap 2 times in 3 in simulation, docs/statistics.md); the others are named (`too_few`).
    `spread`: {group: its rate's patient jackknife SD}, to which each group's centred replicates are
    rescaled before the range is taken (`_rescale`)."""
    rated = {g: s for g, s in groups.items() if np.isfinite(s["underdiagnosis"])}
    known = {g: s["underdiagnosis"] for g, s in rated.items() if s["patients_with_finding"] >= GAP_MIN_PATIENTS}
    if len(known) < 2:
        return None
    ordered = sorted(known, key=known.get)  # stable: tied groups keep the table's order
    low, high = ordered[0], ordered[-1]
    gap = known[high] - known[low]
    centred = np.column_stack([(np.asarray(rates[g], np.float64) - known[g]) * _rescale(rates[g], spread, g)
                               for g in ordered])  # fmt: skip
    enough = np.isfinite(centred).sum(axis=1) >= 2  # a replicate with fewer groups has no range
    spread = np.nanmax(centred[enough], axis=1) - np.nanmin(centred[enough], axis=1) if enough.any() else []
    half = float(np.quantile(spread, level)) if len(spread) else float("nan")
    return {
        "highest": high,
        "lowest": low,
        "gap": gap,
        "tied": bool(gap == 0),
        "ci": [max(0.0, gap - half), gap + half] if np.isfinite(half) else [float("nan")] * 2,
        "ci_method": "simultaneous over the groups' pairs (patient bootstrap, rescaled to the jackknife's spread)",
        "compared": list(known),
        "too_few": [g for g in rated if g not in known],
    }


def _rescale(reps: np.ndarray, spread: dict | None, group: str) -> float:
    """The factor that gives a group's centred bootstrap rates the spread `spread[group]` (its patient
    jackknife SD), 1 without one: the patient bootstrap's spread of a rate of a few hundred unequal
    patients (one of NIH's has 184 images) is too small, and the gap's CI covered 0.915 (age bands)
    and 0.920 (views) in simulation with it (docs/statistics.md)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two finite replicates: no spread
        own = float(np.nanstd(np.asarray(reps, np.float64), ddof=1))
    wanted = (spread or {}).get(group, float("nan"))
    return wanted / own if np.isfinite(wanted) and np.isfinite(own) and own > 0 and wanted > 0 else 1.0


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


def tta_section(raw: pd.DataFrame, n_boot: int, seed: int, findings=FINDINGS) -> dict | None:
    """AUROC of `findings` with and without test-time augmentation, on the same images, with the
    paired patient-bootstrap difference of the mean."""
    if not prediction_table.with_tta(raw):
        return None
    y, _ = prediction_table.arrays(raw, findings)
    columns = [FINDINGS.index(f) for f in findings]
    with_tta = prediction_table.logits(raw)[:, columns]
    without = prediction_table.plain_logits(raw)[:, columns]
    diff = metrics.paired_bootstrap(y, with_tta, without, raw.patient_id.to_numpy(), n_boot, seed)
    auroc = {
        name: {f: metrics.weighted_auroc(y[:, j], scores[:, j]) for j, f in enumerate(findings)}
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


def auprc(y: np.ndarray, p: np.ndarray) -> float | None:
    """The area under the precision-recall curve (average precision); None without both classes."""
    return metrics.curves(y, p)["auprc"] if len(y) else None


# Per finding, on the images labelled for it: name -> a function of their labels and calibrated
# probabilities, giving one number. Each lands in the result as `findings[<finding>][<name>]` and in
# every report's per-finding table (`METRIC_LABELS` names the column). A new metric is one entry here.
FINDING_METRICS = {"auprc": auprc}
METRIC_LABELS = {"auprc": "AUPRC"}

SCHEMA = resources.files("cxr14") / "schemas" / "metrics.schema.yaml"


def validate(result: dict) -> dict:
    """`result` (JSON-ready) checked against the one schema of a judgement (jsonschema); returned."""
    import yaml
    from jsonschema import Draft202012Validator

    Draft202012Validator(yaml.safe_load(SCHEMA.read_text())).validate(result)
    return result


def judge(
    rows: pd.DataFrame,
    *,
    run: str,
    dataset: str,
    collection: dict,
    split: str,
    findings: list[str],
    calibration: dict | None,
    thresholds: dict,
    n_boot: int,
    seed: int,
    members: list[str] | None = None,
    nih: pd.DataFrame | None = None,
    site: dict | None = None,
    expected: pd.Series | None = None,
    synthetic: bool = False,
) -> tuple[dict, dict]:
    """A run's judgement on collection `dataset`: its `rows` (a predictions table's judged rows, the
    scores as the run made them: NIH's official test split, a split collection's test split, another's
    every image) with the run's NIH `calibration` and operating points (`thresholds`), scored on the
    `findings` the collection labels (`collection`: what made it, its ingest or cleaning report).
    Optional: the run's NIH test rows `nih`, judged beside these (another collection); `site`, a site's
    own calibration beside NIH's ({"rows", "calibration", "thresholds" or None, and what to say of how
    it was fitted}: `own_site` or `local_site`); `expected`, the images of the collection's table that
    should have been judged (those without a score are counted and named: `left_out`). `synthetic`: the
    scores are of the demo's phantom images (said on every page; no published figures beside them).
    Returns (the result, JSON-ready and checked against the schema; what the report's figures draw)."""
    about = {"run": run, "dataset": dataset, "collection": collection, "split": split, "members": members,
             "left_out": left_out(expected, rows), "synthetic": synthetic}  # fmt: skip
    if not findings:
        result = {**about, "labelled": False, "images": int(len(rows)), "patients": int(rows.patient_id.nunique())}
        return validate(json_safe(result)), {}
    _, raw_p = prediction_table.arrays(rows, findings)
    judged = calibrated(rows, calibration)
    y, p = prediction_table.arrays(judged, findings)
    patients = judged.patient_id.to_numpy()
    here = metrics.bootstrap_auroc(y, p, patients, n_boot, seed)
    weights = metrics.patient_bootstrap_weights(patients, n_boot, seed)
    if nih is not None:
        ny, npred = prediction_table.arrays(calibrated(nih, calibration), findings)
        nih_patients = nih.patient_id.to_numpy()
        there = metrics.bootstrap_auroc(ny, npred, nih_patients, n_boot, seed)
        drop = metrics.independent_bootstrap((ny, npred, nih_patients), (y, p, patients), n_boot, seed)
    maps = (calibration or {}).get("findings", {})
    per_finding, reliability, curves = {}, {}, {}
    for j, f in enumerate(findings):
        known = metrics.labelled(y[:, j])
        yj, pj, raw = y[known, j], p[known, j], raw_p[known, j]
        estimate = metrics.expected_auroc(pj)
        reliability[f] = {"after": metrics.reliability(yj, pj), "before": metrics.reliability(yj, raw)}
        curves[f] = metrics.curves(yj, pj) if len(yj) else metrics.curves(np.zeros(1), np.zeros(1))
        per_finding[f] = {
            "labelled": int(known.sum()),
            "positives": int(yj.sum()),
            "prevalence": float(yj.mean()) if len(yj) else float("nan"),
            "auroc": here["auroc"][j],
            "auroc_ci": here["ci"][j],
            **{name: function(yj, pj) for name, function in FINDING_METRICS.items()},
            # What the calibrated probabilities promise without labels, on the same images: how far a
            # site can trust it (on NIH test, where the calibration was meant to hold, the yardstick).
            "auroc_estimate": estimate,
            "auroc_estimate_error": estimate - here["auroc"][j],
            "calibration": {
                "method": maps.get(f, {}).get("method", "none"),
                "note": map_note(maps.get(f)),
                **transfer(yj, pj, raw),
            },
            "operating_points": metrics.at_points(yj, pj, thresholds, f, weights[:, known]),
            "operating_points_notes": point_notes(thresholds, f),
        }
        if nih is not None:
            per_finding[f] |= {
                "nih_prevalence": float(ny[:, j].mean()),
                "nih_auroc": there["auroc"][j],
                "nih_auroc_ci": there["ci"][j],
                "nih_auroc_estimate": metrics.expected_auroc(npred[:, j]),
                "drop": drop["per_column"][j],
            }
    change = [
        abs(metrics.weighted_auroc(y[:, j], p[:, j]) - metrics.weighted_auroc(y[:, j], raw_p[:, j]))
        for j in range(len(findings))
    ]
    result = {
        **about,
        "labelled": True,
        "images": int(len(judged)),
        "patients": int(judged.patient_id.nunique()),
        "labelled_findings": list(findings),
        "findings": per_finding,
        "mean_auroc": here["mean_auroc"],
        "mean_auroc_ci": here["mean_ci"],
        "bootstrap": {"replicates": n_boot, "unit": "patient", "level": 0.95, "seed": seed},
        "calibration": {
            "method": calibration["method"] if calibration else "none",
            "fitted_on": calibration.get("fitted_on", "nih val") if calibration else None,
            "shared": [f for f in calibration["shared"] if f in findings] if calibration else [],
            "shared_temperature": calibration.get("shared_temperature") if calibration else None,
            "min_positives": calibration.get("min_positives") if calibration else None,
            "at_bound": [f for f in calibration.get("at_bound", []) if f in findings] if calibration else [],
            "before": metrics.bootstrap_calibration(y, raw_p, patients, n_boot, seed),
            "after": metrics.bootstrap_calibration(y, p, patients, n_boot, seed),
            "auroc_max_change": float(np.nanmax(change)) if np.isfinite(change).any() else None,
        },
        "thresholds_chosen_on": thresholds.get("chosen_on", "nih val"),
        "operating_point_targets": thresholds.get("targets"),
        "subgroups": subgroups(judged, called(thresholds["max_f1"]), n_boot, seed, findings=findings),
        "tta": tta_section(rows, n_boot, seed, findings),
    }
    if dataset in PUBLISHED and not synthetic:
        result["published"] = {
            name: {"auroc": dict(zip(FINDINGS, vals)), "mean_auroc": float(np.mean(vals))}
            for name, vals in PUBLISHED[dataset].items()
        }
    if nih is not None:
        result["nih"] = {"images": int(len(nih)), "mean_auroc": there["mean_auroc"], "mean_auroc_ci": there["mean_ci"]}
        result["drop"] = drop["mean"]
    drawn = {"curves": curves, "reliability": reliability, "rows": judged}
    if site is not None:
        site = dict(site)
        held, fitted, points = site.pop("rows"), site.pop("calibration"), site.pop("thresholds")
        compared = site_beside_nih(held, list(findings), calibration, fitted, points, n_boot, seed)
        drawn["site_reliability"] = compared.pop("reliability")
        result["recalibration"] = {**compared, **site}
    return validate(json_safe(result)), drawn


LEFT_OUT_NAMED = 20  # the left-out images a result names (all are counted)


def left_out(expected: pd.Series | None, rows: pd.DataFrame) -> dict | None:
    """The images of the collection's table meant for this judgement that have no score (an image the
    shard step could not decode is skipped there, and listed in its bad-images file): counted, the first
    `LEFT_OUT_NAMED` named, so a report's image count and its data table's can be told apart."""
    if expected is None:
        return None
    missing = sorted(set(expected.astype(str)) - set(rows.image_index.astype(str)))
    return {"expected": int(expected.nunique()), "images": len(missing), "named": missing[:LEFT_OUT_NAMED]}


def own_site(rows: pd.DataFrame, calibration: dict, thresholds: dict) -> dict:
    """A split collection's own calibration and operating points (fitted on its val split), for its
    judged (test) rows: `judge`'s `site`."""
    return {"rows": rows, "calibration": calibration, "thresholds": thresholds}


def local_site(
    rows: pd.DataFrame,
    calibration: dict,
    fraction: float,
    split_seed: int,
    method: str,
    min_positives: int,
    prior_sd: float = PRIOR_SD,
) -> dict:
    """On a collection without splits: a calibration fitted (by `calibration.fit_table`, the fitter of
    the calibrate step, with the run's class-weight offsets, few-positive findings shrunk towards the
    NIH `calibration` with prior SD `prior_sd`) on a patient-wise `fraction` of
    its `rows` (seeded), to report the rest with the NIH calibration and with the local one side by
    side: `judge`'s `site`."""
    ids = np.unique(rows.patient_id.to_numpy())
    chosen = np.random.default_rng(split_seed).permutation(ids)[: int(round(fraction * len(ids)))]
    fitting = rows.patient_id.isin(chosen).to_numpy()
    if fitting.all() or not fitting.any():
        raise ValueError(f"recalibrate={fraction} leaves no patient on one side ({len(ids)} patients)")
    # The run's class-weight offsets, whatever NIH's maps are (a Platt map has none of its own to read).
    offsets = calibration.get("offsets") or {f: calibration["findings"][f].get("offset", 0.0) for f in FINDINGS}
    local = fit_table(rows[fitting], method, min_positives, offsets, calibration, prior_sd)
    return {
        "rows": rows[~fitting],
        "calibration": local,
        "thresholds": None,
        "fitted_on": f"a patient-wise {fraction:.0%} of the collection (seed {split_seed})",
        "fraction": fraction,
        "seed": split_seed,
        "fit_patients": int(len(chosen)),
        "fit_images": int(fitting.sum()),
    }


def point_notes(chosen: dict, finding: str) -> dict[str, str]:
    """What a finding's operating points rest on, per rule, where a reader must be told ({} when
    nothing needs saying): why a rule has no point (no val positives, a target no threshold meets), or
    that it was chosen on fewer val positives than the calibration's `min_positives` (a max-F1 point
    on 2 positives). `chosen`: a thresholds.json (older ones carry no reasons: {})."""
    notes = {}
    positives = chosen.get("val_positives", {}).get(finding)
    few = finding in chosen.get("few_positives", [])
    for rule in metrics.OPERATING_RULES:
        if chosen[rule].get(finding) is None:
            notes[rule] = chosen.get("reasons", {}).get(rule, {}).get(finding, "no operating point was chosen")
        elif few:
            notes[rule] = (
                f"chosen on only {positives} val positives (fewer than {chosen['min_positives']}): "
                "its test sensitivity may be far from val's"
            )
    return notes


def map_note(fitted: dict | None) -> str | None:
    """What a finding's calibration map rests on, where a reader must be told: the shared map (too few
    val positives), an own fit that stopped at the optimiser's bound, or no map at all."""
    if not fitted or fitted["method"] not in (SHARED, UNLABELLED) and not fitted.get("at_bound"):
        return None
    return fitted.get("reason")


def called(chosen: dict[str, float | None]) -> dict[str, float]:
    """Max-F1 thresholds to call findings by, a finding without an operating point never called."""
    return {f: np.inf if t is None else t for f, t in chosen.items()}


def transfer(y: np.ndarray, p: np.ndarray, raw: np.ndarray) -> dict:
    """One finding's calibration on the collection: ECE and Brier of the probabilities `p` (and of the
    raw scores), and calibration-in-the-large, the mean probability against the observed prevalence."""
    keys = ("ece", "ece_adaptive", "brier")
    if not len(y):
        nan = dict.fromkeys(keys, float("nan"))
        return {**nan, "before": nan, **dict.fromkeys(("mean_predicted", "observed", "in_the_large"), float("nan"))}
    after, before = metrics.reliability(y, p), metrics.reliability(y, raw)
    return {
        **{k: after[k] for k in keys},
        "before": {k: before[k] for k in keys},
        "mean_predicted": float(p.mean()),
        "observed": float(y.mean()),
        "in_the_large": float(p.mean() - y.mean()),
    }


def site_beside_nih(
    held: pd.DataFrame,
    names: list[str],
    calibration: dict,
    site: dict,
    site_thresholds: dict | None,
    n_boot: int,
    seed: int,
) -> dict:
    """The `held` rows (a split collection's test split, or what a local recalibration left) under
    the NIH `calibration` and the `site` one side by side: per finding ECE, Brier and calibration in
    the large under each, and at the `site_thresholds` (chosen on the site's val) the test
    sensitivity, specificity, PPV and NPV with CIs; the means with patient-bootstrap CIs."""
    y, raw = prediction_table.arrays(held, names)
    by = {name: prediction_table.arrays(calibrated(held, fitted), names)[1]
          for name, fitted in (("nih", calibration), ("site", site))}  # fmt: skip
    patients = held.patient_id.to_numpy()
    weights = metrics.patient_bootstrap_weights(patients, n_boot, seed)
    per_finding, reliability = {}, {}
    for j, f in enumerate(names):
        known = metrics.labelled(y[:, j])
        yj = y[known, j]
        per_finding[f] = {
            "method": site["findings"][f]["method"],
            "note": map_note(site["findings"][f]),
            **{name: transfer(yj, p[known, j], raw[known, j]) for name, p in by.items()},
        }
        reliability[f] = metrics.reliability(yj, by["site"][known, j]) if len(yj) else None
        if site_thresholds is not None:
            per_finding[f]["operating_points"] = metrics.at_points(
                yj, by["site"][known, j], site_thresholds, f, weights[:, known]
            )
            per_finding[f]["operating_points_notes"] = point_notes(site_thresholds, f)
    return {
        "fitted_on": site.get("fitted_on", "the collection"),
        "method": site["method"],
        "report_patients": int(held.patient_id.nunique()),
        "report_images": int(len(held)),
        "thresholds_chosen_on": site_thresholds and site_thresholds["chosen_on"],
        "targets": site_thresholds and site_thresholds["targets"],
        "findings": per_finding,
        "mean": {name: metrics.bootstrap_calibration(y, p, patients, n_boot, seed) for name, p in by.items()},
        "reliability": reliability,
    }
