"""Step `evaluate`: a run's predictions on a collection, judged, with the HTML report.

On NIH, whose val split the run's own calibration and operating points are fitted on (the calibrate
step), the official test split is judged: the numbers (`assess`) and what its network looked at
(`explain`, for a trained run). On another collection, everything NIH fixed is applied as it is,
beside the run's NIH test figures: only the findings the collection labels are scored, each only on
the images labelled for it. A split collection is a site of its own: its test split is also reported
with the calibration and operating points fitted on its val split, side by side with NIH's. An unsplit
one with `recalibrate` > 0 refits the calibration on a patient-wise part of it and reports the rest
with both.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, prediction_table
from ..assess import assess, subgroups
from ..calibration import calibrated, fit
from ..constants import EXTERNAL, FINDINGS
from ..files import json_safe, write_json
from ..report import render, render_external, render_unlabelled
from ..settings import EvaluateSettings

log = logging.getLogger(__name__)


def evaluate(
    *,
    predictions,
    calibration,
    thresholds,
    nih_predictions,
    site_calibration,
    site_thresholds,
    ingest_report,
    model,
    test_manifest,
    table,
    cleaning_report,
    boxes,
    expert_labels,
    evaluation,
    report,
    figures,
    settings: EvaluateSettings,
    run: str,
    dataset: str,
    ensemble_of: list[str] | None,
    model_card: str,
    recalibrate: float,
    seed: int,
    calibration_method: str,
    min_positives: int,
    threads: int | None = None,
) -> dict:
    """A run's `predictions` on collection `dataset` with its NIH `calibration` and `thresholds` (its
    operating points), to `evaluation` (metrics JSON) and the HTML `report` with its `figures/`.

    What the collection has decides what is judged. Beside NIH (`nih_predictions`, the run's NIH
    scores, given with the collection's `ingest_report`): the collection's figures beside the NIH test
    ones; a split collection's own `site_calibration` and `site_thresholds` beside NIH's; else
    `recalibrate`, `seed`, `calibration_method` and `min_positives` for a local calibration. On NIH
    itself (those None): the official test split; a trained run's `model` and `test_manifest` for Grad-CAM and the
    `boxes`; `expert_labels` when present; NIH's `table` and `cleaning_report` drawn in the report,
    which links the run's `model_card`."""
    if nih_predictions is not None:
        return _beside_nih(
            predictions=predictions, nih_predictions=nih_predictions, calibration=calibration,
            thresholds=thresholds, site_calibration=site_calibration, site_thresholds=site_thresholds,
            ingest_report=ingest_report, evaluation=evaluation, report=report, figures=figures, settings=settings,
            run=run, dataset=dataset, recalibrate=recalibrate, seed=seed, calibration_method=calibration_method,
            min_positives=min_positives,
        )  # fmt: skip
    # On NIH: calibrated with its calibration (fitted on val), the official test split, the operating
    # points chosen on calibrated val; Grad-CAM and localisation for a trained run (an ensemble, its
    # members `ensemble_of`, has neither); expert labels when given. Only Grad-CAM needs TensorFlow (5 s
    # to import), so only a trained run's NIH judgement imports it.
    scored = prediction_table.read(predictions)
    prediction_table.check_tta(scored, settings.tta, predictions)
    result = assess(
        scored,
        calibration=json.loads(Path(calibration).read_text()),
        thresholds=json.loads(Path(thresholds).read_text()),
        expert_csv=expert_labels,
        n_boot=settings.n_boot,
        seed=settings.seed,
    )
    numbers = result["metrics"]
    if model is None:
        explained = {
            "model": {"backbone": "ensemble of " + " + ".join(ensemble_of), "members": ensemble_of, "image_size": None},
            "localisation": None,
            "localisation_examples": [],
            "gallery": [],
        }
    else:
        from ..data import use_threads
        from ..explain import explain

        use_threads(threads)
        explained = explain(
            model, test_manifest, result["test"], numbers["operating_points"], boxes, settings.gallery_k,
            settings.batch_size,
        )  # fmt: skip
    numbers["localisation"], numbers["model"] = explained["localisation"], explained["model"]
    numbers = json_safe(numbers)
    log.info(
        "test mean AUROC %.4f (95%% CI %.4f-%.4f) on %d images",
        numbers["mean_auroc"], *numbers["mean_auroc_ci"], numbers["images"],
    )  # fmt: skip
    write_json(numbers, evaluation)
    drawn = {**result, "metrics": numbers, **{k: explained[k] for k in ("gallery", "localisation_examples")}}
    render(drawn, pd.read_parquet(table), json.loads(Path(cleaning_report).read_text()), report, figures,
           title=f"cxr14 evaluation: run {run}", model_card=model_card)  # fmt: skip
    return numbers


def _beside_nih(
    *,
    predictions,
    nih_predictions,
    calibration,
    thresholds,
    site_calibration,
    site_thresholds,
    ingest_report,
    evaluation,
    report,
    figures,
    settings: EvaluateSettings,
    run: str,
    dataset: str,
    recalibrate: float,
    seed: int,
    calibration_method: str,
    min_positives: int,
) -> dict:
    """The run's `predictions` on collection `dataset` (its `ingest_report` says what it labels),
    with the run's NIH `calibration` and `thresholds`, beside its `nih_predictions` on NIH test, to
    `evaluation` (JSON) and the HTML `report` with its `figures/`. A split collection's own
    `site_calibration` and `site_thresholds` are reported beside NIH's; on an unsplit one,
    `recalibrate`, `seed`: the share of its patients a local calibration (`calibration_method`,
    `min_positives`) is fitted on."""
    external = prediction_table.read(predictions, EXTERNAL)
    if external.empty:
        raise ValueError(f"{predictions}: no external rows")
    prediction_table.check_tta(external, settings.tta, predictions)
    collection = json.loads(Path(ingest_report).read_text())
    if not collection["labelled_findings"]:
        return _unlabelled(external, collection, evaluation, report, figures, run, dataset)
    fitted = json.loads(Path(calibration).read_text())
    numbers, drawn = judge(
        external,
        prediction_table.read(nih_predictions, "test"),
        calibration=fitted,
        thresholds=json.loads(Path(thresholds).read_text()),
        findings=collection["labelled_findings"],
        n_boot=settings.n_boot,
        seed=settings.seed,
    )
    if site_calibration is not None:
        numbers["recalibration"] = site_beside_nih(
            external, list(numbers["findings"]), fitted, json.loads(Path(site_calibration).read_text()),
            json.loads(Path(site_thresholds).read_text()), settings.n_boot, settings.seed,
        )  # fmt: skip
    elif recalibrate > 0:
        numbers["recalibration"] = local_recalibration(
            external, numbers["findings"], fitted, recalibrate, seed,
            calibration_method, min_positives, settings.n_boot, settings.seed,
        )  # fmt: skip
    if "recalibration" in numbers:
        drawn["site_reliability"] = numbers["recalibration"].pop("reliability")
    numbers = json_safe({"run": run, "dataset": dataset, "collection": collection, **numbers})
    write_json(numbers, evaluation)
    render_external(numbers, drawn, report, figures, title=f"cxr14 external validation: run {run} on {dataset}")
    log.info(
        "%s on %s: mean AUROC %.4f over %d findings (NIH test %.4f, drop %+.4f)", run, dataset,
        numbers["mean_auroc"], len(numbers["findings"]), numbers["nih"]["mean_auroc"], numbers["drop"]["diff"],
    )  # fmt: skip
    return numbers


def _unlabelled(external: pd.DataFrame, collection: dict, evaluation, report, figures, run: str, dataset: str) -> dict:
    """A collection without labels: nothing to judge, and its report says so (the monitor step's says
    what can be said without labels)."""
    numbers = {"run": run, "dataset": dataset, "labelled": False, "collection": collection,
               "images": int(len(external)), "patients": int(external.patient_id.nunique())}  # fmt: skip
    write_json(json_safe(numbers), evaluation)
    render_unlabelled(numbers, report, figures, title=f"cxr14 external validation: run {run} on {dataset}")
    log.info("%s on %s: no labels, nothing to judge (see its monitoring report)", run, dataset)
    return numbers


def judge(
    external: pd.DataFrame,
    nih: pd.DataFrame,
    *,
    calibration: dict,
    thresholds: dict,
    findings: list[str],
    n_boot: int,
    seed: int,
) -> tuple[dict, dict]:
    """The numbers of the external report (JSON-ready but for NaN) and what its figures draw."""
    if not findings:
        raise ValueError("the collection labels none of the 14 findings")
    _, raw_p = prediction_table.arrays(external, findings)
    ext = calibrated(external, calibration)
    y, p = prediction_table.arrays(ext, findings)
    ny, npred = prediction_table.arrays(calibrated(nih, calibration), findings)
    patients, nih_patients = ext.patient_id.to_numpy(), nih.patient_id.to_numpy()
    here = metrics.bootstrap_auroc(y, p, patients, n_boot, seed)
    there = metrics.bootstrap_auroc(ny, npred, nih_patients, n_boot, seed)
    drop = metrics.independent_bootstrap((ny, npred, nih_patients), (y, p, patients), n_boot, seed)
    reliability, per_finding = {}, {}
    weights = metrics.patient_bootstrap_weights(patients, n_boot, seed)
    for j, f in enumerate(findings):
        known = metrics.labelled(y[:, j])
        yj, pj, raw = y[known, j], p[known, j], raw_p[known, j]
        estimate = metrics.expected_auroc(pj)
        reliability[f] = {"after": metrics.reliability(yj, pj), "before": metrics.reliability(yj, raw)}
        per_finding[f] = {
            "labelled": int(known.sum()),
            "positives": int(yj.sum()),
            "prevalence": float(yj.mean()) if len(yj) else float("nan"),
            "nih_prevalence": float(ny[:, j].mean()),
            "auroc": here["auroc"][j],
            "auroc_ci": here["ci"][j],
            # What the NIH-calibrated probabilities promise without labels, on the same images (and on
            # NIH test, where the calibration was meant to hold): how far a site can trust it.
            "auroc_estimate": estimate,
            "auroc_estimate_error": estimate - here["auroc"][j],
            "nih_auroc_estimate": metrics.expected_auroc(npred[:, j]),
            "nih_auroc": there["auroc"][j],
            "nih_auroc_ci": there["ci"][j],
            "drop": drop["per_column"][j],
            "calibration": transfer(yj, pj, raw),
            "operating_points": metrics.at_points(yj, pj, thresholds, f, weights[:, known]),
        }
    numbers = {
        "images": int(len(ext)),
        "patients": int(ext.patient_id.nunique()),
        "labelled_findings": list(findings),
        "findings": per_finding,
        "mean_auroc": here["mean_auroc"],
        "mean_auroc_ci": here["mean_ci"],
        "nih": {"images": int(len(nih)), "mean_auroc": there["mean_auroc"], "mean_auroc_ci": there["mean_ci"]},
        "drop": drop["mean"],
        "bootstrap": {"replicates": n_boot, "unit": "patient", "level": 0.95, "seed": seed},
        "calibration": {
            "method": calibration["method"],
            "fitted_on": "NIH val",
            "shared": [f for f in calibration["shared"] if f in findings],
            "before": metrics.bootstrap_calibration(y, raw_p, patients, n_boot, seed),
            "after": metrics.bootstrap_calibration(y, p, patients, n_boot, seed),
        },
        "thresholds_chosen_on": thresholds.get("chosen_on", "val"),
        "subgroups": subgroups(ext, thresholds["max_f1"], n_boot, seed, findings=findings),
    }
    return numbers, {"reliability": reliability}


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


def local_recalibration(
    external: pd.DataFrame,
    findings: dict,
    calibration: dict,
    fraction: float,
    split_seed: int,
    method: str,
    min_positives: int,
    n_boot: int,
    seed: int,
) -> dict:
    """On a collection without splits: fit the calibration on a patient-wise `fraction` of it (seeded),
    and report the rest with the NIH calibration and with the local one, side by side."""
    ids = np.unique(external.patient_id.to_numpy())
    chosen = np.random.default_rng(split_seed).permutation(ids)[: int(round(fraction * len(ids)))]
    fitting = external.patient_id.isin(chosen).to_numpy()
    if fitting.all() or not fitting.any():
        raise ValueError(f"recalibrate={fraction} leaves no patient on one side ({len(ids)} patients)")
    part = external[fitting]
    logits = prediction_table.logits(part)
    local = {"method": method, "findings": {}}
    for k, f in enumerate(FINDINGS):
        if f not in findings:
            local["findings"][f] = {"method": "none", "reason": "not labelled by the collection"}
            continue
        yf = part[prediction_table.label(f)].to_numpy()
        known = metrics.labelled(yf)
        offset = calibration["findings"][f].get("offset", 0.0)
        local["findings"][f] = fit(yf[known], logits[known, k], method, min_positives, offset)
    compared = site_beside_nih(external[~fitting], list(findings), calibration, local, None, n_boot, seed)
    return {
        **compared,
        "fitted_on": f"a patient-wise {fraction:.0%} of the collection (seed {split_seed})",
        "fraction": fraction,
        "seed": split_seed,
        "fit_patients": int(len(chosen)),
        "fit_images": int(fitting.sum()),
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
            **{name: transfer(yj, p[known, j], raw[known, j]) for name, p in by.items()},
        }
        reliability[f] = metrics.reliability(yj, by["site"][known, j]) if len(yj) else None
        if site_thresholds is not None:
            per_finding[f]["operating_points"] = metrics.at_points(
                yj, by["site"][known, j], site_thresholds, f, weights[:, known]
            )
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
