"""Is a collection like the data a run was trained and validated on? The two-sample statistics `monitor`
reports, none of which needs a label: tests on the run's penultimate-layer embeddings (MMD with a
permutation p-value, a domain classifier's cross-validated AUROC) and distances between intensity
distributions (the per-image features and the out-of-distribution score are in `ood`). Every draw is
seeded.

Written with numpy and scikit-learn: `alibi-detect` (0.13.0, the latest) needs numpy below 2 and, for
its TensorFlow detectors, TensorFlow below 2.19, so it does not install beside TensorFlow 2.21."""

from __future__ import annotations

import numpy as np

from . import metrics


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein (earth mover's) distance between two samples of one quantity, in its units."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b))


def projection(reference: np.ndarray, dims: int):
    """A map of embeddings onto the `dims` leading principal components of `reference` (the NIH
    training embeddings), whitened: the two-sample tests compare collections in that space, where a
    kernel's bandwidth and a linear classifier mean the same for every backbone width."""
    from sklearn.decomposition import PCA

    reference = np.asarray(reference, np.float64)
    pca = PCA(n_components=min(dims, *reference.shape), whiten=True, svd_solver="full").fit(reference)
    return lambda x: pca.transform(np.asarray(x, np.float64))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, seed: int) -> dict:
    """Maximum mean discrepancy between samples `x` and `y` (rows) with a Gaussian kernel whose bandwidth
    is the median distance between the pooled points (Gretton et al. 2012), the unbiased MMD² and its
    permutation p-value: (1 + permutations at least as large) / (1 + permutations)."""
    z = np.concatenate([x, y]).astype(np.float64)
    squared = np.sum(z**2, axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * z @ z.T, 0)
    bandwidth2 = float(np.median(d2[np.triu_indices(len(z), 1)])) or 1.0
    kernel = np.exp(-d2 / (2 * bandwidth2))
    np.fill_diagonal(kernel, 0.0)
    n, m = len(x), len(y)
    rng = np.random.default_rng(seed)
    labels = np.zeros((permutations + 1, n + m))
    labels[0, :n] = 1
    for k in range(1, permutations + 1):
        labels[k, rng.permutation(n + m)[:n]] = 1
    weighted = labels @ kernel  # row p: each point's kernel sum over permutation p's x side
    inside_x = np.sum(weighted * labels, axis=1)
    across = np.sum(weighted, axis=1) - inside_x
    inside_y = kernel.sum() - 2 * across - inside_x
    stats = inside_x / (n * (n - 1)) + inside_y / (m * (m - 1)) - 2 * across / (n * m)
    return {
        "mmd2": float(stats[0]),
        "p": float((1 + np.sum(stats[1:] >= stats[0])) / (1 + permutations)),
        "bandwidth": float(np.sqrt(bandwidth2)),
        "permutations": permutations,
    }


def domain_classifier(x: np.ndarray, y: np.ndarray, folds: int, seed: int, n_boot: int = 1000) -> dict:
    """How well a logistic regression tells `y`'s rows from `x`'s: the AUROC of its out-of-fold
    probabilities (stratified `folds`-fold cross-validation), with a bootstrap 95% CI over the images.
    0.5: the two are indistinguishable to it; 1.0: told apart every time."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([x, y]).astype(np.float64)
    target = np.r_[np.zeros(len(x)), np.ones(len(y))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, features, target, cv=split, method="predict_proba")[:, 1]
    boot = metrics.bootstrap_auroc(target[:, None], scores[:, None], np.arange(len(target)), n_boot, seed)
    return {"auroc": boot["auroc"][0], "ci": boot["ci"][0], "folds": folds}


def sample(n: int, size: int, seed: int) -> np.ndarray:
    """The sorted positions of a seeded sample of `size` of `n` rows (all of them when n <= size)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
