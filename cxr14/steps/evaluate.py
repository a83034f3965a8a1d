"""Step `evaluate`: a run's predictions on a collection, judged (`assess.judge`), with the HTML report.

One judgement for every collection, from the same inputs: the run's scores on it, its NIH test scores,
every site's calibration and operating points, the collection's table and the report of the step that
made it. NIH's official test split is judged with NIH's calibration and operating points (fitted on its
val split); another collection with the same, beside the run's NIH test figures, on the findings it
labels, each only on the images labelled for it. A split collection is a site of its own: its test split
is also reported with the calibration and operating points fitted on its val split, side by side with
NIH's. An unsplit one with `recalibrate` > 0 refits the calibration (the calibrate step's fitter) on a
patient-wise part of it and reports the rest with both. What only NIH has is a step of its own
(`explain`: Grad-CAM and the boxes; `expert_labels`), linked from the report (`pages`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .. import prediction_table
from ..assess import METRIC_LABELS, judge, local_site, own_site
from ..constants import FINDINGS, NIH
from ..files import write_json
from ..prediction_table import EXTERNAL
from ..report import render
from ..settings import EvaluateSettings

log = logging.getLogger(__name__)

NIH_SPLIT = "official test split (test_list.txt)"


def evaluate(
    *,
    predictions,
    nih_predictions,
    calibrations: list,
    operating_points: list,
    table,
    collection,
    evaluation,
    report,
    figures,
    settings: EvaluateSettings,
    run: str,
    dataset: str,
    members: list[str] | None,
    pages: dict,
    model_card: str,
    recalibrate: float,
    seed: int,
    calibration_method: str,
    min_positives: int,
    prior_sd: float,
    synthetic: bool = False,
) -> dict:
    """A run's `predictions` on collection `dataset`, judged, to `evaluation` (metrics JSON, of the one
    schema) and the HTML `report` with its `figures/`.

    `nih_predictions`: the run's NIH scores (its test split is judged beside another collection's);
    `calibrations` and `operating_points`: every site's (NIH's first; the collection's own when it is a
    site); `table` and `collection`: the collection's table and its cleaning or ingest report. On an
    unsplit collection, `recalibrate`, `seed`, `calibration_method`, `min_positives` and `prior_sd` for
    a local calibration. `members`: an ensemble's runs; `pages`: {link: title} of the pages beside the report
    (the monitoring report, NIH's Grad-CAM and expert labels), linked from it, as is the `model_card`.
    `synthetic`: the collection is the demo's phantom data (every page says so)."""
    sites = {}
    for c, t in zip(calibrations, operating_points, strict=True):
        fitted = json.loads(Path(c).read_text())
        sites[fitted.get("site", NIH)] = (fitted, json.loads(Path(t).read_text()))
    calibration, thresholds = sites[NIH]
    described = json.loads(Path(collection).read_text())
    on_nih = dataset == NIH
    if on_nih:  # the test rows in the table's order, as the NIH judgement always took them
        scored = prediction_table.read(predictions)
        rows = scored[scored.split == "test"].reset_index(drop=True)
    else:
        rows = prediction_table.read(predictions, EXTERNAL)
    if rows.empty:
        raise ValueError(f"{predictions}: no {'test' if on_nih else 'external'} rows")
    prediction_table.check_tta(rows, settings.tta, predictions)
    findings = list(FINDINGS) if on_nih else described["labelled_findings"]
    site = None
    if not on_nih and findings:
        if dataset in sites:
            site = own_site(rows, *sites[dataset])
        elif recalibrate > 0:
            site = local_site(rows, calibration, recalibrate, seed, calibration_method, min_positives, prior_sd)
    split_collection = bool(described.get("policy", {}).get("split"))
    split = NIH_SPLIT if on_nih else ("test split" if split_collection else "every image")
    images = pd.read_parquet(table)
    expected = images.image_index[images.split == "test"] if on_nih or split_collection else images.image_index
    result, drawn = judge(
        rows,
        run=run,
        dataset=dataset,
        collection=described,
        split=split,
        findings=findings,
        calibration=calibration,
        thresholds=thresholds,
        n_boot=settings.n_boot,
        seed=settings.seed,
        members=members,
        nih=None if on_nih else prediction_table.read(nih_predictions, "test"),
        site=site,
        expected=expected,
        synthetic=synthetic,
    )
    write_json(result, evaluation)
    title = f"cxr14 evaluation: run {run}" if on_nih else f"cxr14 external validation: run {run} on {dataset}"
    render(result, drawn, images, report, figures, title=title, model_card=model_card, pages=pages,
           metric_labels=METRIC_LABELS)  # fmt: skip
    if not result["labelled"]:
        log.info("%s on %s: no labels, nothing to judge (see its monitoring report)", run, dataset)
    elif on_nih:
        log.info("%s on NIH test: mean AUROC %s (95%% CI %s-%s) on %d images", run, _n(result["mean_auroc"]),
                 *map(_n, result["mean_auroc_ci"]), result["images"])  # fmt: skip
    else:
        log.info(
            "%s on %s: mean AUROC %s over %d findings (NIH test %s, drop %s)", run, dataset,
            _n(result["mean_auroc"]), len(findings), _n(result["nih"]["mean_auroc"]), _n(result["drop"]["diff"]),
        )  # fmt: skip
    return result


def _n(value) -> str:
    """A number for the log (unknown: NaN, written as null)."""
    return "nan" if value is None else f"{value:.4f}"
