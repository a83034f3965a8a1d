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


def _judged_both(tmp_path):
    """The judgement of one run on NIH's test split and on an external collection beside it (with a local
    recalibration), and on a collection without labels: the three shapes the evaluate step writes."""
    from conftest import EXTERNAL_LABELLED, fixed_points, synthetic_external_predictions, synthetic_predictions

    nih = synthetic_predictions(tmp_path / "nih.parquet", seed=1, noise=0.2, images=200)
    ext = synthetic_external_predictions(tmp_path / "ext.parquet", seed=3, noise=0.25, images=200)
    test = nih[nih.split == "test"].reset_index(drop=True)
    calibration = {"site": "nih", "method": "platt", "shared": [], "min_positives": 5, "fitted_on": "nih val",
                   "findings": {f: {"method": "platt", "a": 1.1, "b": -0.2} for f in FINDINGS}}  # fmt: skip
    common = {"run": "cnn", "calibration": calibration, "thresholds": fixed_points(0.4), "n_boot": 30, "seed": 0}
    on_nih, nih_drawn = assess.judge(test, dataset="nih", collection={"rows_in": 200}, split="official test split",
                                     findings=list(FINDINGS), **common)  # fmt: skip
    site = assess.local_site(ext, calibration, 0.3, 0, "temperature", 5)
    on_site, site_drawn = assess.judge(ext, dataset="site", collection={"format": "csv"}, split="every image",
                                       findings=EXTERNAL_LABELLED, nih=test, site=site, **common)  # fmt: skip
    unlabelled, _ = assess.judge(ext, dataset="folder", collection={}, split="every image", findings=[], **common)
    return (on_nih, nih_drawn), (on_site, site_drawn), unlabelled


def test_nih_and_an_external_collection_have_the_one_schema(tmp_path):
    """NIH's judgement and another collection's (and one without labels) validate against the one schema,
    with the same per-finding figures; the parts only some have are optional, and a result missing a
    required part is refused."""
    import copy

    import jsonschema
    import yaml

    (on_nih, _), (on_site, _), unlabelled = _judged_both(tmp_path)
    schema = yaml.safe_load((assess.SCHEMA).read_text())
    for result in (on_nih, on_site, unlabelled):
        jsonschema.validate(result, schema)
    assert set(on_nih["findings"]["Mass"]) < set(on_site["findings"]["Effusion"])  # + nih_auroc, drop, ...
    assert {"nih", "drop", "recalibration"} <= set(on_site) and not {"nih", "drop", "recalibration"} & set(on_nih)
    assert "published" in on_nih and "published" not in on_site and unlabelled["labelled"] is False
    assert on_site["recalibration"]["fit_patients"] == 30 and on_site["recalibration"]["method"] == "temperature"
    broken = copy.deepcopy(on_site)
    del broken["findings"]["Effusion"]["auroc"]
    with pytest.raises(jsonschema.ValidationError):
        assess.validate(broken)
    broken = copy.deepcopy(on_nih)
    broken["nih"] = on_site["nih"]  # beside NIH without its drop
    with pytest.raises(jsonschema.ValidationError):
        assess.validate(broken)


def test_a_new_metric_is_one_function_and_shows_in_every_report(tmp_path, monkeypatch):
    """The recipe of docs/architecture.md, followed once: a function of a finding's labels and calibrated
    probabilities in `FINDING_METRICS` (and its column's name in `METRIC_LABELS`) is in the result on NIH
    and on another collection, passes the schema, and is a column of both reports' per-finding tables."""
    from cxr14.report import render

    def mean_probability(y, p):
        return float(p.mean()) if len(p) else None

    monkeypatch.setitem(assess.FINDING_METRICS, "mean_probability", mean_probability)
    monkeypatch.setitem(assess.METRIC_LABELS, "mean_probability", "mean probability")
    (on_nih, nih_drawn), (on_site, site_drawn), _ = _judged_both(tmp_path)
    nih_p = nih_drawn["rows"]["p_Mass"]
    assert on_nih["findings"]["Mass"]["mean_probability"] == pytest.approx(nih_p.mean())
    labelled = site_drawn["rows"]["y_Effusion"] >= 0
    want = site_drawn["rows"]["p_Effusion"][labelled].mean()
    assert on_site["findings"]["Effusion"]["mean_probability"] == pytest.approx(want)
    table = pd.DataFrame({"image_index": ["a", "b"], "split": ["test", "val"], "age_years": [50.0, 60.0],
                          "sex": ["F", "M"], "view": ["PA", "AP"], **{f: [0, 1] for f in FINDINGS}})  # fmt: skip
    on_nih["collection"] = {"images": {"test": 1, "val": 1}, "patients": {"test": 1, "val": 1}, "rows_in": 2,
                            "rows_out": 2, "data_entry": "x", "leakage_patients": 0, "changed": {},
                            "dropped": {}}  # fmt: skip
    on_site["collection"] = {"format": "csv", "images": 200, "patients": 100, "dropped": {}, "views": {}, "sex": {},
                             "policy": {"uncertain": "ignore", "views": ["PA"], "label_map": {}}}  # fmt: skip
    for m, drawn in ((on_nih, nih_drawn), (on_site, site_drawn)):
        out = tmp_path / m["dataset"]
        render(m, drawn, table, out / "report.html", out / "figures", title="t", metric_labels=assess.METRIC_LABELS)
        html = (out / "report.html").read_text()
        assert "<th>mean probability</th>" in html and "<th>AUPRC</th>" in html


def _gap_of_groups(seed: int, true_rates, patients=200, images_each=3, n_boot=200) -> tuple[dict, float]:
    """A kind's underdiagnosis gap (`assess.underdiagnosis_gap`) on patients drawn into groups of the given true
    rates (each image with a finding missed at its group's rate), and the true gap."""
    from cxr14 import metrics

    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(patients), images_each)
    group = rng.integers(0, len(true_rates), patients)[patient]
    missed = rng.random(len(patient)) < np.asarray(true_rates)[group]
    weights = metrics.patient_bootstrap_weights(patient, n_boot, seed + 1)
    groups, rates = {}, {}
    for g in range(len(true_rates)):
        mask = group == g
        groups[str(g)] = {"underdiagnosis": float(missed[mask].mean()),
                          "patients_with_finding": len(set(patient[mask]))}  # fmt: skip
        rates[str(g)] = (weights[:, mask] * missed[mask]).sum(axis=1) / weights[:, mask].sum(axis=1)
    return assess.underdiagnosis_gap(groups, rates), max(true_rates) - min(true_rates)


@pytest.mark.parametrize("true_rates", [[0.3] * 4, [0.25, 0.3, 0.3, 0.35]])
def test_the_underdiagnosis_gap_ci_covers_the_true_gap_despite_choosing_its_groups(true_rates):
    """The winner's curse: the largest minus the smallest of four groups is picked on the same data;
    bootstrapping only that pair (main) made a CI that missed a true gap of 0 about a fifth of the
    time. With the groups chosen inside each replicate (a simultaneous band), 95 % CIs cover it."""
    covered = [lo <= truth <= hi for gap, truth in map(lambda s: _gap_of_groups(s, true_rates), range(200))
               for lo, hi in [gap["ci"]]]  # fmt: skip
    assert np.mean(covered) >= 0.92, np.mean(covered)


def test_tied_underdiagnosis_rates_are_a_gap_of_0_between_two_groups_not_f_minus_f():
    """Every image with a finding caught in both sexes: rates tie at 0, and the page said "F minus F
    = 0.0 %" (main's `_gap` took one group as both ends); now two groups, a gap of 0, and the page says so."""
    from cxr14 import prediction_table
    from cxr14.report import templates

    rng = np.random.default_rng(0)
    n = 60
    y = (rng.random((n, len(FINDINGS))) < 0.3).astype(np.int8)
    meta = {"split": "test", "image_index": [f"{k:05d}.png" for k in range(n)], "patient_id": np.arange(n) // 2,
            "age_years": 50.0, "sex": np.tile(["F", "F", "M", "M"], n // 4), "view": "PA"}  # fmt: skip
    table = pd.DataFrame(meta).join(prediction_table.frame({}, y, 2.0 * y - 1))
    sections = assess.subgroups(table, dict.fromkeys(FINDINGS, 0.5), 50, 0)
    gap = sections["sex"]["underdiagnosis_gap"]
    assert {gap["highest"], gap["lowest"]} == {"F", "M"} and gap["gap"] == 0 and gap["tied"]
    page = templates().get_template("subgroups.html.j2").render(m={"subgroups": sections}, subgroup_findings=[])
    assert "F minus F" not in page and "no gap by sex" in page


def test_a_group_of_a_handful_of_patients_is_named_not_compared_in_the_gap():
    """A rate of three patients is 0 or 1 in nearly every replicate, so its bootstrap spread says
    nothing and it would set the gap (the age band CI covered 0.68 in simulation): such a group is named
    beside the gap, not in it."""
    groups = {"a": {"underdiagnosis": 0.2, "patients_with_finding": 50},
              "b": {"underdiagnosis": 0.3, "patients_with_finding": 40},
              "c": {"underdiagnosis": 1.0, "patients_with_finding": 3}}  # fmt: skip
    rates = {g: np.full(100, s["underdiagnosis"]) + np.linspace(-0.05, 0.05, 100) for g, s in groups.items()}
    gap = assess.underdiagnosis_gap(groups, rates)
    assert (gap["highest"], gap["lowest"]) == ("b", "a") and gap["gap"] == pytest.approx(0.1)
    assert gap["compared"] == ["a", "b"] and gap["too_few"] == ["c"]


def test_the_gaps_band_takes_each_groups_spread_from_the_patient_jackknife():
    """The patient bootstrap's spread of a rate is too small on NIH-shaped patients (the gap's CI covered
    0.915 by age band in simulation): each group's centred replicates are rescaled to its patient
    jackknife SD before the range is taken, so twice the spread gives twice the band."""
    from cxr14 import metrics

    groups = {"a": {"underdiagnosis": 0.2, "patients_with_finding": 50},
              "b": {"underdiagnosis": 0.3, "patients_with_finding": 40}}  # fmt: skip
    rng = np.random.default_rng(0)
    rates = {g: s["underdiagnosis"] + rng.normal(0, 0.02, 400) for g, s in groups.items()}
    plain = assess.underdiagnosis_gap(groups, rates)
    doubled = assess.underdiagnosis_gap(groups, rates, {g: 2 * np.std(r, ddof=1) for g, r in rates.items()})
    assert doubled["gap"] == plain["gap"] == pytest.approx(0.1)
    assert doubled["ci"][1] - doubled["gap"] == pytest.approx(2 * (plain["ci"][1] - plain["gap"]))
    # The spread is the delete-one-patient jackknife's: by hand for three patients.
    hits, patient = np.array([1, 0, 1, 1, 0, 0]), np.array([0, 0, 1, 1, 2, 2])
    leave_out = np.array([2 / 4, 1 / 4, 3 / 4])  # the rate without patient 0, 1, 2; with all: 1 / 2
    by_hand = 2 / 3 * ((leave_out - 1 / 2) ** 2).sum()
    assert metrics.jackknife_variance(hits, patient)[0] == pytest.approx(by_hand)
