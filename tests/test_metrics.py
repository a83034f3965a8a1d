"""The numbers of the evaluation and the leaderboard (cxr14/metrics.py): AUROC with ties and weights,
the patient bootstrap, ECE and Brier, DeLong, the paired bootstrap and Holm, checked by hand."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr14 import metrics


def test_auroc_by_hand_and_with_ties_and_weights():
    y = np.array([0, 0, 1, 1])
    assert metrics.weighted_auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert metrics.weighted_auroc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    # Weight 2 on the misranked negative: pairs (pos, neg) weigh w_pos * w_neg.
    w = np.array([1, 2, 1, 1])
    assert metrics.weighted_auroc(y, np.array([0.1, 0.4, 0.35, 0.8]), w) == pytest.approx((1 + 0 + 1 + 2) / 6)
    assert np.isnan(metrics.weighted_auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_patient_bootstrap_resamples_patients_not_images():
    patients = np.array([7, 7, 7, 3, 9, 9])
    w = metrics.patient_bootstrap_weights(patients, 500, seed=0)
    assert w.shape == (500, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    # Each replicate draws 3 patients: the draws of (7, 3, 9) sum to 3.
    assert np.all(w[:, 0] + w[:, 3] + w[:, 4] == 3)


def test_bootstrap_by_patient_is_wider_than_by_image_when_images_of_a_patient_agree():
    rng = np.random.default_rng(0)
    y = (rng.random((40, 2)) < 0.4).astype(int)
    s = y + rng.normal(0, 0.8, y.shape)
    y, s = np.repeat(y, 10, axis=0), np.repeat(s, 10, axis=0)  # 40 patients with 10 alike images each
    many = metrics.bootstrap_auroc(y, s, np.arange(400), n_boot=300, seed=1)  # as if each image were a patient
    few = metrics.bootstrap_auroc(y, s, np.arange(400) // 10, n_boot=300, seed=1)
    for j in range(2):
        lo, hi = many["ci"][j]
        assert lo < many["auroc"][j] < hi
        assert (few["ci"][j][1] - few["ci"][j][0]) > (hi - lo)
    assert many["mean_ci"][0] < many["mean_auroc"] < many["mean_ci"][1]


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 1])
    s = np.array([0.05, 0.15, 0.95, 0.85])
    r = metrics.reliability(y, s, bins=2)
    # bin [0, .5): mean conf .1, frac pos .5; bin [.5, 1]: mean conf .9, frac pos 1.
    assert r["ece"] == pytest.approx((2 * 0.4 + 2 * 0.1) / 4)
    assert r["brier"] == pytest.approx(np.mean((s - y) ** 2))
    assert r["count"] == [2, 2]


def _delong_by_definition(y, a, b):
    """DeLong's variance from its O(m*n) definition (the placement values), for the fast form to match."""
    y = np.asarray(y).astype(bool)
    comps = []
    for s in (a, b):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = comps
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / y.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / (~y).sum()
    return auc_a - auc_b, (auc_a - auc_b) / np.sqrt(var)


def test_delong_matches_its_definition_with_ties():
    """With one image per patient the clustered test is DeLong's own."""
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.3
    a = np.round(y + rng.normal(0, 1.0, 300), 1)  # rounding makes ties
    b = np.round(y + rng.normal(0, 1.4, 300), 1)
    diff, z = _delong_by_definition(y, a, b)
    got = metrics.delong(y, a, b, np.arange(300))
    assert got["diff"] == pytest.approx(diff) and got["z"] == pytest.approx(z)
    assert 0 < got["p"] < 1


def _clustered(seed, patients=150, per_patient=9):
    """Images of patients with a patient effect in the labels and in both runs' scores, each run's own
    too (9 images a patient, as on NIH test): what makes an image-level test too sure."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(patients), per_patient)
    effect = rng.normal(0, 1.5, patients)[patient]
    y = rng.random(len(patient)) < 1 / (1 + np.exp(-(effect - 1)))
    a = y + effect + rng.normal(0, 1.0, patients)[patient] + rng.normal(0, 0.5, len(patient))
    b = y + effect + rng.normal(0, 1.3, patients)[patient] + rng.normal(0, 0.5, len(patient))
    return y, a, b, patient


def test_delong_is_clustered_by_patient_and_agrees_with_the_patient_bootstrap():
    """Obuchowski's clustered DeLong: its SE is the paired patient bootstrap's (within 10 %), not the
    image-level one (which counts 9 images of a patient as 9 draws: a quarter narrower here)."""
    y, a, b, patient = _clustered(0)
    clustered = metrics.delong(y, a, b, patient)
    per_image = metrics.delong(y, a, b, np.arange(len(y)))
    reps = metrics.bootstrap_reps(y[:, None], a[:, None], metrics.patient_bootstrap_weights(patient, 2000, 1))
    reps -= metrics.bootstrap_reps(y[:, None], b[:, None], metrics.patient_bootstrap_weights(patient, 2000, 1))
    bootstrap_se = float(np.std(reps, ddof=1))
    assert clustered["diff"] == pytest.approx(per_image["diff"])
    assert clustered["se"] == pytest.approx(bootstrap_se, rel=0.1)
    assert per_image["se"] < 0.8 * clustered["se"]


def test_paired_bootstrap_agrees_with_delong_and_is_paired():
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.3)[:, None]
    a = y + rng.normal(0, 0.8, (n, 1))
    b = y + rng.normal(0, 2.5, (n, 1))
    boot = metrics.paired_bootstrap(y, a, b, np.arange(n) // 2, n_boot=1000, seed=0)
    dl = metrics.delong(y[:, 0], a[:, 0], b[:, 0], np.arange(n) // 2)
    assert boot["mean"]["diff"] == pytest.approx(dl["diff"])
    assert boot["mean"]["ci"][0] > 0 and boot["mean"]["p"] < 0.05 and dl["p"] < 0.05
    # A run against itself: the paired differences are exactly 0 in every replicate.
    same = metrics.paired_bootstrap(y, a, a, np.arange(n), n_boot=100, seed=0)
    assert same["mean"]["diff"] == 0 and same["mean"]["ci"] == [0, 0] and same["mean"]["p"] == 1.0


@pytest.mark.parametrize("n_boot", [39, 200, 999, 1000, 1999])
def test_a_comparisons_ci_excludes_0_exactly_when_its_p_is_below_005(n_boot):
    """One method for both: the p inverts the percentile interval of the same replicates, so "the 95 %
    CI excludes 0" and "p < 0.05" never disagree (main printed percentile CIs excluding 0 beside Wald
    p-values of 0.10-0.21), at any number of replicates and any shift of them, 0 itself included."""
    rng = np.random.default_rng(n_boot)
    base = rng.standard_t(3, n_boot)
    for shift in np.linspace(-4, 4, 161):
        reps = np.round(base + shift, 1)  # rounded: replicates exactly at 0 too
        summary = metrics._diff_summary(float(np.median(reps)), reps, 0.95)
        lo, hi = summary["ci"]
        assert (lo > 0 or hi < 0) == (summary["p"] < 0.05), (n_boot, shift, summary)
        assert summary["p"] >= summary["p_floor"] == pytest.approx(2 / (n_boot + 1))


def test_a_bootstrap_p_never_goes_below_what_its_replicates_resolve():
    """No replicate on the other side of 0: p is the floor 2 / (B + 1), flagged, not an extrapolation."""
    reps = np.linspace(0.01, 0.05, 200)
    summary = metrics._diff_summary(0.03, reps, 0.95)
    assert summary["p"] == summary["p_floor"] == pytest.approx(2 / 201) and summary["replicates"] == 200
    # Too few replicates for a 95 % percentile interval: none, and no p below 0.05 either.
    few = metrics._diff_summary(0.03, reps[:30], 0.95)
    assert np.isnan(few["ci"]).all() and few["p"] > 0.05


def test_the_verdict_families_are_a_primary_holm_over_runs_and_a_gated_holm_per_run():
    """Each run's mean AUROC in one family (Holm over runs); its findings in their own family (Holm
    over its 14), tested only behind its primary rejection; a run's verdicts do not change when an
    unrelated run joins (main's one family of every test of every run made them)."""
    primary = [0.001, 0.2]
    findings = np.full((2, 14), 0.5)
    findings[0, :3] = [0.001, 0.003, 0.04]
    findings[1, 0] = 0.0001  # behind a closed gate: never rejected
    out = metrics.gatekept_holm(primary, findings)
    assert out["primary_holm"] == pytest.approx([0.002, 0.2]) and list(out["gate_open"]) == [True, False]
    assert out["secondary_holm"][0, :3] == pytest.approx([0.014, 0.039, 0.48])
    assert np.isnan(out["secondary_holm"][1]).all() and not out["secondary_reject"][1].any()
    assert list(np.flatnonzero(out["secondary_reject"][0])) == [0, 1]
    # Four more runs with nothing to show: the first run's findings keep their adjusted p's.
    more = metrics.gatekept_holm(primary + [0.6] * 4, np.vstack([findings, np.full((4, 14), 0.6)]))
    assert more["primary_reject"][0] and more["secondary_holm"][0] == pytest.approx(out["secondary_holm"][0])


def test_holm_by_hand():
    assert metrics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = metrics.holm([0.2, float("nan")])
    assert out[0] == pytest.approx(0.2) and np.isnan(out[1])


def _judged_table(seed=0, n=600, unlabelled=0.0):
    """A test table with ties, rounded scores, several images per patient and, optionally, a share
    of labels -1 (a collection that does not say)."""
    import pandas as pd

    from cxr14 import prediction_table
    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(FINDINGS))) < 0.15).astype(np.int8)
    y[rng.random(y.shape) < unlabelled] = -1
    logits = np.round(1.5 * (y == 1) + rng.normal(-2, 1, y.shape), 1)  # rounded: many tied scores
    meta = {
        "split": "test", "image_index": [f"{k:05d}.png" for k in range(n)], "patient_id": rng.integers(0, n // 3, n),
        "age_years": rng.choice([15.0, 35.0, 55.0, 75.0, 90.0, np.nan], n), "sex": rng.choice(["M", "F"], n),
        "view": rng.choice(["PA", "AP"], n),
    }  # fmt: skip
    return pd.DataFrame(meta).join(prediction_table.frame({}, y, logits))


@pytest.mark.parametrize("unlabelled", [0.0, 0.2])
def test_the_vectorised_bootstraps_give_the_loops_numbers(unlabelled, monkeypatch):
    """The report's bootstrap figures, vectorised for full scale (#29), against the loops they replace
    (tests/reference_metrics.py): AUROC replicates to the last bit (whole-number weights sum exactly),
    calibration and subgroup CIs to float rounding, with ties and unlabelled images."""
    import reference_metrics

    from cxr14 import assess, prediction_table
    from cxr14.constants import FINDINGS

    table = _judged_table(unlabelled=unlabelled)
    y, p = prediction_table.arrays(table)
    weights = metrics.patient_bootstrap_weights(table.patient_id.to_numpy(), 300, 1)
    for j in range(len(FINDINGS)):
        keep = y[:, j] >= 0
        new = metrics._SortedScores(y[keep, j], p[keep, j]).auroc(weights[:, keep])
        old = reference_metrics.SortedScoresLoop(y[keep, j], p[keep, j]).auroc(weights[:, keep])
        np.testing.assert_array_equal(new, old)
    new = metrics.bootstrap_calibration(y, p, table.patient_id.to_numpy(), 300, 1)
    old = reference_metrics.bootstrap_calibration_loop(y, p, table.patient_id.to_numpy(), 300, 1)
    for name in ("ece", "ece_adaptive", "brier"):
        assert new[name]["mean"] == pytest.approx(old[name]["mean"], rel=1e-12, abs=1e-15), name
        np.testing.assert_allclose(new[name]["ci"], old[name]["ci"], rtol=1e-12, atol=1e-15, err_msg=name)
    # The subgroups' CIs (1,572 AUROC replicate sets at full scale) through either: the same JSON.
    cut = dict.fromkeys(FINDINGS, 0.2)
    got = json.dumps(assess.subgroups(table, cut, 200, 0), sort_keys=True, default=float)
    monkeypatch.setattr(metrics, "_SortedScores", reference_metrics.SortedScoresLoop)
    assert got == json.dumps(assess.subgroups(table, cut, 200, 0), sort_keys=True, default=float)


def test_the_bootstrap_weights_are_drawn_once_per_patients_and_seed_and_cannot_be_changed():
    patients = np.repeat(np.arange(50), 3)
    first = metrics.patient_bootstrap_weights(patients, 40, 0)
    assert metrics.patient_bootstrap_weights(patients.copy(), 40, 0) is first and not first.flags.writeable
    assert metrics.patient_bootstrap_weights(patients, 40, 1) is not first
    again = metrics.patient_bootstrap_weights(patients, 40, 0)
    np.testing.assert_array_equal(again, first)  # drawn again from the seed, the same
    assert (first.sum(axis=1) == len(patients)).all()  # every replicate draws as many patients as there are


def test_the_label_free_auroc_estimate_is_the_mean_auroc_of_labels_drawn_from_the_probabilities():
    """Textbook checks: its definition pair by pair (ties one half, self-pairs out); labels drawn as the
    calibrated probabilities say give, on average, the AUROC it expected; certainty and ignorance."""
    rng = np.random.default_rng(0)
    p = np.round(rng.beta(0.5, 3, 200), 2)  # rounded: ties
    num = den = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j:
                w = p[i] * (1 - p[j])
                num, den = num + w * (p[i] > p[j]) + 0.5 * w * (p[i] == p[j]), den + w
    assert metrics.expected_auroc(p) == pytest.approx(num / den, abs=1e-12)
    drawn = [rng.random(len(p)) < p for _ in range(4000)]
    measured = [roc_auc_score(y, p) for y in drawn if 0 < y.sum() < len(p)]
    assert abs(np.mean(measured) - metrics.expected_auroc(p)) < 4 * np.std(measured) / np.sqrt(len(measured)) + 2e-3
    assert metrics.expected_auroc(np.array([0.0, 0.0, 1.0, 1.0])) == 1.0  # certain and right
    assert metrics.expected_auroc(np.full(50, 0.3)) == pytest.approx(0.5)  # says nothing
    assert np.isnan(metrics.expected_auroc(np.array([0.4])))
    # Probabilities that do not hold (a site's shift): the estimate is of the probabilities, not the truth.
    y = rng.random(len(p)) < 0.5
    assert metrics.expected_auroc(p) > 0.75 and roc_auc_score(y, p) == pytest.approx(0.5, abs=0.12)


def test_operating_point_targets_are_met_in_counts_not_float_differences():
    """10 negatives: a specificity of exactly 0.9 (9 of 10) meets a 0.9 target, though 1 - 0.9 is
    0.09999999999999998 < 0.1 as floats; likewise 9 of 10 positives meet a sensitivity of 0.9."""
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    score = np.r_[np.arange(10) / 10, 0.05 + np.arange(10) / 10]  # interleaved: each cut trades one for one
    chosen = metrics.thresholds(y, score, sensitivity=0.9, specificity=0.9)
    negatives, positives = score[y == 0], score[y == 1]
    assert (negatives < chosen["specificity"]).sum() == 9 and chosen["specificity"] == pytest.approx(0.85)
    assert (positives >= chosen["sensitivity"]).sum() == 9 and chosen["sensitivity"] == pytest.approx(0.15)


def test_a_finding_without_val_positives_gets_no_operating_point_and_the_reason():
    """No positive (or no negative) on val: no rule can be chosen, and none is made up (it was 0.5)."""
    for y in (np.zeros(50, int), np.ones(50, int)):
        assert metrics.thresholds(y, np.linspace(0, 1, 50)) == dict.fromkeys(metrics.OPERATING_RULES)
        assert "val positives" in metrics.no_point_reason(y)
    assert metrics.no_point_reason(np.zeros(0)) == "no val image is labelled for it"
    assert metrics.no_point_reason(np.array([0, 1])) is None
    # Applied on test, a rule without a point gives no figures rather than figures at 0.5.
    points = {rule: {"Hernia": None} for rule in metrics.OPERATING_RULES}
    assert metrics.at_points(np.array([0, 1]), np.array([0.2, 0.9]), points, "Hernia", None) == dict.fromkeys(
        metrics.OPERATING_RULES
    )


def test_a_sensitivity_target_can_be_met_at_a_lower_confidence_bound():
    """With `confidence`, the target must hold for the one-sided Clopper-Pearson lower bound of the val
    rate: 9 of 10 positives (0.90) does not show 0.9 with 95 % confidence, all 40 of 40 (lower bound
    0.928) does; 2 positives can never show it, so there is no point."""
    from scipy.stats import beta

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(40)].astype(int)
    score = np.r_[rng.normal(0, 1, 200), rng.normal(2, 1, 40)]
    plain = metrics.thresholds(y, score, 0.9, 0.9)
    bounded = metrics.thresholds(y, score, 0.9, 0.9, confidence=0.95)
    caught = (score[y == 1] >= bounded["sensitivity"]).sum()
    assert bounded["sensitivity"] < plain["sensitivity"]
    assert beta.ppf(0.05, caught, 40 - caught + 1) >= 0.9 > beta.ppf(0.05, caught - 1, 40 - caught + 2)
    two = metrics.thresholds(np.array([0, 0, 0, 1, 1]), np.arange(5.0), 0.9, 0.5, confidence=0.95)
    assert two["sensitivity"] is None and two["max_f1"] is not None


def _clustered_finding(patients_with_positive: int, seed: int = 0, patients: int = 300, images: int = 9):
    """Labels and scores of one finding on `patients` x `images` images, its positives in the first
    `patients_with_positive` patients (half of their images), a per-patient offset in the scores."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(patients), images)
    y = ((patient < patients_with_positive) & (np.arange(len(patient)) % 2 == 0)).astype(int)
    score = 1.2 * y + rng.normal(0, 0.7, patients)[patient] + rng.normal(0, 0.7, len(patient))
    return y, score, patient


def test_an_auroc_ci_is_not_printed_where_fewer_than_ten_patients_carry_the_positives():
    """Hernia in a 300-patient collection: 2-6 patients with a positive. No interval covers its
    population AUROC as it says (the percentile one 0.66 of the time in docs/statistics.md's
    simulation), so it is not estimable: NaN, the point AUROC still given. Main printed one."""
    y, s, patient = _clustered_finding(patients_with_positive=4)
    few = metrics.bootstrap_auroc(y[:, None], s[:, None], patient, n_boot=200, seed=0)
    assert np.isfinite(few["auroc"][0]) and np.isnan(few["ci"][0]).all()
    y, s, patient = _clustered_finding(patients_with_positive=metrics.MIN_CI_PATIENTS)
    enough = metrics.bootstrap_auroc(y[:, None], s[:, None], patient, n_boot=200, seed=0)
    assert enough["ci"][0][0] < enough["auroc"][0] < enough["ci"][0][1]


def test_an_auroc_ci_is_a_t_interval_on_the_logit_scale_of_the_patient_replicates():
    """By hand: logit(AUROC) +- t(patients with a positive - 1) x SD of the replicates' logits; it stays
    inside (0, 1) where the percentile interval of a near-perfect AUROC sits at 1."""
    from scipy.special import expit, logit
    from scipy.stats import t

    y, s, patient = _clustered_finding(patients_with_positive=12, seed=3)
    s = s + 3 * y  # near-perfect: many replicates of AUROC 1
    boot = metrics.bootstrap_auroc(y[:, None], s[:, None], patient, n_boot=400, seed=2)
    reps = metrics.bootstrap_reps(y[:, None], s[:, None], metrics.patient_bootstrap_weights(patient, 400, 2))[:, 0]
    half = t.ppf(0.975, 11) * np.std(logit(np.clip(reps, 1e-6, 1 - 1e-6)), ddof=1)
    point = np.clip(boot["auroc"][0], 1e-6, 1 - 1e-6)
    assert boot["ci"][0] == pytest.approx(expit([logit(point) - half, logit(point) + half]).tolist())
    assert 0 < boot["ci"][0][0] < boot["auroc"][0] <= boot["ci"][0][1] < 1


def test_a_rate_ci_is_clustered_by_the_patients_the_weights_resample():
    """`at_threshold` is handed the bootstrap weights only: it recovers the patients from them, and a
    rate whose patients' images all agree gets the interval of one image per patient (Wilson, t)."""
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.5
    called = np.where(y, rng.random(60) < 0.8, rng.random(60) < 0.1)
    tenfold = metrics.at_threshold(np.repeat(y, 10), np.repeat(called * 1.0, 10), 0.5,
                                   metrics.patient_bootstrap_weights(np.arange(600) // 10, 200, 0))  # fmt: skip
    single = metrics.clustered_wilson(called[y], np.arange(60)[y])
    assert tenfold["sensitivity"] == pytest.approx(called[y].mean())
    assert tenfold["sensitivity_ci"] == pytest.approx(single)
    by_image = metrics.clustered_wilson(np.repeat(called[y], 10), np.arange(10 * y.sum()))
    assert by_image[1] - by_image[0] < 0.5 * (single[1] - single[0])


def test_a_rate_of_one_still_has_an_interval():
    """Every positive called: the percentile interval of the replicates was [1, 1] (main); a
    Wilson interval at Kish's effective number of patients reaches below 1."""
    y, s, patient = _clustered_finding(patients_with_positive=20)
    weights = metrics.patient_bootstrap_weights(patient, 200, 0)
    out = metrics.at_threshold(y, s, float(s[y == 1].min()), weights)
    assert out["sensitivity"] == 1.0
    lo, hi = out["sensitivity_ci"]
    assert hi == 1.0 and 0.7 < lo < 0.95


def test_a_difference_on_fewer_than_ten_patients_with_a_positive_has_no_ci_and_no_p():
    """Hernia's paired Δ CI covered 0.73 in simulation: not estimable, so neither CI nor p (they stay
    one method and agree); the difference itself is given."""
    y, s, patient = _clustered_finding(patients_with_positive=4)
    other = s + np.random.default_rng(9).normal(0, 0.5, len(s))
    few = metrics.paired_bootstrap(y[:, None], s[:, None], other[:, None], patient, n_boot=200, seed=0)
    column = few["per_column"][0]
    assert np.isfinite(column["diff"]) and np.isnan(column["ci"]).all() and np.isnan(column["p"])
    y, s, patient = _clustered_finding(patients_with_positive=12)
    other = s + np.random.default_rng(9).normal(0, 0.5, len(s))
    enough = metrics.paired_bootstrap(y[:, None], s[:, None], other[:, None], patient, n_boot=200, seed=0)
    assert np.isfinite(enough["per_column"][0]["ci"]).all() and np.isfinite(enough["per_column"][0]["p"])


def test_the_jackknife_aurocs_are_the_aurocs_with_each_patient_left_out():
    """The closed form (each patient's pairs taken out) against leaving the patient out by weight, with
    ties, unlabelled images and patients holding both classes."""
    rng = np.random.default_rng(1)
    patient = rng.integers(0, 40, 300)
    y = (rng.random((300, 3)) < 0.3).astype(int)
    y[rng.random(300) < 0.1, 2] = -1
    s = np.round(y + rng.normal(0, 1, (300, 3)), 1)  # rounded: ties within and across patients
    code = np.unique(patient, return_inverse=True)[1]
    by_weight = [[metrics.weighted_auroc(y[:, j], s[:, j], (code != p) * 1.0) for j in range(3)] for p in range(40)]
    np.testing.assert_allclose(metrics.leave_one_patient_out_auroc(y, s, code), by_weight, rtol=0, atol=1e-14)


def test_the_mean_auroc_ci_has_the_jackknifes_width_and_the_bootstraps_shape():
    """The patient bootstrap's spread of the mean AUROC is 0.91 of the true one on NIH-shaped patients
    (the percentile CI covered 0.92): its percentile interval is rescaled about the point to the
    delete-one-patient jackknife's spread. By hand from the replicates and the leave-one-out AUROCs."""
    y, s, patient = _clustered_finding(patients_with_positive=40, seed=5)
    y, s = np.c_[y, y[::-1]], np.c_[s, s[::-1]]
    boot = metrics.bootstrap_auroc(y, s, patient, n_boot=300, seed=0)
    reps = metrics.bootstrap_reps(y, s, metrics.patient_bootstrap_weights(patient, 300, 0)).mean(axis=1)
    left_out = metrics.leave_one_patient_out_auroc(y, s, patient).mean(axis=1)
    point, count = boot["mean_auroc"], len(left_out)
    scale = np.sqrt((count - 1) / count * ((left_out - point) ** 2).sum()) / reps.std(ddof=1)
    want = point + (np.quantile(reps, [0.025, 0.975]) - point) * scale
    assert boot["mean_ci"] == pytest.approx(want.tolist()) and abs(scale - 1) > 0.01


def test_an_auroc_ci_holds_its_point_also_at_an_auroc_of_one():
    """A finding the model separates perfectly (the demo's phantoms) has an AUROC of 1: its logit CI,
    centred 1e-6 from the end, must still reach 1 (the report's error bar was negative and failed)."""
    from cxr14 import metrics

    lo, hi = metrics.logit_interval(1.0, np.array([1.0, 0.999, 0.998, 1.0]), clusters=20)
    assert lo < 1.0 and hi == 1.0
    lo, hi = metrics.logit_interval(0.8, np.array([0.78, 0.8, 0.83, 0.79]), clusters=20)
    assert lo < 0.8 < hi
