"""The label-free shift statistics (cxr14/shift.py) on textbook examples: two samples of one Gaussian
and of two, an MMD statistic against its definition, Mahalanobis distances against SciPy's."""

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from cxr14 import intensity, ood, shift


def _gaussians(shift_by: float, n=150, dims=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dims)), rng.normal(size=(n, dims)) + shift_by


def test_mmd_is_its_unbiased_definition_and_its_p_value_counts_permutations():
    x, y = _gaussians(0.5, n=20, dims=3)
    got = shift.mmd_test(x, y, permutations=50, seed=1)
    z = np.r_[x, y]
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * got["bandwidth"] ** 2))
    n = len(x)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    want = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    assert got["mmd2"] == pytest.approx(want, rel=1e-9)
    assert got["bandwidth"] == pytest.approx(np.sqrt(np.median(d2[np.triu_indices(2 * n, 1)])))
    assert got["p"] in {(1 + k) / 51 for k in range(51)}


def test_mmd_and_the_domain_classifier_tell_two_gaussians_apart_and_not_one_from_itself():
    same, moved = _gaussians(0.0), _gaussians(0.6)
    assert shift.mmd_test(*same, permutations=200, seed=0)["p"] > 0.05
    assert shift.mmd_test(*moved, permutations=200, seed=0)["p"] < 0.01
    alike = shift.domain_classifier(*same, folds=2, seed=0, n_boot=200, permutations=200)
    apart = shift.domain_classifier(*moved, folds=2, seed=0, n_boot=200, permutations=200)
    assert alike["ci"][0] < 0.5 < alike["ci"][1] and alike["p"] > 0.05
    assert apart["auroc"] > 0.8 and apart["ci"][0] > 0.7 and apart["p"] == 1 / 201
    assert apart["held_out"] == [150, 150]  # half of the 300 rows, each its own patient
    # Seeded: the same inputs give the same numbers.
    assert shift.domain_classifier(*moved, folds=2, seed=0, n_boot=200, permutations=200) == apart


def test_mahalanobis_distances_are_scipys_and_the_threshold_flags_its_quantile():
    rng = np.random.default_rng(3)
    train, val, fresh = (rng.normal(size=(n, 5)) * [1, 2, 3, 1, 1] for n in (4000, 2000, 20000))
    reference = ood.fit_reference(train, val, 0.99, val_patients=np.arange(len(val)), seed=0)
    got = ood.mahalanobis(reference, val[:5])
    want = [scipy_mahalanobis(v, reference["mean"], reference["precision"]) for v in val[:5]]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    past = np.mean(ood.mahalanobis(reference, fresh) > reference["threshold"])
    assert 0.005 < past < 0.02  # about 1% of new images like the reference's are past it
    assert np.mean(ood.mahalanobis(reference, fresh + 3) > reference["threshold"]) > 0.9


def test_intensity_features_are_numpys_histogram_mean_and_sd():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 16, 16, 1)).astype(np.float32)
    got = intensity.intensity_features(images)
    for k, image in enumerate(images):
        counts, _ = np.histogram(image, bins=intensity.BINS, range=(0, 256))
        np.testing.assert_allclose(got["histogram"][k], counts / image.size, rtol=1e-6)
        assert got["pixel_mean"][k] == pytest.approx(image.mean()) and got["pixel_std"][k] == pytest.approx(image.std())
