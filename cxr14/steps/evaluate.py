"""Step `evaluate`: a run's predictions, calibrated, judged on the official test split: the numbers
(`assess`), what its network looked at (`explain`, for a trained run), and the HTML report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from .. import prediction_table
from ..assess import assess
from ..constants import FINDINGS
from ..data import use_threads
from ..explain import explain
from ..files import json_safe, write_json
from ..report import render
from ..workflow.runs import EvaluateSettings

log = logging.getLogger(__name__)


def evaluate(
    *,
    predictions,
    calibration,
    model,
    test_manifest,
    table,
    cleaning_report,
    boxes,
    expert_labels,
    evaluation,
    thresholds,
    report,
    figures,
    run: str,
    ensemble_of: list[str] | None,
    model_card: str,
    settings: EvaluateSettings,
    threads: int | None = None,
) -> dict:
    """A run's `predictions`, calibrated with its `calibration` (fitted on val), on the official test
    split (operating points chosen on calibrated val), to `evaluation` (the metrics JSON), `thresholds`
    (JSON) and the HTML `report` with its `figures/`. A trained run's `model` and `test_manifest` give
    Grad-CAM and localisation; an ensemble (`ensemble_of` its members) has neither (None). Without
    `expert_labels` (None) that section is left out. `model_card`: the run's model card page, linked."""
    use_threads(threads)
    scored = prediction_table.read(predictions)
    prediction_table.check_tta(scored, settings.tta, predictions)
    result = assess(
        scored,
        calibration=json.loads(Path(calibration).read_text()),
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
    points = numbers["thresholds"]
    chosen = {rule: {f: points[f][rule] for f in FINDINGS} for rule in ("max_f1", "youden")}
    write_json(chosen | {"chosen_on": "val"}, thresholds)
    drawn = {**result, "metrics": numbers, **{k: explained[k] for k in ("gallery", "localisation_examples")}}
    render(drawn, pd.read_parquet(table), json.loads(Path(cleaning_report).read_text()), report, figures,
           title=f"cxr14 evaluation: run {run}", model_card=model_card)  # fmt: skip
    return numbers
