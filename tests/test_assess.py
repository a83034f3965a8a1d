"""The evaluation's numbers from a predictions table alone (cxr14/assess.py)."""

import numpy as np
import pandas as pd
import pytest

from cxr14 import assess
from cxr14.constants import FINDINGS


def test_thresholds_are_chosen_on_val_and_applied_on_test():
    val = pd.DataFrame({f"y_{f}": [0, 0, 1, 1] for f in FINDINGS} | {f"p_{f}": [0.1, 0.3, 0.6, 0.9] for f in FINDINGS})
    test = pd.DataFrame(
        {f"y_{f}": [0, 1, 1, 0] for f in FINDINGS} | {f"p_{f}": [0.2, 0.65, 0.5, 0.7] for f in FINDINGS}
    )
    from cxr14 import metrics

    chosen = {rule: {} for rule in metrics.OPERATING_RULES}
    for f in FINDINGS:
        for rule, t in metrics.thresholds(val[f"y_{f}"].to_numpy(), val[f"p_{f}"].to_numpy(), 0.9, 0.9).items():
            chosen[rule][f] = t
    test["patient_id"] = [1, 2, 3, 4]
    points = assess.operating_points(test, chosen, metrics.patient_bootstrap_weights(test.patient_id, 200, 0))
    op = points["Mass"]["max_f1"]
    assert op["threshold"] == pytest.approx(0.6)  # perfect separation on val
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (1, 1, 1, 1)
    assert op["precision"] == 0.5 and op["sensitivity"] == 0.5 and op["specificity"] == 0.5 and op["f1"] == 0.5
    assert op["sensitivity_ci"][0] <= 0.5 <= op["sensitivity_ci"][1] and op["npv_ci"][0] < op["npv_ci"][1]
    assert points["Mass"]["youden"]["threshold"] == pytest.approx(0.6)
    # On val, sensitivity 0.9 needs both positives (the higher one alone is 0.5): the threshold is 0.6;
    # specificity 0.9 needs both negatives below it: the lowest such threshold is the next score, 0.6.
    assert chosen["sensitivity"]["Mass"] == pytest.approx(0.6) and chosen["specificity"]["Mass"] == pytest.approx(0.6)
    assert points["Mass"]["sensitivity"]["threshold"] == pytest.approx(0.6)


def test_operating_points_meet_their_targets_on_val_at_the_strictest_threshold():
    from cxr14 import metrics

    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.2
    score = np.where(y, rng.normal(1, 1, 2000), rng.normal(0, 1, 2000))
    chosen = metrics.thresholds(y.astype(int), score, sensitivity=0.8, specificity=0.95)
    sens = lambda t: (score[y] >= t).mean()  # noqa: E731
    spec = lambda t: (score[~y] < t).mean()  # noqa: E731
    # Each is a score, and the next score up (down) would miss the target.
    higher, lower = score[score > chosen["sensitivity"]].min(), score[score < chosen["specificity"]].max()
    assert sens(chosen["sensitivity"]) >= 0.8 > sens(higher)
    assert spec(chosen["specificity"]) >= 0.95 > spec(lower)
    assert (score[~y] >= metrics.thresholds(y.astype(int), score, 0.8, 1.0)["specificity"]).sum() == 0
    # A specificity only calling nothing positive reaches (the top score is a negative's): above every score.
    top = metrics.thresholds(np.array([0, 1, 0]), np.array([3.0, 1.0, 0.0]), 0.8, 1.0)["specificity"]
    assert top > 3.0 and np.isfinite(top)
