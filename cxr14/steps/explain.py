"""Step `explain`: what a trained run's network looked at on NIH test (Grad-CAM galleries, and the
pointing game and IoU against the NIH boxes), a step of its own beside the evaluate step's judgement,
whose report on NIH links its page. It runs no judgement (a change to the metrics does not rerun it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import prediction_table
from ..calibration import calibrated
from ..files import json_safe, write_json
from ..report import render_explanation
from ..settings import EvaluateSettings

log = logging.getLogger(__name__)


def nih_test(predictions, calibration):
    """The run's NIH test rows, calibrated with its NIH calibration."""
    scored = prediction_table.read(predictions)
    return calibrated(scored, json.loads(Path(calibration).read_text())).query("split == 'test'").reset_index(drop=True)


def explain(
    *,
    model,
    test_manifest,
    predictions,
    calibration,
    thresholds,
    boxes,
    explanation,
    page,
    settings: EvaluateSettings,
    run: str,
    threads: int | None = None,
    synthetic: bool = False,
) -> dict:
    """A trained run's `model` on NIH test (the shards of `test_manifest`; its `predictions` calibrated
    with its NIH `calibration`): Grad-CAM of the most confident true and false positives and false
    negatives at its max-F1 operating points (`thresholds`), and the localisation against the NIH
    `boxes`, to `explanation` (JSON) and `page` (HTML)."""
    from .. import explain as explaining
    from ..data import use_threads

    use_threads(threads)
    chosen = json.loads(Path(thresholds).read_text())
    test = nih_test(predictions, calibration)
    points = {f: {"max_f1": {"threshold": chosen["max_f1"][f]}} for f in chosen["max_f1"]}
    explained = explaining.explain(model, test_manifest, test, points, boxes, settings.gallery_k, settings.batch_size)
    numbers = json_safe({"run": run, "model": explained["model"], "localisation": explained["localisation"]})
    write_json(numbers, explanation)
    render_explanation(explained, page, title=f"cxr14 Grad-CAM and localisation: run {run} on NIH test",
                       synthetic=synthetic)  # fmt: skip
    log.info("%s: Grad-CAM of %d picks, %d boxed findings", run, len(explained["gallery"]),
             len(explained["localisation"] or {}))  # fmt: skip
    return numbers
