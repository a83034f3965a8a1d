"""Calibration maps fitted on val: monotone (AUROC kept), lower calibration error, and honest about
findings with too few positives to fit."""

import numpy as np
import pytest

from cxr14 import calibrate, metrics

OFFSET = 2.0  # log(w_pos / w_neg) of a class-weighted loss for a finding of about 12% prevalence


def _overconfident(n=4000, seed=0):
    """Labels drawn from true probabilities sigmoid(z), and scores that overstate them the way a
    class-weighted loss does (the weights' logit offset) and an overfitted net does (sharpened)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 1.5, n)
    y = (rng.random(n) < calibrate.sigmoid(z)).astype(float)
    return y, calibrate.sigmoid(1.6 * z + OFFSET)


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_a_map_fitted_on_val_lowers_test_ece(method):
    y_val, s_val = _overconfident(seed=1)
    y_test, s_test = _overconfident(seed=2)
    params = calibrate.fit(y_val, s_val, method, min_positives=10, offset=OFFSET)
    after = calibrate.apply_one(params, s_test)
    edges = metrics.bin_edges(after)
    assert metrics.calibration_error(y_test, after, edges) < metrics.calibration_error(y_test, s_test, edges)
    assert params["val_log_loss_after"] < params["val_log_loss_before"]
    if method != "isotonic":  # strictly increasing: the ranking, so AUROC, is untouched
        assert abs(metrics.weighted_auroc(y_test, after) - metrics.weighted_auroc(y_test, s_test)) < 1e-6


def test_temperature_takes_out_the_class_weight_offset_and_fits_one_parameter():
    y, s = _overconfident()
    temperature = calibrate.fit(y, s, "temperature", 10, offset=OFFSET)
    assert temperature["temperature"] == pytest.approx(1.6, rel=0.1)  # the sharpening, recovered
    platt = calibrate.fit(y, s, "platt", 10)
    assert platt["a"] == pytest.approx(1 / 1.6, rel=0.1) and platt["b"] < 0  # Platt fits the offset itself


def test_the_offset_comes_from_the_runs_class_weights():
    weights = {
        "pos_weights": dict.fromkeys(calibrate.FINDINGS, 0.9),
        "neg_weights": dict.fromkeys(calibrate.FINDINGS, 0.1),
    }
    offsets = calibrate.loss_offsets({"config": {"loss": "weighted_bce"}, "class_weights": weights})
    assert offsets["Mass"] == pytest.approx(np.log(9))
    assert calibrate.loss_offsets({"config": {"loss": "focal"}, "class_weights": weights})["Mass"] == 0
    assert calibrate.loss_offsets(None)["Mass"] == 0  # an ensemble


def test_too_few_val_positives_are_left_uncalibrated_and_said_so():
    y = np.zeros(200)
    y[:9] = 1
    params = calibrate.fit(y, np.linspace(0.01, 0.99, 200), "temperature", min_positives=10)
    assert params["method"] == "none" and "9 val positives" in params["reason"]
    scores = np.linspace(0, 1, 7)
    np.testing.assert_array_equal(calibrate.apply_one(params, scores), scores)


def test_unknown_method_is_refused():
    y, s = _overconfident(n=200)
    with pytest.raises(ValueError, match="one of"):
        calibrate.fit(y, s, "beta", 10)


def test_ece_bins_and_the_bootstrap():
    y, s = _overconfident(n=1000)
    fixed, adaptive = metrics.bin_edges(s), metrics.bin_edges(s, adaptive=True)
    assert len(fixed) == len(adaptive) == 9
    counts = np.bincount(np.searchsorted(adaptive, s, side="right"), minlength=10)
    assert counts.min() >= 95  # equal-count bins
    assert metrics.calibration_error(y, y.astype(float), fixed) == 0.0
    boot = metrics.bootstrap_calibration(np.c_[y, y], np.c_[s, s], np.arange(1000) // 2, n_boot=50, seed=0)
    for key in ("ece", "ece_adaptive", "brier"):
        assert boot[key]["ci"][0] <= boot[key]["mean"] <= boot[key]["ci"][1]
    assert boot["brier"]["mean"] == pytest.approx(np.mean((s - y) ** 2))
