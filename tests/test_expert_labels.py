"""Step `expert_labels` (cxr14/steps/expert_labels.py): a run's NIH test scores against the expert labels,
a step of its own beside the judgement."""

import json

import pytest
from sklearn.metrics import roc_auc_score

from conftest import synthetic_predictions
from cxr14.constants import FINDINGS
from cxr14.steps.expert_labels import expert_labels


def test_the_expert_labels_are_judged_on_the_calibrated_nih_test_scores(tmp_path):
    scored = synthetic_predictions(tmp_path / "pred.parquet", seed=0, noise=0.3)
    test = scored[scored.split == "test"]
    labelled = test.head(30)
    rows = ["Image Index,Pneumothorax,Nodule or mass"] + [
        f"{r.image_index},{'YES' if r.y_Pneumothorax else 'NO'},{'YES' if k % 3 == 0 else 'NO'}"
        for k, r in enumerate(labelled.itertuples())
    ]
    (tmp_path / "expert.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "calibration.json").write_text(json.dumps({
        "site": "nih", "method": "platt", "findings": {f: {"method": "platt", "a": 2.0, "b": -1.0} for f in FINDINGS},
    }))  # fmt: skip
    out = tmp_path / "expert_labels.json"
    m = expert_labels(predictions=tmp_path / "pred.parquet", calibration=tmp_path / "calibration.json",
                      labels=tmp_path / "expert.csv", comparison=out, page=tmp_path / "expert_labels.html",
                      run="cnn")  # fmt: skip
    assert m == json.loads(out.read_text()) and m["images"] == 30 and m["run"] == "cnn"
    ptx = m["Pneumothorax"]
    assert ptx["label_agreement"] == 1.0 and ptx["auroc_expert"] == ptx["auroc_nlp"]
    # A strictly increasing calibration leaves the AUROC of the scores as it is.
    assert ptx["auroc_expert"] == pytest.approx(roc_auc_score(labelled.y_Pneumothorax, labelled.p_Pneumothorax))
    html = (tmp_path / "expert_labels.html").read_text()
    assert 'id="expert-labels"' in html and "not medical advice" in html and 'href="report.html"' in html
