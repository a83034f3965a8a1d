"""The evaluation's bootstrap as it was before #29 vectorised it: the calibration CIs one replicate at
a time in Python, and the AUROC replicates (every AUROC CI, the subgroups' included) through a sort
with tie groups per chunk of replicates. Kept as the yardstick: tests/test_metrics.py checks the
vectorised figures against these, and bench/bench_evaluate.py times both side by side."""

from __future__ import annotations

import numpy as np

from cxr14.metrics import _binned_error, _labelled_rows, bin_edges, patient_bootstrap_weights


def bootstrap_calibration_loop(
    y: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int, seed: int, bins: int = 10, level: float = 0.95
) -> dict:
    """Mean over findings of ECE (equal-width and adaptive bins) and Brier score, each with a
    percentile CI from a bootstrap that resamples patients (the bins stay those of the sample),
    rescaled to the delete-one-patient jackknife's spread, one replicate at a time."""
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
    left_out = [means((patients != one).astype(np.float64)) for one in np.unique(patients)]  # the jackknife
    alpha = (1 - level) / 2

    def rescaled(name):
        """The percentile interval rescaled about the point to the jackknife's spread."""
        values, jack = np.array([r[name] for r in reps]), np.array([r[name] for r in left_out])
        spread = np.sqrt((len(jack) - 1) / len(jack) * ((jack - point[name]) ** 2).sum())
        scale = spread / values.std(ddof=1)
        return [float(point[name] + (np.quantile(values, q) - point[name]) * scale) for q in (alpha, 1 - alpha)]

    return {
        name: {
            "mean": float(point[name]),
            "ci": rescaled(name),
        }
        for name in point
    }


class SortedScoresLoop:
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
