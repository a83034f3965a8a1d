"""Calibration maps fitted on val: monotone (AUROC kept), lower calibration error, and honest about
findings with too few positives to fit."""

import numpy as np
import pytest

from cxr14 import calibration, metrics
from cxr14.steps import calibrate

OFFSET = 2.0  # log(w_pos / w_neg) of a class-weighted loss for a finding of about 12% prevalence


def _overconfident(n=4000, seed=0):
    """Labels drawn from true probabilities sigmoid(z), and logits that overstate them the way a
    class-weighted loss does (the weights' logit offset) and an overfitted net does (sharpened)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-2.0, 1.5, n)
    y = (rng.random(n) < calibration.sigmoid(z)).astype(float)
    return y, 1.6 * z + OFFSET


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_a_map_fitted_on_val_lowers_test_ece(method):
    y_val, z_val = _overconfident(seed=1)
    y_test, z_test = _overconfident(seed=2)
    params = calibration.fit(y_val, z_val, method, min_positives=10, offset=OFFSET)
    after, s_test = calibration.apply_one(params, z_test), calibration.sigmoid(z_test)
    edges = metrics.bin_edges(after)
    assert metrics.calibration_error(y_test, after, edges) < metrics.calibration_error(y_test, s_test, edges)
    assert params["val_log_loss_after"] < params["val_log_loss_before"]
    if method != "isotonic":  # strictly increasing: the ranking, so AUROC, is untouched
        assert abs(metrics.weighted_auroc(y_test, after) - metrics.weighted_auroc(y_test, s_test)) < 1e-6


def test_temperature_takes_out_the_class_weight_offset_and_fits_one_parameter():
    y, s = _overconfident()
    temperature = calibration.fit(y, s, "temperature", 10, offset=OFFSET)
    assert temperature["temperature"] == pytest.approx(1.6, rel=0.1)  # the sharpening, recovered
    platt = calibration.fit(y, s, "platt", 10)
    assert platt["a"] == pytest.approx(1 / 1.6, rel=0.1) and platt["b"] < 0  # Platt fits the offset itself


def test_the_offset_comes_from_the_runs_class_weights():
    weights = {
        "pos_weights": dict.fromkeys(calibration.FINDINGS, 0.9),
        "neg_weights": dict.fromkeys(calibration.FINDINGS, 0.1),
    }
    offsets = calibration.loss_offsets({"config": {"loss": "weighted_bce"}, "class_weights": weights})
    assert offsets["Mass"] == pytest.approx(np.log(9))
    assert calibration.loss_offsets({"config": {"loss": "focal"}, "class_weights": weights})["Mass"] == 0
    assert calibration.loss_offsets(None)["Mass"] == 0  # an ensemble


def test_fit_declines_too_few_val_positives_and_says_why():
    y = np.zeros(200)
    y[:9] = 1
    params = calibration.fit(y, np.linspace(-4, 4, 200), "temperature", min_positives=10)
    assert params["method"] == "none" and "9 val positives" in params["reason"]
    logits = np.linspace(-30, 30, 7)
    np.testing.assert_array_equal(calibration.apply_one(params, logits), calibration.sigmoid(logits))


def test_the_maps_take_logits_so_saturated_probabilities_stay_apart():
    """Two images a float32 sigmoid calls 1.0 (logits 18 and 20) stay ranked and distinct after a
    steep calibration, and every method maps logits back to the same probability as the float64
    route through the probability would."""
    y, z = _overconfident(seed=3)
    params = calibration.fit(y, z, "temperature", 10, offset=OFFSET)
    saturated = np.array([18.0, 20.0])
    assert np.all(calibration.sigmoid(saturated).astype(np.float32) == 1.0)
    shown = calibration.apply_one(params, saturated)
    assert shown[0] < shown[1] < 1.0
    for method in ("platt", "isotonic"):
        fitted = calibration.fit(y, z, method, 10)
        np.testing.assert_allclose(
            calibration.apply_one(fitted, z), calibration.sigmoid(calibration.apply_logit(fitted, z)), atol=1e-12
        )


def test_unknown_method_is_refused():
    y, s = _overconfident(n=200)
    with pytest.raises(ValueError, match="one of"):
        calibration.fit(y, s, "beta", 10)


def test_ece_bins_and_the_bootstrap():
    y, z = _overconfident(n=1000)
    s = calibration.sigmoid(z)
    fixed, adaptive = metrics.bin_edges(s), metrics.bin_edges(s, adaptive=True)
    assert len(fixed) == len(adaptive) == 9
    counts = np.bincount(np.searchsorted(adaptive, s, side="right"), minlength=10)
    assert counts.min() >= 95  # equal-count bins
    assert metrics.calibration_error(y, y.astype(float), fixed) == 0.0
    boot = metrics.bootstrap_calibration(np.c_[y, y], np.c_[s, s], np.arange(1000) // 2, n_boot=50, seed=0)
    for key in ("ece", "ece_adaptive", "brier"):
        assert boot[key]["ci"][0] <= boot[key]["mean"] <= boot[key]["ci"][1]
    assert boot["brier"]["mean"] == pytest.approx(np.mean((s - y) ** 2))


def test_a_small_val_split_still_gives_every_finding_honest_probabilities(tmp_path):
    """A site-sized val split: most findings have 2-5 val positives, too few for a map of their own.
    None keeps the class-weighted loss's inflation (its offset is always taken out, then the temperature
    shared across findings is applied), and test ECE falls for every finding whose raw ECE was above 0.1."""
    import json

    import pandas as pd

    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(4)
    prevalence = np.r_[0.25, 0.2, np.full(len(FINDINGS) - 2, 0.04)]
    offsets = np.log((1 - prevalence) / prevalence)  # balanced class weights: w_pos / w_neg = (1 - p) / p

    def split(name, n):
        z = rng.normal(np.log(prevalence / (1 - prevalence)), 1.0, (n, len(FINDINGS)))
        y = (rng.random(z.shape) < calibration.sigmoid(z)).astype(np.int8)
        frame = pd.DataFrame({"split": name, "image_index": [f"{name}{k:05d}.png" for k in range(n)]})
        for j, f in enumerate(FINDINGS):
            frame[f"y_{f}"] = y[:, j]
            frame[f"z_{f}"] = (1.3 * z[:, j] + offsets[j]).astype(np.float32)
            frame[f"p_{f}"] = calibration.sigmoid(frame[f"z_{f}"]).astype(np.float32)
        return frame

    val, test = split("val", 90), split("test", 6000)
    pd.concat([val, test]).to_parquet(tmp_path / "predictions.parquet", index=False)
    train = pd.DataFrame({"split": "train", **{f: [0, 1] for f in FINDINGS}})
    train.to_parquet(tmp_path / "images.parquet", index=False)
    weights = {"pos_weights": dict(zip(FINDINGS, 1 - prevalence)), "neg_weights": dict(zip(FINDINGS, prevalence))}
    summary = {"config": {"loss": "weighted_bce"}, "class_weights": weights, "model_sha256": "0" * 64}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    result = calibrate.calibrate(
        predictions=tmp_path / "predictions.parquet", table=tmp_path / "images.parquet",
        summary=tmp_path / "summary.json", calibration=tmp_path / "calibration.json",
        thresholds=tmp_path / "thresholds.json", site="nih", method="temperature", min_positives=10, tta=False,
        targets={"sensitivity": 0.9, "specificity": 0.8},
    )  # fmt: skip
    few = [f for f in FINDINGS if val[f"y_{f}"].sum() < 10]
    assert len(few) >= 8 and any(2 <= val[f"y_{f}"].sum() <= 5 for f in few)
    assert result["shared"] == few and 0.5 < result["shared_temperature"] < 2.5
    probabilities = calibration.apply(result, test[[f"z_{f}" for f in FINDINGS]].to_numpy())
    for j, f in enumerate(FINDINGS):
        y, raw, shown = test[f"y_{f}"].to_numpy(), test[f"p_{f}"].to_numpy(np.float64), probabilities[:, j]
        assert result["findings"][f]["method"] == ("shared_temperature" if f in few else "temperature")
        # The raw scores overstate a rare finding 5-6 times; what is shown stays within 2x and nearer the
        # truth (a map of its own fitted on 10-20 val positives is noisy, but no finding keeps the inflation).
        assert shown.mean() < 2 * y.mean() and abs(shown.mean() - y.mean()) < abs(raw.mean() - y.mean()), f
        edges = metrics.bin_edges(shown)
        raw_ece = metrics.calibration_error(y, raw, metrics.bin_edges(raw))
        if raw_ece > 0.1:
            assert metrics.calibration_error(y, shown, edges) < raw_ece, f

    # The operating points are chosen on the calibrated val probabilities, each rule meeting its target there.
    chosen = json.loads((tmp_path / "thresholds.json").read_text())
    assert chosen["targets"] == {"sensitivity": 0.9, "specificity": 0.8} and chosen["chosen_on"] == "nih val"
    shown_val = calibration.apply(result, val[[f"z_{f}" for f in FINDINGS]].to_numpy())
    for j, f in enumerate(FINDINGS):
        y, p = val[f"y_{f}"].to_numpy().astype(bool), shown_val[:, j]
        at_sensitivity, at_specificity = chosen["sensitivity"][f], chosen["specificity"][f]
        assert (p[y] >= at_sensitivity).mean() >= 0.9 and (p[~y] < at_specificity).mean() >= 0.8, f
        # The strictest threshold meeting the target: one step up would miss it.
        assert (p[y] > at_sensitivity).mean() < 0.9 or not (p > at_sensitivity).any(), f


def test_a_sites_small_val_split_fixes_its_calibration_in_the_large_and_ignores_unlabelled_images(tmp_path):
    """A site-sized val split: 150 images, a third of the labels -1 (the collection does not say),
    and the model's logits shifted down by 3 there (another scanner). The unlabelled images count for
    nothing, and every finding's site map (a temperature and, what moved, an intercept) brings the
    mean probability near the observed rate, which the model's own probabilities leave far off."""
    import json

    import pandas as pd

    from cxr14 import prediction_table
    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(7)

    def split(name, n):
        truth = rng.normal(-1.8, 1.2, (n, len(FINDINGS)))
        y = (rng.random(truth.shape) < calibration.sigmoid(truth)).astype(np.int8)
        y[rng.random(y.shape) < 0.33] = -1
        meta = {"split": name, "image_index": [f"{name}{k:04d}.jpg" for k in range(n)]}
        return pd.DataFrame(meta).join(prediction_table.frame({}, y, 1.2 * truth - 3.0))

    val, test = split("val", 150), split("external", 4000)
    pd.concat([val, test]).to_parquet(tmp_path / "site.parquet", index=False)
    pd.DataFrame({"split": "train", **{f: [0, 1] for f in FINDINGS}}).to_parquet(tmp_path / "images.parquet")
    result = calibrate.calibrate(
        predictions=tmp_path / "site.parquet", table=tmp_path / "images.parquet", summary=None,
        calibration=tmp_path / "calibration.json", thresholds=tmp_path / "thresholds.json", site="site",
        method="temperature", min_positives=10, tta=False, targets={"sensitivity": 0.9, "specificity": 0.9},
    )  # fmt: skip
    assert (
        result["fitted_on"] == "site val" and json.loads((tmp_path / "thresholds.json").read_text())["site"] == "site"
    )
    shown = calibration.apply(result, prediction_table.logits(test))
    on_val = calibration.apply(result, prediction_table.logits(val))
    errors = []
    for j, f in enumerate(FINDINGS):
        labels = val[f"y_{f}"]
        fitted = result["findings"][f]
        assert (fitted["positives"], fitted["negatives"]) == ((labels == 1).sum(), (labels == 0).sum()), f
        known = test[f"y_{f}"].to_numpy() >= 0
        observed, raw = test[f"y_{f}"].to_numpy()[known].mean(), calibration.sigmoid(test[f"z_{f}"].to_numpy())[known]
        errors.append(abs(shown[known, j].mean() - observed))
        assert errors[-1] < abs(raw.mean() - observed), f
        # On val itself, the map meets what val says, up to Platt's smoothing of a few dozen labels.
        seen = labels.to_numpy() >= 0
        assert abs(on_val[seen, j].mean() - labels[seen].mean()) < 0.03, f
    assert np.mean(errors) < 0.05


def _site_rows(truth: np.ndarray, labels: np.ndarray, shift: float = 0.0, split: str = "val"):
    """A predictions table whose logits are the true logits moved by `shift` (another scanner)."""
    import pandas as pd

    from cxr14 import prediction_table

    meta = {"split": split, "image_index": [f"{split}{k:05d}.png" for k in range(len(truth))]}
    return pd.DataFrame(meta).join(prediction_table.frame({}, labels, truth + shift))


def _labels(truth: np.ndarray, rng) -> np.ndarray:
    return (rng.random(truth.shape) < calibration.sigmoid(truth)).astype(np.int8)


def test_the_shared_temperature_is_fitted_jointly_with_an_intercept_per_finding():
    """A site whose logits sit 1.2 lower than the truth, at a true temperature of 1, with every finding
    on the shared map: fitted jointly with one intercept per finding, T comes out at 1 (pooled without
    intercepts, the shift is taken for a temperature: 1.65 here), and a rare finding is shown at its
    true rate."""
    rng = np.random.default_rng(0)
    truth = rng.normal(np.linspace(-4, 0, len(calibration.FINDINGS)), 1.5, (3000, len(calibration.FINDINGS)))
    rows = _site_rows(truth, _labels(truth, rng), shift=-1.2)
    fitted = calibration.fit_table(rows, "temperature", 2000, dict.fromkeys(calibration.FINDINGS, 0.0))
    assert fitted["shared"] == list(calibration.FINDINGS)
    assert fitted["shared_temperature"] == pytest.approx(1.0, abs=0.05)
    rare = calibration.FINDINGS[0]  # true logits around -4
    shown = calibration.apply_one(fitted["findings"][rare], truth[:, 0] - 1.2)
    assert shown.mean() == pytest.approx(calibration.sigmoid(truth[:, 0]).mean(), rel=0.2)


def test_a_finding_without_val_positives_keeps_the_transferred_calibration_in_the_large():
    """0 positives in 200 val images of a finding whose true rate is 1.8 % and whose transferred map
    (here: the logits themselves) is right. The intercept is shrunk towards that map, with its
    posterior SD reported, so the probabilities stay within 2x of the truth (an unshrunk intercept on
    Platt's targets puts them 3.7x too low)."""
    rng = np.random.default_rng(0)
    truth = rng.normal(-4.5, 1.0, (200, len(calibration.FINDINGS)))
    labels = _labels(truth, rng)
    labels[:, 0] = 0
    fitted = calibration.fit_table(
        _site_rows(truth, labels), "temperature", 10, dict.fromkeys(calibration.FINDINGS, 0.0)
    )
    params = fitted["findings"][calibration.FINDINGS[0]]
    assert params["method"] == calibration.SHARED and params["positives"] == 0
    test = rng.normal(-4.5, 1.0, 100_000)
    assert calibration.apply_one(params, test).mean() > 0.5 * calibration.sigmoid(test).mean()
    assert abs(params["intercept"] - params["prior"]["centre"]) < 1.5 * params["prior"]["sd"]
    assert 0 < params["intercept_sd"] < params["prior"]["sd"]


def test_an_own_fit_is_never_kept_at_an_optimisers_bound():
    """Two ways a site's own fit used to stop at the intercept's bound (exactly +20) and keep it: a
    val split the model separates perfectly within a narrow band of logits, and logits 40 below the
    truth (where, on clipped probabilities, the fit did not move at all). Fitted on the logits with
    wide bounds, both optima lie inside them; a fit that still stops at a bound (logits 1,500 out) is
    not kept but given the shared map, which has no bounds, and the JSON names it."""
    z = np.linspace(-1.9, -1.82, 96)
    separable = calibration.fit((z > -1.86).astype(float), z, "temperature", 10)
    assert separable["method"] == "temperature" and separable["intercept"] > 20
    shown = calibration.apply_one(separable, z)
    assert shown[z < -1.87].max() < 0.1 and shown[z > -1.85].min() > 0.9  # what val says, not a wall at +20
    rng = np.random.default_rng(1)
    truth = rng.normal(-2.0, 2.0, (2000, len(calibration.FINDINGS)))
    labels = _labels(truth, rng)
    for shift in (-40.0, -1500.0):
        fitted = calibration.fit_table(
            _site_rows(truth, labels, shift), "temperature", 10, dict.fromkeys(calibration.FINDINGS, 0.0)
        )
        for k, f in enumerate(calibration.FINDINGS):
            params = fitted["findings"][f]
            shown = calibration.apply_one(params, truth[:, k] + shift)
            assert shown.mean() == pytest.approx(calibration.sigmoid(truth[:, k]).mean(), rel=0.15), (shift, f)
            assert not np.isclose(abs(params["intercept"]), [20.0, calibration.BOUND]).any(), (shift, f)
        assert (fitted["at_bound"] == []) == (shift == -40.0), shift
        assert all(fitted["findings"][f]["method"] == calibration.SHARED for f in fitted["at_bound"])


def test_isotonic_steps_are_clipped_before_their_logit():
    """A val split the model separates perfectly gives isotonic steps of 0 and 1: unclipped, logits of
    -+34.5 that outvote any other ensemble member; clipped to [1/(n+1), n/(n+1)], at most log(n)."""
    z = np.linspace(-3, 3, 200)
    fitted = calibration.fit((z > 0).astype(float), z, "isotonic", 10)
    logits = calibration.apply_logit(fitted, np.linspace(-10, 10, 50))
    assert np.abs(logits).max() == pytest.approx(np.log(200), abs=1e-6)


def test_no_finding_keeps_its_class_weight_offset_and_an_unlabelled_one_gets_no_map():
    """A weighted-loss run calibrated by Platt on NIH (whose maps carry no offset of their own), then
    fitted locally on a site (`assess.local_site`): the few-positive findings' shared map still takes
    the run's offsets out (the calibration's `offsets`) and is shrunk towards NIH's map, so none is
    shown at the inflated raw rate; no finding is left on its raw logits ("none"); and a finding
    nobody at the site labels gets no map (NaN: no probability, no decision) rather than one fitted on
    nothing."""
    from cxr14 import assess

    rng = np.random.default_rng(2)
    offsets = dict.fromkeys(calibration.FINDINGS, 5.0)
    truth = rng.normal(-3.0, 1.0, (4000, len(calibration.FINDINGS)))
    nih = calibration.fit_table(_site_rows(truth + 5.0, _labels(truth, rng)), "platt", 10, offsets)
    assert all(nih["findings"][f]["method"] == "platt" for f in calibration.FINDINGS)
    small = rng.normal(-3.0, 1.0, (300, len(calibration.FINDINGS)))
    labels = _labels(small, rng)
    labels[:, -1] = -1  # Hernia: the site does not say
    site = _site_rows(small + 5.0, labels)
    site["patient_id"] = site.image_index.str[:8]
    local = assess.local_site(site, nih, 0.5, 0, "platt", 10)["calibration"]
    for k, f in enumerate(calibration.FINDINGS):
        shown = calibration.apply_one(local["findings"][f], truth[:, k] + 5.0)
        # An unlabelled Hernia fitted on nothing with the offset left in shows 0.50 against a true 0.07.
        assert np.isnan(shown).all() or shown.mean() < 2 * calibration.sigmoid(truth[:, k]).mean(), f
    assert "none" not in {v["method"] for v in local["findings"].values()}
    assert local["unlabelled"] == ["Hernia"] and local["offsets"] == offsets
    assert np.isnan(calibration.apply_one(local["findings"]["Hernia"], np.zeros(3))).all()


def test_a_site_that_moves_every_finding_widens_the_prior_of_its_few_positive_ones():
    """Where the site's well-labelled findings show the transferred map is logits off, a finding with
    one val positive is not held to that map (the demo site's Pneumonia: NIH's map called it on 92 %
    of images; shrunk with SD 0.5 its test ECE was 0.32): the prior's SD is the findings' spread."""
    rng = np.random.default_rng(3)
    truth = rng.normal(-1.0, 1.5, (1500, len(calibration.FINDINGS)))
    labels = _labels(truth, rng)
    labels[:, 0] = 0
    labels[:1, 0] = 1  # one positive: the shared map, its intercept shrunk
    offsets = dict.fromkeys(calibration.FINDINGS, 0.0)
    narrow, wide = (calibration.fit_table(_site_rows(truth, labels, shift), "temperature", 10, offsets, prior_sd=0.5)
                    for shift in (0.0, -3.0))  # fmt: skip
    assert narrow["prior_sd"] == narrow["prior_sd_floor"] == 0.5
    assert wide["prior_sd"] == pytest.approx(3.0, abs=0.3) and wide["prior_sd_floor"] == 0.5
    assert wide["findings"][calibration.FINDINGS[0]]["prior"]["sd"] == wide["prior_sd"]
