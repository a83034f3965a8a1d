"""The numbers of the evaluation report, on plain numpy arrays (scikit-learn where it has them).

A label below 0 means "not labelled" (an external collection that does not say): the AUROC, bootstrap
and calibration functions leave such an image out of that finding's figures. NIH labels are all 0/1.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve


def weighted_auroc(y: np.ndarray, score: np.ndarray, weight: np.ndarray | None = None) -> float:
    """AUROC with per-sample weights (ties count one half), in O(n log n).

    A patient bootstrap is a reweighting (each image weighs the number of times its patient was
    drawn), so this computes every bootstrap replicate without copying data. Equals scikit-learn's
    roc_auc_score(y, score, sample_weight=weight). NaN when either class has zero weight.
    """
    keep = _labelled_rows(y)
    weight = np.ones(len(y)) if weight is None else np.asarray(weight, np.float64)
    return float(_SortedScores(np.asarray(y)[keep], np.asarray(score)[keep]).auroc(weight[None, keep])[0])


def labelled(y: np.ndarray) -> np.ndarray:
    """The images a label column says something about (0 or 1; below 0 is not labelled)."""
    return np.asarray(y) >= 0


def _labelled_rows(y: np.ndarray):
    """`labelled(y)` as an index: every row, without a copy, when all are labelled (NIH's always are),
    so the bootstrap's hot loop copies nothing for them."""
    keep = labelled(y)
    return slice(None) if keep.all() else keep


class _SortedScores:
    """Scores sorted once, so many weightings (bootstrap replicates) cost one pass each."""

    def __init__(self, y, score):
        score = np.asarray(score, np.float64)
        self.order = np.argsort(score, kind="mergesort")
        s = score[self.order]
        self.positive = np.asarray(y).astype(bool)[self.order]
        # Tied scores form a group: a positive beats the negatives below its group and ties its own.
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        """AUROC for each row of `weights` (m, n); NaN without images (a finding nobody labels)."""
        if not len(self.order):
            return np.full(len(weights), np.nan)
        w = weights[:, self.order]
        pos_w = np.add.reduceat(np.where(self.positive, w, 0.0), self.starts, axis=1)
        neg_w = np.add.reduceat(np.where(self.positive, 0.0, w), self.starts, axis=1)
        total_pos, total_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
        neg_below = np.cumsum(neg_w, axis=1) - neg_w
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.sum(pos_w * (neg_below + 0.5 * neg_w), axis=1) / (total_pos * total_neg)
        return np.where((total_pos > 0) & (total_neg > 0), out, np.nan)


def patient_bootstrap_weights(patients: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_images) weights: draw patients with replacement; an image weighs its patient's draws."""
    _, inverse = np.unique(patients, return_inverse=True)
    n_patients = inverse.max() + 1
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot)
    return draws[:, inverse].astype(np.float64)


def bootstrap_auroc(
    y: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> dict:
    """Point AUROC per column and percentile CIs from a bootstrap that resamples patients.

    y, score: (n, k). Returns {"auroc": [k], "ci": [[lo, hi]] * k, "mean_auroc", "mean_ci"}; the mean's
    CI comes from the same replicates (the mean over findings of each replicate).
    """
    y, score = np.atleast_2d(y.T).T, np.atleast_2d(score.T).T
    k = y.shape[1]
    point = np.array([weighted_auroc(y[:, j], score[:, j]) for j in range(k)])
    reps = bootstrap_reps(y, score, patient_bootstrap_weights(patients, n_boot, seed))
    alpha = (1 - level) / 2
    ci = [
        [float(np.nanquantile(reps[:, j], alpha)), float(np.nanquantile(reps[:, j], 1 - alpha))]
        if np.isfinite(reps[:, j]).any()
        else [float("nan")] * 2
        for j in range(k)
    ]
    valid = np.isfinite(point)
    mean_reps = np.nanmean(reps[:, valid], axis=1) if valid.any() else np.full(n_boot, np.nan)
    return {
        "auroc": point.tolist(),
        "ci": ci,
        "mean_auroc": float(np.mean(point[valid])) if valid.any() else float("nan"),
        "mean_ci": [float(np.nanquantile(mean_reps, alpha)), float(np.nanquantile(mean_reps, 1 - alpha))],
    }


def thresholds(y: np.ndarray, score: np.ndarray) -> dict:
    """Operating points on one finding: the threshold of maximum F1 and of maximum Youden's J."""
    if y.min() == y.max():
        return {"max_f1": 0.5, "youden": 0.5}
    precision, recall, thr = precision_recall_curve(y, score)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)[:-1]
    fpr, tpr, roc_thr = roc_curve(y, score)
    j = tpr - fpr
    finite = np.isfinite(roc_thr)
    return {"max_f1": float(thr[int(np.argmax(f1))]), "youden": float(roc_thr[finite][int(np.argmax(j[finite]))])}


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Confusion counts and the usual rates when `score >= threshold` is called positive."""
    pred = score >= threshold
    y = y.astype(bool)
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": precision,
        "sensitivity": recall,
        "specificity": ratio(tn, tn + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def bin_edges(score: np.ndarray, bins: int = 10, adaptive: bool = False) -> np.ndarray:
    """Inner bin edges: equal-width on [0, 1], or (adaptive) equal-count quantiles of the scores, so
    that the high-probability bins of a rare finding are not left nearly empty."""
    if adaptive:
        return np.quantile(score, np.linspace(0, 1, bins + 1)[1:-1])
    return np.linspace(0, 1, bins + 1)[1:-1]


def calibration_error(y: np.ndarray, score: np.ndarray, edges: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Expected calibration error: |mean predicted - fraction positive| of each bin, weighted by the
    bin's share of the (weighted) images."""
    return _binned_error(np.searchsorted(edges, score, side="right"), len(edges) + 1, y, score, weight)


def _binned_error(idx: np.ndarray, n_bins: int, y: np.ndarray, score: np.ndarray, weight: np.ndarray | None) -> float:
    w = np.ones(len(y)) if weight is None else weight
    gap = np.bincount(idx, weights=w * score, minlength=n_bins) - np.bincount(idx, weights=w * y, minlength=n_bins)
    return float(np.abs(gap).sum() / w.sum())


def reliability(y: np.ndarray, score: np.ndarray, bins: int = 10) -> dict:
    """Equal-width reliability bins, expected calibration error (equal-width and adaptive bins) and
    Brier score for one finding."""
    edges = bin_edges(score, bins)
    idx = np.searchsorted(edges, score, side="right")
    count = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=score, minlength=bins)
    acc = np.bincount(idx, weights=y.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, frac_pos = conf / count, acc / count
    return {
        "ece": calibration_error(y, score, edges),
        "ece_adaptive": calibration_error(y, score, bin_edges(score, bins, adaptive=True)),
        "brier": float(np.mean((score - y) ** 2)),
        "count": count.tolist(),
        "mean_predicted": [None if c == 0 else float(v) for c, v in zip(count, mean_conf)],
        "fraction_positive": [None if c == 0 else float(v) for c, v in zip(count, frac_pos)],
    }


def bootstrap_calibration(
    y: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int, seed: int, bins: int = 10, level: float = 0.95
) -> dict:
    """Mean over findings of ECE (equal-width and adaptive bins) and Brier score, each with a
    percentile CI from a bootstrap that resamples patients (the bins stay those of the sample)."""
    k = y.shape[1]
    keep = [_labelled_rows(y[:, j]) for j in range(k)]
    ys = [y[keep[j], j].astype(np.float64) for j in range(k)]
    ss = [score[keep[j], j] for j in range(k)]
    bin_of = {
        name: [np.searchsorted(bin_edges(ss[j], bins, adaptive), ss[j], side="right") for j in range(k)]
        for name, adaptive in (("ece", False), ("ece_adaptive", True))
    }

    def means(w):
        ws = [np.ones(len(ys[j])) if w is None else w[keep[j]] for j in range(k)]
        out = {
            name: np.mean([_binned_error(idx[j], bins, ys[j], ss[j], ws[j]) for j in range(k)])
            for name, idx in bin_of.items()
        }
        out["brier"] = float(np.mean([((ss[j] - ys[j]) ** 2 * ws[j]).sum() / ws[j].sum() for j in range(k)]))
        return out

    point = means(None)
    reps = [means(w) for w in patient_bootstrap_weights(patients, n_boot, seed)]
    alpha = (1 - level) / 2
    return {
        name: {
            "mean": float(point[name]),
            "ci": [float(np.quantile([r[name] for r in reps], q)) for q in (alpha, 1 - alpha)],
        }
        for name in point
    }


def curves(y: np.ndarray, score: np.ndarray) -> dict:
    """ROC and precision-recall curves and AUPRC for one finding (None when one class is absent)."""
    if y.min() == y.max():
        return {"fpr": None, "tpr": None, "precision": None, "recall": None, "auprc": None, "auroc": None}
    fpr, tpr, _ = roc_curve(y, score)
    precision, recall, _ = precision_recall_curve(y, score)
    return {
        "fpr": fpr,
        "tpr": tpr,
        "precision": precision,
        "recall": recall,
        "auprc": float(average_precision_score(y, score)),
        "auroc": float(roc_auc_score(y, score)),
    }


AGE_BANDS = [(0, 20, "<20"), (20, 40, "20-39"), (40, 60, "40-59"), (60, 80, "60-79"), (80, 200, "80+")]


def age_band(age: np.ndarray) -> np.ndarray:
    out = np.full(len(age), "unknown", dtype=object)
    for lo, hi, name in AGE_BANDS:
        out[(age >= lo) & (age < hi)] = name
    return out


def bootstrap_reps(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_boot, k) AUROC replicates, one column per finding, under the given patient weights."""
    reps = np.empty((len(weights), y.shape[1]))
    for j in range(y.shape[1]):
        keep = _labelled_rows(y[:, j])
        sorted_scores = _SortedScores(y[keep, j], score[keep, j])
        for lo in range(0, len(weights), 100):  # chunks keep memory at 100 x n
            reps[lo : lo + 100, j] = sorted_scores.auroc(weights[lo : lo + 100][:, keep])
    return reps


def _diff_summary(point: float, reps: np.ndarray, level: float) -> dict:
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(point) or not len(reps):
        return {"diff": float("nan"), "ci": [float("nan")] * 2, "p": float("nan")}
    alpha = (1 - level) / 2
    # Two-sided percentile-bootstrap p-value: how often the resampled difference falls on the other
    # side of 0, doubled; never below 1/replicates.
    p = 2 * min(np.mean(reps <= 0), np.mean(reps >= 0))
    return {
        "diff": float(point),
        "ci": [float(np.quantile(reps, alpha)), float(np.quantile(reps, 1 - alpha))],
        "p": float(min(1.0, max(p, 1.0 / len(reps)))),
    }


def paired_bootstrap(
    y: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    patients: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict:
    """AUROC(a) - AUROC(b) per column and for the mean over columns, with the same patient resample
    applied to both models in each replicate (a paired bootstrap): {"per_column": [..], "mean": {..}},
    each {"diff", "ci", "p"}."""
    weights = patient_bootstrap_weights(patients, n_boot, seed)
    return _difference((y, score_a, weights), (y, score_b, weights), level)


def independent_bootstrap(
    a: tuple[np.ndarray, np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> dict:
    """AUROC(a) - AUROC(b) as `paired_bootstrap` gives it, where `a` and `b` are (labels, scores,
    patients) of two different sets of patients (the NIH test split and an external collection):
    each replicate resamples the patients of each set on its own."""
    (ya, sa, pa), (yb, sb, pb) = a, b
    wa, wb = patient_bootstrap_weights(pa, n_boot, seed), patient_bootstrap_weights(pb, n_boot, seed + 1)
    return _difference((ya, sa, wa), (yb, sb, wb), level)


def _difference(a: tuple, b: tuple, level: float) -> dict:
    """Per column and mean-over-columns AUROC(a) - AUROC(b), each side (labels, scores, replicate weights)."""
    (ya, sa, wa), (yb, sb, wb) = a, b
    reps_a, reps_b = bootstrap_reps(ya, sa, wa), bootstrap_reps(yb, sb, wb)
    point_a = np.array([weighted_auroc(ya[:, j], sa[:, j]) for j in range(ya.shape[1])])
    point_b = np.array([weighted_auroc(yb[:, j], sb[:, j]) for j in range(yb.shape[1])])
    per_column = [
        _diff_summary(point_a[j] - point_b[j], reps_a[:, j] - reps_b[:, j], level) for j in range(ya.shape[1])
    ]
    valid = np.isfinite(point_a) & np.isfinite(point_b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without positives is NaN, and skipped
        mean_reps = np.nanmean(reps_a[:, valid] - reps_b[:, valid], axis=1) if valid.any() else np.array([])
    mean = _diff_summary(
        float(np.mean(point_a[valid] - point_b[valid])) if valid.any() else float("nan"), mean_reps, level
    )
    return {"per_column": per_column, "mean": mean}


def delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict:
    """DeLong's test for two correlated AUROCs on the same images (DeLong et al. 1988, in the fast
    form of Sun & Xu 2014): {"diff", "z", "p"}; NaN when a class is missing."""
    from scipy.stats import norm, rankdata

    keep = _labelled_rows(y)
    y, score_a, score_b = np.asarray(y)[keep].astype(bool), np.asarray(score_a)[keep], np.asarray(score_b)[keep]
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return {"diff": float("nan"), "z": float("nan"), "p": float("nan")}
    v10, v01, auc = [], [], []
    for s in (np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)):
        pos, neg = s[y], s[~y]
        tz, tx, ty = rankdata(np.r_[pos, neg]), rankdata(pos), rankdata(neg)  # midranks
        auc.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)  # structural components of the positives
        v01.append(1.0 - (tz[m:] - ty) / m)  # and of the negatives
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = auc[0] - auc[1]
    if var <= 0:
        return {"diff": float(diff), "z": float("nan"), "p": 1.0 if diff == 0 else float("nan")}
    z = diff / np.sqrt(var)
    return {"diff": float(diff), "z": float(z), "p": float(2 * norm.sf(abs(z)))}


def holm(pvalues) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaNs stay NaN, and do not count)."""
    p = np.asarray(pvalues, np.float64)
    out = np.full(len(p), np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out.tolist()
