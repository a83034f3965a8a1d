"""The monitor's tests on data shaped like chest X-rays: patients with many images, whose images are
more alike than two patients'. Two samples of one population must not be flagged, a real shift must,
and the yardstick's halves and the out-of-distribution threshold's held-out half share no patient."""

import numpy as np
import pytest

from cxr14 import ood, shift

PATIENTS, IMAGES, DIMS, FINDINGS = 50, 10, 8, 3
SETTINGS = {"sample_images": 1000, "permutations": 200, "folds": 5, "n_boot": 200, "alpha": 0.01}


def _clustered(seed: int, moved: float = 0.0, side: str = "a"):
    """`PATIENTS` x `IMAGES` embeddings: a patient random effect (sd 1) plus each image's own noise
    (sd 0.5), the population's mean moved by `moved`; probabilities of `FINDINGS` findings from a
    fixed linear read-out of the embedding; each row's patient id."""
    rng = np.random.default_rng(seed)
    patient_effect = rng.normal(size=(PATIENTS, DIMS)) + moved
    embeddings = np.repeat(patient_effect, IMAGES, axis=0) + 0.5 * rng.normal(size=(PATIENTS * IMAGES, DIMS))
    readout = np.abs(np.random.default_rng(99).normal(size=(DIMS, FINDINGS))) / np.sqrt(DIMS)
    probabilities = 1 / (1 + np.exp(-(embeddings @ readout - 1.5)))
    patients = np.repeat([f"{side}{k:05d}" for k in range(PATIENTS)], IMAGES)
    return embeddings, probabilities, patients


def _compare(a, b, seed=0):
    (x, p_x, x_patients), (y, p_y, y_patients) = a, b
    return shift.compare(x, y, x_patients, y_patients, p_x=p_x, p_y=p_y, seed=seed, **SETTINGS)


@pytest.mark.parametrize("draw", range(4))
def test_two_samples_of_one_patient_clustered_population_are_not_flagged(draw):
    """50 patients x 10 images on each side, one population: no detector flags it. Counted by image
    (every row its own patient, as the monitor did), the same samples look shifted: the patient
    effect is what the tests must not mistake for a shift."""
    a, b = _clustered(2 * draw), _clustered(2 * draw + 1, side="b")
    got = _compare(a, b)
    assert got["mmd"]["p"] > 0.05 and got["domain"]["ci"][0] < 0.5, got
    assert got["ks"]["p_bonferroni"] > SETTINGS["alpha"] and not got["shifted"], got
    assert got["patients"] == [PATIENTS, PATIENTS] and got["images"] == [PATIENTS * IMAGES] * 2
    by_image = shift.mmd_test(a[0], b[0], SETTINGS["permutations"], seed=0)
    classified = shift.domain_classifier(a[0], b[0], 5, seed=0, n_boot=200)
    assert by_image["p"] < 0.01 or classified["ci"][0] > 0.5  # what ignoring the patients gives


def test_a_shift_of_the_patients_is_flagged_by_every_detector():
    got = _compare(_clustered(0), _clustered(1, moved=0.8, side="b"))
    assert got["shifted"] and got["flags"] == {"embeddings": True, "predictions": True}, got
    assert got["mmd"]["p"] < 0.01 and got["domain"]["ci"][0] > 0.6 and got["ks"]["p_bonferroni"] < 0.01


def test_ks_compares_one_image_per_patient_and_is_scipys_there():
    from scipy.stats import ks_2samp

    (_, p_x, xp), (_, p_y, yp) = _clustered(3), _clustered(4, moved=0.3, side="b")
    got = shift.ks_test(p_x, p_y, seed=1, x_patients=xp, y_patients=yp)
    at_x, at_y = shift.one_per_patient(xp, 1), shift.one_per_patient(yp, 2)
    assert len(set(xp[at_x])) == len(at_x) == PATIENTS and got["images"] == [PATIENTS, PATIENTS]
    for j in range(FINDINGS):
        want = ks_2samp(p_x[at_x, j], p_y[at_y, j])
        assert (got["statistic"][j], got["p"][j]) == pytest.approx((want.statistic, want.pvalue), rel=1e-12)
    assert got["p_bonferroni"] == pytest.approx(min(1, FINDINGS * min(got["p"])))


def test_mmd_permutations_move_whole_patients():
    (_, _, xp), (_, _, yp) = _clustered(3), _clustered(4, side="b")
    labels = shift._patient_permutations(*shift._groups(xp, yp), 20, seed=0)
    for row in labels:  # every patient's images on one side, half the patients on each
        per_patient = row.reshape(2 * PATIENTS, IMAGES)
        assert (per_patient == per_patient[:, :1]).all() and per_patient[:, 0].sum() == PATIENTS


def test_patient_sample_takes_whole_patients_and_halves_share_none():
    patients = np.repeat(np.arange(40), np.arange(1, 41))  # 1 to 40 images each
    picked = shift.sample(len(patients), 200, seed=3, patients=patients)
    assert len(picked) == 200 and (np.diff(picked) > 0).all()
    counts = np.bincount(patients[picked], minlength=40)
    cut = [p for p in np.unique(patients[picked]) if counts[p] != p + 1]
    assert len(cut) <= 1  # every drawn patient whole, but the last one cut at the size
    first = shift.patient_halves(patients, seed=0)
    assert not set(patients[first]) & set(patients[~first])
    assert abs(len(set(patients[first])) - 20) <= 1
    np.testing.assert_array_equal(first, shift.patient_halves(patients, seed=0))


def test_ood_threshold_is_fitted_on_one_half_of_val_and_checked_on_the_other():
    """The threshold's own images are past it by construction (1 - quantile of them); the yardstick
    share is that of the patients it was not fitted on, about 1 - quantile too, not 0."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(3000, 4))
    val, _, val_patients = _clustered(6)
    val = val[:, :4] / np.sqrt(1.25)
    reference = ood.fit_reference(train, val, 0.9, val_patients=val_patients, seed=0)
    fitted_on = shift.patient_halves(val_patients, seed=0)
    assert reference["threshold"] == pytest.approx(np.quantile(ood.mahalanobis(reference, val[fitted_on]), 0.9))
    held_out = np.mean(ood.mahalanobis(reference, val[~fitted_on]) > reference["threshold"])
    assert reference["heldout_share"] == pytest.approx(held_out)
    assert reference["threshold_images"] == fitted_on.sum() and reference["heldout_images"] == (~fitted_on).sum()
    assert 0.0 < reference["heldout_share"] < 0.3
