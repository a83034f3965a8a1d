"""The evaluation's numbers from a predictions table alone (cxr14/assess.py)."""

import pandas as pd
import pytest

from cxr14 import assess
from cxr14.constants import FINDINGS


def test_thresholds_are_chosen_on_val_and_applied_on_test():
    val = pd.DataFrame({f"y_{f}": [0, 0, 1, 1] for f in FINDINGS} | {f"p_{f}": [0.1, 0.3, 0.6, 0.9] for f in FINDINGS})
    test = pd.DataFrame(
        {f"y_{f}": [0, 1, 1, 0] for f in FINDINGS} | {f"p_{f}": [0.2, 0.65, 0.5, 0.7] for f in FINDINGS}
    )
    points = assess.operating_points(val, test)
    op = points["Mass"]["max_f1"]
    assert op["threshold"] == pytest.approx(0.6)  # perfect separation on val
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (1, 1, 1, 1)
    assert op["precision"] == 0.5 and op["sensitivity"] == 0.5 and op["specificity"] == 0.5 and op["f1"] == 0.5
    assert points["Mass"]["youden"]["threshold"] == pytest.approx(0.6)
