"""Is a collection like the data a run was trained and validated on? The two-sample statistics `monitor`
reports, none of which needs a label: tests on the run's penultimate-layer embeddings (MMD with a
permutation p-value, a domain classifier's cross-validated AUROC), per-finding Kolmogorov-Smirnov tests
on the calibrated probabilities (Rabanser et al. 2019's strongest detector), and distances between
intensity distributions (the per-image features and the out-of-distribution score are in `ood`).

Patients, not images: chest X-rays come in clusters (NIH test: about 9 images per patient, up to 184),
and a patient's images are more alike than two patients'. Treating them as independent makes two samples
of one population look different, so every test here draws, permutes, folds and resamples whole
patients (or compares one image of each): each function takes the patient of every row beside the
rows. Every draw is seeded.

Written with numpy, SciPy and scikit-learn: `alibi-detect` (0.13.0, the latest) needs numpy below 2 and,
for its TensorFlow detectors, TensorFlow below 2.19, so it does not install beside TensorFlow 2.21."""

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


def _groups(x_patients, y_patients) -> tuple[np.ndarray, int]:
    """Each row's patient as a number over both sides (a patient id on each side is its own patient,
    even where two collections happen to spell one alike), and how many patients side x has."""
    x_ids = np.unique(np.asarray(x_patients).astype(str), return_inverse=True)[1]
    y_ids = np.unique(np.asarray(y_patients).astype(str), return_inverse=True)[1]
    n_x = int(x_ids.max()) + 1 if len(x_ids) else 0
    return np.r_[x_ids, y_ids + n_x], n_x


def _patient_permutations(groups: np.ndarray, n_x: int, permutations: int, seed: int) -> np.ndarray:
    """(permutations + 1, rows) 0/1: row 0 the observed sides (x = 1), each other row a seeded
    relabelling of whole patients, side x keeping its number of patients."""
    n_groups = int(groups.max()) + 1
    return _relabelled(groups, np.arange(n_groups) < n_x, permutations, np.random.default_rng(seed))


def _relabelled(groups: np.ndarray, side: np.ndarray, permutations: int, rng) -> np.ndarray:
    """(permutations + 1, rows) 0/1 of each row's patient's side (`side`, one per patient of `groups`):
    row 0 as observed, each other row the sides shuffled among the patients."""
    on_side = np.empty((permutations + 1, len(side)), bool)
    on_side[0] = side
    for k in range(1, permutations + 1):
        on_side[k] = rng.permutation(side)
    return on_side[:, groups].astype(np.float64)


def _p_value(stats: np.ndarray) -> float:
    """(1 + permutations at least as large as the observed, row 0) / (1 + permutations)."""
    return float((1 + np.sum(stats[1:] >= stats[0])) / len(stats))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, seed: int, x_patients=None, y_patients=None) -> dict:
    """Maximum mean discrepancy between samples `x` and `y` (rows) with a Gaussian kernel whose bandwidth
    is the median distance between the pooled points (Gretton et al. 2012), the unbiased MMD² and its
    permutation p-value: (1 + permutations at least as large) / (1 + permutations). The permutations
    move whole patients between the sides (`x_patients`, `y_patients`: each row's patient; without
    them every row is a patient of its own), so a patient's likeness to itself is no evidence of shift.
    The within-side sums leave out pairs of one patient's images (their denominators count the pairs of
    two patients): a site with several images a patient against a reference of one each would otherwise
    look unlike it by its patients' self-likeness alone, which no relabelling of whole patients takes
    back (the statistic is the U-statistic over pairs of different patients)."""
    z = np.concatenate([x, y]).astype(np.float64)
    squared = np.sum(z**2, axis=1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * z @ z.T, 0)
    bandwidth2 = float(np.median(d2[np.triu_indices(len(z), 1)])) or 1.0
    kernel = np.exp(-d2 / (2 * bandwidth2))
    groups, n_x = _groups(_or_rows(x_patients, len(x)), _or_rows(y_patients, len(y)))
    kernel[groups[:, None] == groups[None, :]] = 0.0  # the diagonal and every pair of one patient's images
    labels = _patient_permutations(groups, n_x, permutations, seed)
    n = labels.sum(axis=1)  # side x's images under each relabelling (whole patients move)
    m = len(z) - n
    others = np.bincount(groups)[groups] - 1.0  # each image's same-patient partners (always on its side)
    same_x = labels @ others
    weighted = labels @ kernel  # row p: each point's kernel sum over permutation p's x side
    inside_x = np.sum(weighted * labels, axis=1)
    across = np.sum(weighted, axis=1) - inside_x
    inside_y = kernel.sum() - 2 * across - inside_x
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = (inside_x / (n * (n - 1) - same_x) + inside_y / (m * (m - 1) - (others.sum() - same_x))
                 - 2 * across / (n * m))  # fmt: skip
    stats = np.nan_to_num(stats, nan=-np.inf)  # a relabelling that leaves one image on a side
    return {
        "mmd2": float(stats[0]),
        "p": _p_value(stats),
        "bandwidth": float(np.sqrt(bandwidth2)),
        "permutations": permutations,
        "patients": [n_x, int(groups.max()) + 1 - n_x],
    }


def _or_rows(patients, n: int) -> np.ndarray:
    return np.arange(n) if patients is None else np.asarray(patients)


def domain_classifier(
    x: np.ndarray,
    y: np.ndarray,
    folds: int,
    seed: int,
    n_boot: int = 1000,
    x_patients=None,
    y_patients=None,
    permutations: int = 1000,
) -> dict:
    """How well a logistic regression tells `y`'s rows from `x`'s (a classifier two-sample test, Lopez-Paz
    and Oquab 2017): fitted on all but one of `folds` seeded folds of the patients (stratified by side),
    its AUROC on the held-out fold's patients, whom it never saw. 0.5: the two are indistinguishable
    to it; 1.0: told apart every time.

    `p`: the one-sided permutation p-value of that AUROC, the held-out patients' sides shuffled among
    them (exact: under no shift they are exchangeable whatever the model fitted without them learnt).
    `ci`: a 95% patient bootstrap of the held-out scores. Both are of the one fitted model: averaging
    the AUROCs of every fold (cross-validation) would tie each fold's model to the others' held-out
    patients, and a permutation test of that average is no longer exact."""
    from scipy.stats import rankdata
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.concatenate([x, y]).astype(np.float64)
    target = np.r_[np.zeros(len(x)), np.ones(len(y))]
    groups, _ = _groups(_or_rows(x_patients, len(x)), _or_rows(y_patients, len(y)))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    train, test = next(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(features, target, groups))
    scores = model.fit(features[train], target[train]).decision_function(features[test])
    patients, local = np.unique(groups[test], return_inverse=True)
    side = np.zeros(len(patients), bool)
    side[local] = target[test] == 1
    labels = _relabelled(local, side, permutations, np.random.default_rng(seed))
    positives = labels.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # each relabelling's AUROC, from the scores' ranks
        aurocs = (labels @ rankdata(scores) - positives * (positives + 1) / 2) / (positives * (len(test) - positives))
    aurocs = np.nan_to_num(aurocs, nan=-np.inf)
    boot = metrics.bootstrap_auroc(target[test, None], scores[:, None], groups[test], n_boot, seed)
    return {
        "auroc": float(aurocs[0]),
        "ci": boot["ci"][0],
        "p": _p_value(aurocs),
        "held_out": [int(len(test)), int(len(patients))],  # images, patients
        "folds": folds,
        "permutations": permutations,
    }


def one_per_patient(patients, seed: int) -> np.ndarray:
    """The sorted positions of one seeded image of each patient."""
    _, ids = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    order = np.lexsort((np.random.default_rng(seed).random(len(ids)), ids))
    first = np.r_[True, ids[order][1:] != ids[order][:-1]]
    return np.sort(order[first])


def ks_test(p_x: np.ndarray, p_y: np.ndarray, seed: int, x_patients=None, y_patients=None) -> dict:
    """Per column (finding) of the probabilities `p_x`, `p_y` (n, k): the two-sample Kolmogorov-Smirnov
    statistic and p-value on one seeded image of each patient (so the images compared are independent,
    as the KS p-value assumes), and the smallest p-value Bonferroni-corrected over the columns: the one
    test of "the predictions have shifted" (Rabanser, Günnemann and Lipton 2019, "Failing loudly").
    SciPy's exact or asymptotic p-values, not permutations: a Bonferroni over 14 findings at 0.01 needs
    p below 0.0007, past the resolution of any affordable number of permutations."""
    from scipy.stats import ks_2samp

    p_x, p_y = np.atleast_2d(np.asarray(p_x, np.float64).T).T, np.atleast_2d(np.asarray(p_y, np.float64).T).T
    at_x = one_per_patient(_or_rows(x_patients, len(p_x)), seed)
    at_y = one_per_patient(_or_rows(y_patients, len(p_y)), seed + 1)
    tests = [ks_2samp(p_x[at_x, j], p_y[at_y, j]) for j in range(p_x.shape[1])]
    p_values = [float(t.pvalue) for t in tests]
    return {
        "statistic": [float(t.statistic) for t in tests],
        "p": p_values,
        "p_bonferroni": min(1.0, min(p_values) * len(p_values)),
        "images": [int(len(at_x)), int(len(at_y))],
    }


def compare(
    x: np.ndarray,
    y: np.ndarray,
    x_patients,
    y_patients,
    *,
    sample_images: int,
    permutations: int,
    folds: int,
    n_boot: int,
    seed: int,
    alpha: float,
    p_x: np.ndarray | None = None,
    p_y: np.ndarray | None = None,
) -> dict:
    """Every test of two samples, side x the reference, on all of each side's rows: embeddings `x`, `y`
    (a seeded patient sample of `sample_images` per side: MMD, domain classifier) and, when given, the
    calibrated probabilities `p_x`, `p_y` of the same rows (per-finding KS, one image per patient).
    `shifted`: the MMD p below alpha / detectors, or the KS test's Bonferroni p below alpha / detectors,
    where detectors is the number of the two asked (1 or 2): the flag's false-alarm rate stays at most
    alpha. The domain classifier is reported beside the MMD (an AUROC says how far apart the two are)
    but does not gate the flag: requiring both cut the power to a fifth, for no gain in false alarms (a shift
    of 0.5 in simulation, 500 images a side: 0.12 with both, 0.60 with the MMD alone, at the same level;
    bench/README.md)."""
    x_patients, y_patients = _or_rows(x_patients, len(x)), _or_rows(y_patients, len(y))
    at_x = sample(len(x), sample_images, seed, x_patients)
    at_y = sample(len(y), sample_images, seed + 1, y_patients)
    xs, ys, xp, yp = x[at_x], y[at_y], x_patients[at_x], y_patients[at_y]
    detectors = 1 if p_x is None else 2
    out = {
        "images": [int(len(xs)), int(len(ys))],
        "mmd": mmd_test(xs, ys, permutations, seed, xp, yp),
        "domain": domain_classifier(xs, ys, folds, seed, n_boot, xp, yp, permutations),
    }
    out["patients"] = out["mmd"]["patients"]
    level = alpha / detectors
    flags = {"embeddings": bool(out["mmd"]["p"] < level)}
    if p_x is not None:
        out["ks"] = ks_test(p_x, p_y, seed, x_patients, y_patients)
        flags["predictions"] = bool(out["ks"]["p_bonferroni"] < alpha / detectors)
    return out | {"flags": flags, "shifted": any(flags.values())}


def sample(n: int, size: int, seed: int, patients=None) -> np.ndarray:
    """The sorted positions of a seeded sample of `size` of `n` rows (all of them when n <= size). With
    `patients` (each row's), as many patients as the size allows: one image of each patient in a seeded
    order, then a second image of each, and so on until `size` images are in. The evidence against "no
    shift" grows with the patients, not the images (a patient's images are alike), so a sample of whole
    patients (NIH test: 9 images each) would test a ninth of the patients for the same cost; the tests
    after it still move a patient's images together."""
    if n <= size:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if patients is None:
        return np.sort(rng.choice(n, size, replace=False))
    _, ids = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    rank = rng.permutation(ids.max() + 1)[ids]  # each patient's place in the draw
    shuffled = rng.permutation(n)
    order = shuffled[np.lexsort((rank[shuffled], ids[shuffled]))]  # by patient, its images in a seeded order
    round_ = np.empty(n, np.int64)  # each image's place among its patient's: 0 for the first drawn
    starts = np.r_[0, np.flatnonzero(np.diff(ids[order])) + 1]
    round_[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.sort(np.lexsort((rank, round_))[:size])


def patient_halves(patients, seed: int) -> np.ndarray:
    """A seeded split of rows into two patient-disjoint halves (half the patients each): True for the
    first. What no shift looks like is two such halves of one split."""
    _, ids = np.unique(np.asarray(patients).astype(str), return_inverse=True)
    n_patients = int(ids.max()) + 1
    first = np.zeros(n_patients, bool)
    first[np.random.default_rng(seed).permutation(n_patients)[: n_patients // 2]] = True
    return first[ids]
