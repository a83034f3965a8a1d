"""The numbers of the evaluation report, on plain numpy arrays (scikit-learn where it has them).

A label below 0 means "not labelled" (an external collection that does not say): the AUROC, bootstrap
and calibration functions leave such an image out of that finding's figures. NIH labels are all 0/1.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import sparse
from scipy.special import expit, logit
from scipy.stats import t as student_t
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


def expected_auroc(p: np.ndarray) -> float:
    """A label-free estimate of the AUROC of calibrated probabilities `p` on their own images: each pair
    of images (i, j) ranked i above j counts as a correct ranking with the chance p_i (1 - p_j) that i is
    positive and j negative, over the total of those chances (the ratio of the expectations of the
    AUROC's numerator and denominator, were every label drawn as its probability says; self-pairs left
    out). Valid only while the probabilities are calibrated on these images: a site whose calibration
    does not transfer gets a wrong estimate, which is why reports show it beside a measured AUROC.

    One pass of `weighted_auroc` over every image counted twice, as a positive of weight p and a
    negative of weight 1 - p; self-pairs (ties, one half each) are then taken out exactly."""
    p = np.asarray(p, np.float64)
    pairs = p.sum() * (1 - p).sum()  # every (positive, negative) weight pair, self-pairs included
    self_pairs = float((p * (1 - p)).sum())
    if len(p) < 2 or pairs - self_pairs <= 0:
        return float("nan")
    both = weighted_auroc(np.r_[np.ones(len(p)), np.zeros(len(p))], np.r_[p, p], np.r_[p, 1 - p])
    return float((both * pairs - 0.5 * self_pairs) / (pairs - self_pairs))


def labelled(y: np.ndarray) -> np.ndarray:
    """The images a label column says something about (0 or 1; below 0 is not labelled)."""
    return np.asarray(y) >= 0


def _labelled_rows(y: np.ndarray):
    """`labelled(y)` as an index: every row, without a copy, when all are labelled (NIH's always are),
    so the bootstrap's hot loop copies nothing for them."""
    keep = labelled(y)
    return slice(None) if keep.all() else keep


class _SortedScores:
    """One finding's scores arranged once, so many weightings (bootstrap replicates) cost one pass
    each over its negatives.

    A positive image beats the negatives scored below it and ties those scored the same (a half
    each). With the negatives sorted by score, those are the first `below` of them, and the tied ones
    lie between `below` and `at_or_below`; so under a weighting, the weight a positive beats is the
    mean of the negatives' cumulative weight at those two places. Bootstrap weights are whole
    numbers, so every sum is exact and the AUROC is the same, to the last bit, in any order."""

    def __init__(self, y, score):
        score = np.asarray(score, np.float64)
        positive = np.asarray(y).astype(bool)
        self.negatives = np.flatnonzero(~positive)[np.argsort(score[~positive], kind="mergesort")]
        self.positives = np.flatnonzero(positive)
        sorted_negatives = score[self.negatives]
        self.below = np.searchsorted(sorted_negatives, score[self.positives], side="left")
        self.at_or_below = np.searchsorted(sorted_negatives, score[self.positives], side="right")

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        """AUROC for each row of `weights` (m, n); NaN without both classes' weight."""
        m = len(weights)
        cumulative = np.zeros((m, len(self.negatives) + 1))
        np.cumsum(weights[:, self.negatives], axis=1, out=cumulative[:, 1:])
        positive_w = weights[:, self.positives]
        beaten = cumulative[:, self.below] + cumulative[:, self.at_or_below]
        total_pos, total_neg = positive_w.sum(axis=1), cumulative[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = 0.5 * np.einsum("ij,ij->i", positive_w, beaten) / (total_pos * total_neg)
        return np.where((total_pos > 0) & (total_neg > 0), out, np.nan)


_last_weights: list = []  # the last (patients, n_boot, seed) and its weights: one report asks for them often


def patient_bootstrap_weights(patients: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_images) weights: draw patients with replacement; an image weighs its patient's draws.
    Read-only, and the same array again for the same patients, n_boot and seed (the report's AUROC,
    calibration, operating-point and subgroup CIs all resample the same way: at full scale each
    drawing is 200 MB and a second's work)."""
    patients = np.asarray(patients)
    if _last_weights:
        (known, known_boot, known_seed), weights = _last_weights
        if (known_boot, known_seed) == (n_boot, seed) and np.array_equal(known, patients):
            return weights
    _, inverse = np.unique(patients, return_inverse=True)
    n_patients = inverse.max() + 1
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot)
    weights = draws[:, inverse].astype(np.float64)
    weights.flags.writeable = False
    _last_weights[:] = [(patients.copy(), n_boot, seed), weights]
    return weights


MIN_CI_PATIENTS = 10  # patients a finding's positives (and its negatives) must span for its AUROC CI


def bootstrap_auroc(
    y: np.ndarray, score: np.ndarray, patients: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> dict:
    """Point AUROC per column, with CIs from a bootstrap that resamples patients.

    y, score: (n, k). Returns {"auroc": [k], "ci": [[lo, hi]] * k, "mean_auroc", "mean_ci"}. A
    finding's CI is `logit_interval` of its replicates; it is NaN (not estimable) where fewer than
    `MIN_CI_PATIENTS` patients have a positive or a negative: with a handful of patients carrying
    the positives no interval covers as it says (the percentile one covered Hernia's population AUROC
    0.66 of the time in simulation, docs/statistics.md). The mean's CI comes from the same replicates
    (the mean over findings of each replicate), as `jackknife_scaled_interval` (0.94 in the same
    simulation, the plain percentile interval 0.92).
    """
    y, score = np.atleast_2d(y.T).T, np.atleast_2d(score.T).T
    k = y.shape[1]
    point = np.array([weighted_auroc(y[:, j], score[:, j]) for j in range(k)])
    reps = bootstrap_reps(y, score, patient_bootstrap_weights(patients, n_boot, seed))
    patients = np.asarray(patients)
    estimable = _enough_patients(y, patients)
    ci = [
        logit_interval(point[j], reps[:, j], np.unique(patients[y[:, j] == 1]).size, level)
        if estimable[j]
        else [float("nan")] * 2
        for j in range(k)
    ]
    valid = np.isfinite(point)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without positives is NaN, and skipped
        mean_reps = np.nanmean(reps[:, valid], axis=1) if valid.any() else np.full(n_boot, np.nan)
    mean = float(np.mean(point[valid])) if valid.any() else float("nan")
    code = np.unique(patients, return_inverse=True)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a finding whose one patient with a positive is left out
        left_out = np.nanmean(leave_one_patient_out_auroc(y, score, code)[:, valid], axis=1) if valid.any() else []
    return {
        "auroc": point.tolist(),
        "ci": ci,
        "mean_auroc": mean,
        "mean_ci": jackknife_scaled_interval(mean, mean_reps, left_out, level),
    }


def jackknife_scaled_interval(point: float, reps: np.ndarray, left_out: np.ndarray, level: float = 0.95) -> list[float]:
    """The percentile interval of bootstrap replicates `reps`, rescaled about `point` to the spread of
    the delete-one-patient jackknife (`left_out`: the figure with each patient left out in turn): the
    bootstrap keeps the interval's shape, the jackknife sets its width. On NIH-shaped patients (one has
    184 images) the patient bootstrap's spread is too small, 0.87 of the true spread for the ECE and
    0.91 for the mean AUROC, the jackknife's 0.98 and 1.04 (docs/statistics.md). NaNs without two
    finite replicates; unscaled without a jackknife spread."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(point) or len(reps) < 2:
        return [float("nan")] * 2
    left_out = np.asarray(left_out, np.float64)
    left_out = left_out[np.isfinite(left_out)]
    spread = np.sqrt((len(left_out) - 1) / len(left_out) * np.sum((left_out - point) ** 2)) if len(left_out) > 1 else 0
    own = np.std(reps, ddof=1)
    scale = spread / own if own > 0 and spread > 0 else 1.0
    ends = point + (np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]) - point) * scale
    return [float(v) for v in ends]


def leave_one_patient_out_auroc(y: np.ndarray, score: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """(patients, k) AUROC of each column with each patient's images left out in turn (the delete-one-
    patient jackknife), in closed form: a patient's images take out the pairs they are in, those of
    its positives (the negatives each beats), of its negatives (the positives beating each), less its
    own positive-negative pairs, counted twice. NaN where a class would be left empty. `patient`: codes
    0..P-1 (`np.unique(..., return_inverse=True)`)."""
    patients = int(patient.max()) + 1
    out = np.full((patients, y.shape[1]), np.nan)
    for j in range(y.shape[1]):
        keep = labelled(y[:, j])
        positive, s, code = y[keep, j] == 1, np.asarray(score[keep, j], np.float64), patient[keep]
        m, n = int(positive.sum()), int((~positive).sum())
        if not (m and n):
            continue
        rank = np.unique(s, return_inverse=True)[1]  # ties share a rank
        pos_rank, neg_rank = np.sort(rank[positive]), np.sort(rank[~positive])
        beaten = _below_and_half_ties(neg_rank, rank[positive])  # negatives each positive beats
        beating = m - _below_and_half_ties(pos_rank, rank[~positive])  # positives beating each negative
        # A patient's own pairs: its negatives' (patient, rank) keys, sorted, searched by its positives'.
        width = int(rank.max()) + 2
        own_neg = np.sort(code[~positive] * width + rank[~positive])
        key = code[positive] * width + rank[positive]
        below = np.searchsorted(own_neg, key, "left") - np.searchsorted(own_neg, code[positive] * width, "left")
        tied = np.searchsorted(own_neg, key, "right") - np.searchsorted(own_neg, key, "left")
        own = np.bincount(code[positive], below + 0.5 * tied, patients)
        taken = np.bincount(code[positive], beaten, patients) + np.bincount(code[~positive], beating, patients) - own
        m_p, n_p = np.bincount(code[positive], minlength=patients), np.bincount(code[~positive], minlength=patients)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where((m_p < m) & (n_p < n), (beaten.sum() - taken) / ((m - m_p) * (n - n_p)), np.nan)
    return out


def _below_and_half_ties(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per value: how many of `sorted_values` lie below it, plus half of those equal to it."""
    left, right = np.searchsorted(sorted_values, values, "left"), np.searchsorted(sorted_values, values, "right")
    return left + 0.5 * (right - left)


def _enough_patients(y: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Per column of labels `y`, whether its positives and its negatives each span at least
    `MIN_CI_PATIENTS` patients (`patient`: one code per row)."""
    return np.array(
        [
            min(np.unique(patient[labelled(y[:, j]) & (y[:, j] == c)]).size for c in (0, 1)) >= MIN_CI_PATIENTS
            for j in range(y.shape[1])
        ]
    )


def logit_interval(point: float, reps: np.ndarray, clusters: int, level: float = 0.95) -> list[float]:
    """A CI of an AUROC (or a mean of AUROCs) from its patient-bootstrap replicates: normal on the logit
    scale, point +- t * SD of the replicates' logits, with `clusters` - 1 degrees of freedom (the
    patients that carry the variance: for one finding, those with a positive), mapped back.

    Why not the replicates' percentiles: an AUROC near 1 is skewed, and the percentile interval of a
    patient bootstrap is too narrow and off-centre there (it covered 0.926 of population AUROCs where
    20 or more patients carry a finding's positives, 0.910 over all findings); this one covers 0.94-0.95
    in the same simulation and stays inside (0, 1). Values are held 1e-6 from the ends (a replicate of
    AUROC 1 has no finite logit). NaNs without two finite replicates."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(point) or len(reps) < 2 or clusters < 2:
        return [float("nan")] * 2
    end = 1e-6
    spread = float(np.std(logit(np.clip(reps, end, 1 - end)), ddof=1))
    half = student_t.ppf(0.5 + level / 2, clusters - 1) * spread
    centre = logit(np.clip(point, end, 1 - end))
    # An AUROC of exactly 0 or 1 lies past its held logit: the interval reaches it.
    return [float(min(point, expit(centre - half))), float(max(point, expit(centre + half)))]


OPERATING_RULES = ("max_f1", "youden", "sensitivity", "specificity")  # how an operating point is chosen


def thresholds(
    y: np.ndarray,
    score: np.ndarray,
    sensitivity: float = 0.9,
    specificity: float = 0.9,
    confidence: float | None = None,
) -> dict:
    """Operating points on one finding, each a threshold (positive: score >= threshold) or None: maximum
    F1, maximum Youden's J, the highest threshold whose sensitivity reaches `sensitivity`, and the
    lowest whose specificity reaches `specificity` (just above the top score when only calling nothing
    positive does). Every rule is None without both classes (`no_point_reason` says why).

    Targets are met in counts (at least ceil(target x positives) true positives), never by comparing
    float rates, where 1 - 0.9 < 0.1 would reject a specificity of exactly 0.9. With `confidence`
    (e.g. 0.95) a target is met only where the one-sided Clopper-Pearson lower bound of the val rate
    reaches it; None where no threshold does (a handful of positives cannot show 90 %)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, np.float64)
    if no_point_reason(y) is not None:
        return dict.fromkeys(OPERATING_RULES)
    cut, tp, fp = _counts(y, score)  # calling score >= cut[i] positive gives tp[i], fp[i]
    positives, negatives = int(y.sum()), int((~y).sum())
    tn = negatives - fp
    f1 = 2 * tp / (2 * tp + fp + (positives - tp))
    youden = tp / positives - fp / negatives
    sensitive = np.flatnonzero(_meets(tp, positives, sensitivity, confidence))
    specific = np.flatnonzero(_meets(tn, negatives, specificity, confidence))
    return {
        "max_f1": float(cut[int(np.argmax(f1))]),
        "youden": float(cut[1 + int(np.argmax(youden[1:]))]),  # (calling nothing is no point)
        "sensitivity": float(cut[sensitive.min()]) if len(sensitive) else None,
        "specificity": float(cut[specific.max()]) if len(specific) else None,
    }


def no_point_reason(y: np.ndarray) -> str | None:
    """Why a finding gets no operating point from these labels (None: it gets them)."""
    positives, negatives = int(np.sum(y)), int(len(y) - np.sum(y))
    if positives and negatives:
        return None
    if not positives and not negatives:
        return "no val image is labelled for it"
    return f"{positives} val positives and {negatives} negatives: no threshold can be chosen without both"


def _counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct threshold, from a point above the top score (nothing called) down to the lowest
    score (everything called), with the true and false positives (whole counts) calling score >= it."""
    order = np.argsort(-score, kind="mergesort")
    s, hit = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last image of each tied score
    tp, fp = np.cumsum(hit)[last], np.cumsum(~hit)[last]
    above = np.nextafter(max(1.0, float(s[0])), np.inf)
    return np.r_[above, s[last]], np.r_[0, tp], np.r_[0, fp]


def _meets(hits: np.ndarray, total: int, target: float, confidence: float | None) -> np.ndarray:
    """Whether `hits` of `total` reach the rate `target`: in whole counts, or (with `confidence`) by
    the one-sided Clopper-Pearson lower bound of the rate."""
    if confidence is None:
        return hits >= np.ceil(target * total - 1e-9 * total)
    from scipy.stats import beta

    lower = np.where(hits > 0, beta.ppf(1 - confidence, np.maximum(hits, 1), total - hits + 1), 0.0)
    return lower >= target


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> dict:
    """Confusion counts and the usual rates when `score >= threshold` is called positive; with
    patient-bootstrap `weights` (n_boot, n), each rate's 95% CI as `<rate>_ci` (`clustered_wilson`,
    by the patients the weights resample)."""
    pred = score >= threshold
    y = y.astype(bool)
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    out = {
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
    if weights is not None:
        patient = patients_of(weights)
        for name, (trials, hits) in {"precision": (pred, y), "sensitivity": (y, pred),
                                     "specificity": (~y, ~pred), "npv": (~pred, ~y)}.items():  # fmt: skip
            out[f"{name}_ci"] = clustered_wilson(hits[trials], patient[trials], level=0.95)
    return out


def patients_of(weights: np.ndarray) -> np.ndarray:
    """Patient codes recovered from patient-bootstrap `weights` (n_boot, n): the images of one patient
    share their column (its draws), two patients' columns differ in some replicate (over 64 replicates
    two patients draw alike with a chance of about 1e-33). Lets a function that is handed the weights
    alone (`at_threshold`) cluster by patient; patients merged by chance would only widen a CI."""
    head = np.asarray(weights[:64], np.int64)
    key = np.random.default_rng(0).integers(1, 2**31, size=len(head)) @ head  # exact integer sums
    return np.unique(key, return_inverse=True)[1]


def jackknife_variance(hits: np.ndarray, patient: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The delete-one-patient jackknife variance of the share of `hits` among images clustered by
    `patient`: (C - 1) / C times the sum over the C patients of the squared change of the share when
    that patient is left out; with each patient's hits and images (NaN variance without two patients)."""
    hits = np.asarray(hits, np.float64)
    _, cluster = np.unique(patient, return_inverse=True)
    m = np.bincount(cluster).astype(np.float64)
    a = np.bincount(cluster, weights=hits, minlength=len(m))
    if len(m) < 2:
        return float("nan"), a, m
    n, rate = m.sum(), a.sum() / m.sum()
    return (len(m) - 1) / len(m) * float((((a - rate * m) / (n - m)) ** 2).sum()), a, m


def clustered_wilson(hits: np.ndarray, patient: np.ndarray, level: float = 0.95) -> list[float]:
    """A CI of a proportion of images (`hits` of them, boolean) clustered by `patient` (codes): Wilson's
    score interval at the effective sample size n p (1 - p) / v, v the delete-one-patient jackknife
    variance of the proportion, with a t quantile of (patients with the rarer outcome - 1) degrees of
    freedom, since only those patients inform v. Where every image agrees (v = 0), the effective
    size is Kish's (sum m)^2 / sum m^2 of the patients' image counts m (as if each patient's images
    all agreed), with the normal quantile. NaNs without two patients.

    Why not the patient bootstrap's percentile interval: at the operating points a rate near 0 or 1
    rests on a few patients, and that interval covered the population sensitivity 0.874 and
    specificity 0.893 of the time in simulation (docs/statistics.md); this one 0.96 and 0.94."""
    hits = np.asarray(hits, bool)
    jackknife, a, m = jackknife_variance(hits, patient)
    if len(m) < 2:
        return [float("nan")] * 2
    n, rate = m.sum(), hits.mean()
    effective = min(n, rate * (1 - rate) / jackknife) if jackknife > 0 else n**2 / float((m**2).sum())
    rarer = min(int((a > 0).sum()), int((a < m).sum()))
    df = min(len(m) - 1, max(rarer - 1, 1)) if rarer else np.inf  # none: Kish's size is the whole story
    q = float(student_t.ppf(0.5 + level / 2, df))
    centre = (rate + q**2 / (2 * effective)) / (1 + q**2 / effective)
    half = q * np.sqrt(rate * (1 - rate) / effective + q**2 / (4 * effective**2)) / (1 + q**2 / effective)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def at_points(y: np.ndarray, score: np.ndarray, points: dict, finding: str, weights: np.ndarray | None) -> dict:
    """`at_threshold` at each rule's operating point of `finding` (`points`: a thresholds.json,
    {rule: {finding: threshold}}); None for every rule where no image is labelled or no point was
    chosen (a finding without val positives)."""
    if not len(y):
        return dict.fromkeys(OPERATING_RULES)
    chosen = {rule: points[rule].get(finding) for rule in OPERATING_RULES}
    return {rule: None if t is None else at_threshold(y, score, t, weights) for rule, t in chosen.items()}


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
    percentile CI from a bootstrap that resamples patients (the bins stay those of the sample).

    Every replicate's figures are weighted sums over images, so all of them come from one matrix
    product of the replicate weights (n_boot, n) with a per-image design (n, findings x terms): per
    finding and bin, the image's score minus its label where it falls in that bin (each bin's gap),
    its squared error (Brier) and whether it is labelled (the denominator).

    The CI is `jackknife_scaled_interval`, the jackknife from the same design (each patient's sums taken
    out in turn): the plain percentile interval covered the ECE 0.91 of the time in simulation, this one
    0.935 (docs/statistics.md)."""
    k = y.shape[1]
    y, score = np.asarray(y), np.asarray(score, np.float64)
    schemes = (("ece", False), ("ece_adaptive", True))
    width = len(schemes) * bins + 2  # per finding: each scheme's bins, the squared error, the labelled count
    design = np.zeros((len(y), k * width))
    for j in range(k):
        known = labelled(y[:, j])
        s, err = score[known, j], score[known, j] - y[known, j]
        base = j * width
        for m, (_, adaptive) in enumerate(schemes):
            idx = np.searchsorted(bin_edges(s, bins, adaptive), s, side="right")
            design[np.flatnonzero(known), base + m * bins + idx] = err
        design[known, base + len(schemes) * bins] = err**2
        design[known, base + len(schemes) * bins + 1] = 1.0

    def figures(sums: np.ndarray) -> dict[str, np.ndarray]:
        """Each figure's mean over findings, from (m, k * width) weighted sums of the design's columns."""
        sums = sums.reshape(len(sums), k, width)
        total = sums[:, :, -1]
        out = {
            name: (np.abs(sums[:, :, m * bins : (m + 1) * bins]).sum(axis=2) / total).mean(axis=1)
            for m, (name, _) in enumerate(schemes)
        }
        out["brier"] = (sums[:, :, -2] / total).mean(axis=1)
        return out

    total = design.sum(axis=0, keepdims=True)
    point = figures(total)
    weights = patient_bootstrap_weights(patients, n_boot, seed)
    reps = figures(np.concatenate([w @ design for w in np.array_split(weights, max(1, n_boot // 100))]))
    _, patient = np.unique(patients, return_inverse=True)
    by_patient = sparse.csr_matrix((np.ones(len(patient)), (patient, np.arange(len(patient))))) @ design
    left_out = figures(total - by_patient)  # each patient left out in turn: the jackknife
    return {
        name: {
            "mean": float(point[name][0]),
            "ci": jackknife_scaled_interval(point[name][0], reps[name], left_out[name], level),
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


def percentile_interval(reps: np.ndarray, level: float = 0.95) -> list[float]:
    """The equal-tailed percentile interval of bootstrap replicates (NaN ones skipped) as order
    statistics: [r_(j), r_(B+1-j)] of the B sorted replicates, j = ceil((1 - level) / 2 * (B + 1)) - 1,
    the interval `bootstrap_p` inverts, so that it excludes 0 exactly when that p is below 1 - level.
    NaNs when no replicate is left, or too few to make such an interval (j < 1: B < 2 / (1 - level) - 1,
    39 at 95 %)."""
    reps = np.sort(np.asarray(reps, np.float64)[np.isfinite(reps)])
    j = int(np.ceil(round((1 - level) / 2 * (len(reps) + 1), 9))) - 1  # rounded: 1 - 0.95 is not 0.05
    if j < 1:
        return [float("nan")] * 2
    return [float(reps[j - 1]), float(reps[len(reps) - j])]


def bootstrap_p(reps: np.ndarray) -> tuple[float, float]:
    """(p, its floor) of the two-sided test of "no difference" by inverting the percentile interval of
    the same replicates: the smallest alpha whose `percentile_interval` at level 1 - alpha excludes 0,
    2 (c + 1) / (B + 1) with c the replicates on the smaller side of 0 (ties with 0 on both). Never
    below its floor 2 / (B + 1), the bootstrap's resolution: at the floor no replicate crossed 0 and
    the p is "at most" that. NaNs without replicates."""
    reps = np.asarray(reps, np.float64)
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return float("nan"), float("nan")
    crossing = min(int((reps <= 0).sum()), int((reps >= 0).sum()))
    floor = 2.0 / (len(reps) + 1)
    return float(min(1.0, (crossing + 1) * floor)), float(floor)


def _diff_summary(point: float, reps: np.ndarray, level: float, estimable: bool = True) -> dict:
    """A difference with its CI and p from one method, the same replicates: the percentile interval
    (`percentile_interval`) and the p that inverts it (`bootstrap_p`), so the CI excludes 0 exactly
    when p < 1 - level. `p_floor`: the smallest p the replicates can give (2 / (B + 1)); a p at its
    floor reads "p <= p_floor" (no replicate crossed 0), never a smaller number. Not `estimable`
    (too few patients carry the positives): no CI and no p, the difference alone."""
    p, floor = bootstrap_p(reps)
    if not (np.isfinite(point) and estimable):
        p = floor = float("nan")
    return {
        "diff": float(point),
        "ci": percentile_interval(reps, level) if np.isfinite(point) and estimable else [float("nan")] * 2,
        "p": p,
        "p_floor": floor,
        "replicates": int(np.isfinite(reps).sum()),
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
    each `_diff_summary`'s {"diff", "ci", "p", "p_floor", "replicates"}."""
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
    """Per column and mean-over-columns AUROC(a) - AUROC(b), each side (labels, scores, replicate weights).
    A column whose positives or negatives span fewer than `MIN_CI_PATIENTS` patients on either side
    has no CI and no p (`_diff_summary`): the percentile interval covered Hernia's true difference
    0.73 of the time in simulation with its 2-6 patients; 0.935 over the findings with 10 or more.
    The mean's replicates still take every finding."""
    (ya, sa, wa), (yb, sb, wb) = a, b
    reps_a, reps_b = bootstrap_reps(ya, sa, wa), bootstrap_reps(yb, sb, wb)
    point_a = np.array([weighted_auroc(ya[:, j], sa[:, j]) for j in range(ya.shape[1])])
    point_b = np.array([weighted_auroc(yb[:, j], sb[:, j]) for j in range(yb.shape[1])])
    estimable = _enough_patients(ya, patients_of(wa)) & _enough_patients(yb, patients_of(wb))
    per_column = [
        _diff_summary(point_a[j] - point_b[j], reps_a[:, j] - reps_b[:, j], level, estimable[j])
        for j in range(ya.shape[1])
    ]
    valid = np.isfinite(point_a) & np.isfinite(point_b)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without positives is NaN, and skipped
        mean_reps = np.nanmean(reps_a[:, valid] - reps_b[:, valid], axis=1) if valid.any() else np.array([])
    mean = _diff_summary(
        float(np.mean(point_a[valid] - point_b[valid])) if valid.any() else float("nan"), mean_reps, level
    )
    return {"per_column": per_column, "mean": mean}


def delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, patients: np.ndarray) -> dict:
    """DeLong's test for two correlated AUROCs on the same images, clustered by patient (Obuchowski
    1997): {"diff", "se", "z", "p"}; NaN when a class is missing or fewer than two patients hold it.

    The structural components (placement values, DeLong et al. 1988, in the rank form of Sun & Xu
    2014) of the difference are summed per patient before their variance is taken, so that the many
    images of one patient count as one draw, as the patient bootstrap counts them; with one image per
    patient it is DeLong's own test. Per image, 9 images a patient would make it far too sure."""
    from scipy.stats import norm, rankdata

    nan = dict.fromkeys(("diff", "se", "z", "p"), float("nan"))
    keep = _labelled_rows(y)
    y = np.asarray(y)[keep].astype(bool)
    _, cluster = np.unique(np.asarray(patients)[keep], return_inverse=True)
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        return nan
    v10, v01, auc = np.zeros(m), np.zeros(n), []  # the difference's structural components
    for sign, s in ((1.0, score_a), (-1.0, score_b)):
        s = np.asarray(s, np.float64)[keep]
        pos, neg = s[y], s[~y]
        tz, tx, ty = rankdata(np.r_[pos, neg]), rankdata(pos), rankdata(neg)  # midranks
        auc.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10 += sign * (tz[:m] - tx) / n  # each positive's share of negatives it outranks
        v01 += sign * (1.0 - (tz[m:] - ty) / m)  # each negative's share of positives that outrank it
    diff = auc[0] - auc[1]
    clusters = cluster.max() + 1
    # Per patient: its components' sum less what its positives (negatives) would give at the mean.
    e10 = np.bincount(cluster[y], v10, clusters) - np.bincount(cluster[y], minlength=clusters) * diff
    e01 = np.bincount(cluster[~y], v01, clusters) - np.bincount(cluster[~y], minlength=clusters) * diff
    with_pos, with_neg = np.unique(cluster[y]).size, np.unique(cluster[~y]).size
    if with_pos < 2 or with_neg < 2:
        return nan | {"diff": float(diff)}
    s10 = with_pos / (with_pos - 1) / m * (e10**2).sum()
    s01 = with_neg / (with_neg - 1) / n * (e01**2).sum()
    s11 = clusters / (clusters - 1) * (e10 * e01).sum()
    var = s10 / m + s01 / n + 2 * s11 / (m * n)
    if var <= 0:
        return nan | {"diff": float(diff), "se": 0.0, "p": 1.0 if diff == 0 else float("nan")}
    z = diff / np.sqrt(var)
    return {"diff": float(diff), "se": float(np.sqrt(var)), "z": float(z), "p": float(2 * norm.sf(abs(z)))}


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


def gatekept_holm(primary, secondary, alpha: float = 0.05) -> dict:
    """The leaderboard's verdicts in two families, a serial gatekeeping procedure: the primary family
    (one p per run: its mean AUROC against the reference) Holm-adjusted over the runs; each run's
    secondary family (its per-finding p's) Holm-adjusted over that run's findings alone, and tested
    only where the run's primary test rejected at `alpha` (the gate). Under the null of no run
    differing, nothing is rejected on the page more often than `alpha`; adding a run changes the
    other runs' primary adjustment only, never their findings' families.

    primary: (R,) p-values; secondary: (R, K). Returns arrays: "primary_holm" (R,), "primary_reject"
    (R,) bool, "gate_open" (R,) bool, "secondary_holm" (R, K), NaN behind a closed gate, and
    "secondary_reject" (R, K) bool; a test rejects where its adjusted p < alpha."""
    primary = np.asarray(primary, np.float64).reshape(-1)
    secondary = np.asarray(secondary, np.float64).reshape(len(primary), -1)
    primary_holm = np.asarray(holm(primary))
    gate_open = np.nan_to_num(primary_holm, nan=1.0) < alpha
    secondary_holm = np.full(secondary.shape, np.nan)
    for run in np.flatnonzero(gate_open):
        secondary_holm[run] = holm(secondary[run])
    return {
        "primary_holm": primary_holm,
        "primary_reject": gate_open.copy(),
        "gate_open": gate_open,
        "secondary_holm": secondary_holm,
        "secondary_reject": np.nan_to_num(secondary_holm, nan=1.0) < alpha,
    }
