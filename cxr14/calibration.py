"""Calibration fitted on a validation split: a monotone map per finding from the model's logits to
probabilities a reader can take at face value.

Every map takes logits (float64), never probabilities: a float32 sigmoid saturates (a raw 1.0 against
0.99999988), and a steep map would spread those last steps far apart, so two exports that agree on
the logits to 1e-6 would disagree on the probabilities. One run has one calibration per site: NIH's,
fitted on NIH val, and one for each split collection, fitted on that collection's val split.

A model trained with class-weighted cross-entropy ranks well but overstates rare findings: at its
optimum the weighted loss adds log(w_pos / w_neg) to the true logit. Temperature scaling (the default)
removes that known offset (from the run's class weights; 0 for an unweighted loss or an ensemble),
then fits a temperature and an intercept, (logit - offset) / T + b: on the data the run trained on, b
comes out near 0; at another site (another scanner, another prevalence) it takes the shift of the
finding's scores as a whole, which no temperature can. Platt scaling fits a * logit + b (a > 0) with
no offset taken out. Both are strictly increasing, so AUROC is unchanged; isotonic regression is
monotone but flattens ties.

A finding with too few validation positives (or negatives) for a map of its own still loses the part
of the miscalibration that needs no data, its class-weight offset, and gets the shared map: one
temperature for all such findings, fitted jointly with an intercept per finding (pooled without
intercepts, a site's shift of a finding as a whole would be taken for a temperature), each intercept
shrunk towards the transferred map's calibration in the large (NIH's map at another site; the
offset-free logits on NIH) by a Gaussian prior, with its posterior SD. An own fit that stops at an
optimiser bound is not kept either. A finding that no val image labels gets no map at all (`UNLABELLED`:
its probability is NaN there, and no decision is made on it). The JSON and the report name those
findings (`shared`, `at_bound`, `unlabelled`). Unlabelled val images (-1: a collection that does not
say) are left out of every fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import prediction_table
from .constants import FINDINGS
from .files import sha256_file
from .logistic import EPS as _EPS
from .logistic import logit, sigmoid

METHODS = ("temperature", "platt", "isotonic")


SHARED = "shared_temperature"  # the map of a finding with too few val positives for its own
UNLABELLED = "unlabelled"  # no map: nobody in val labels the finding there


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit(y, z, method: str, min_positives: int, offset: float = 0.0) -> dict:
    """The fitted map of one finding from val labels `y` and logits `z`; {"method": "none", "reason"}
    when either class has fewer than `min_positives` images. `offset`: the logit shift the training
    loss's class weights put in (temperature scaling takes it out first)."""
    from scipy.optimize import minimize

    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < min_positives:
        return {
            "method": "none",
            "positives": positives,
            "negatives": negatives,
            "reason": f"{positives} val positives and {negatives} negatives; at least {min_positives} of each "
            "are needed to fit, so the model's scores are kept as they are",
        }
    out = {"positives": positives, "negatives": negatives, "val_log_loss_before": _log_loss(y, sigmoid(z))}
    target = _targets(y)
    if method == "temperature":
        (log_t, intercept), bounds = _temperature_and_intercept(target, z - offset)
        out.update(method="temperature", offset=float(offset), temperature=float(np.exp(log_t)), intercept=intercept)
        stopped = _at_bound([log_t, intercept], bounds, ("log temperature", "intercept"))
    elif method == "platt":

        def objective(ab):
            loss, d = _cross_entropy(target, ab[0] * z + ab[1])
            return loss, np.array([(d * z).sum(), d.sum()])

        bounds = [(1e-6, BOUND), (-BOUND, BOUND)]
        options = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000}
        best = minimize(objective, x0=[1.0, 0.0], jac=True, method="L-BFGS-B", bounds=bounds, options=options)
        out.update(method="platt", a=float(best.x[0]), b=float(best.x[1]))
        stopped = _at_bound(best.x, bounds, ("a", "b"))
    elif method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        # Clipped to [1/(n+1), n/(n+1)]: a step of 0 or 1 would be a logit of -+34.5 (at 1e-15), which
        # would outvote every other member of an ensemble that averages calibrated logits.
        edge = 1.0 / (len(y) + 1)
        iso = IsotonicRegression(y_min=edge, y_max=1 - edge, out_of_bounds="clip").fit(z, y)
        out.update(method="isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
        stopped = False
    else:
        raise ValueError(f"calibration method must be one of {METHODS}, not {method!r}")
    if stopped:  # a map at the optimiser's edge is not the data's: the shared map takes the finding
        return {
            "method": "none",
            "positives": positives,
            "negatives": negatives,
            "at_bound": True,
            "why": f"its own {method} fit stopped at the optimiser's bound ({stopped})",
        }
    out["val_log_loss_after"] = _log_loss(y, apply_one(out, z))
    return out


def _targets(y: np.ndarray) -> np.ndarray:
    """Platt's targets, (N+ + 1) / (N+ + 2) and 1 / (N- + 2) rather than 1 and 0: a val split the model
    separates perfectly would otherwise drive the fit to an infinitely sharp map (T -> 0), which
    saturates at 1.0 and ties scores the model had ranked apart."""
    positives, negatives = y.sum(), len(y) - y.sum()
    return np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def _cross_entropy(target: np.ndarray, eta: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log-loss of logits `eta` against `target`, and its derivative in each eta, computed on the
    logits (no clipped probabilities: a clipped loss is flat where the sigmoid saturates, so the
    optimiser would stop where it started, at logits 40 away from the truth, and call that a fit)."""
    n = len(eta)
    return float((np.logaddexp(0, eta) - target * eta).sum() / n), (sigmoid(eta) - target) / n


def _temperature_and_intercept(target: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, list]:
    """The log T and b of sigmoid(z / T + b) with the least log-loss against `target`, fitted together,
    and the optimiser's bounds."""
    from scipy.optimize import minimize

    def objective(tb):
        scaled = z * np.exp(-tb[0])
        loss, d = _cross_entropy(target, scaled + tb[1])
        return loss, np.array([-(d * scaled).sum(), d.sum()])

    bounds = [(-LOG_T_BOUND, LOG_T_BOUND), (-BOUND, BOUND)]
    options = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000}  # a narrow spread of logits is a flat valley
    # Started at T = 1 and the intercept that gets the calibration in the large about right, so logits
    # far from the truth (a site's scanner) do not cost the optimiser a long walk from b = 0.
    start = np.clip(logit(np.mean(target)) - np.median(z), -BOUND, BOUND)
    best = minimize(objective, x0=[0.0, start], jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    return best.x, bounds


def _at_bound(values, bounds, names) -> str:
    """The parameters that sit on their optimiser bound, named with their values ("" for none)."""
    hit = [f"{name} {v:+.3f}" for name, v, edges in zip(names, values, bounds) if np.isclose(edges, v).any()]
    return ", ".join(hit)


PRIOR_SD = 0.5  # logit: how far a site's calibration in the large may sit from the transferred map's, a priori
LOG_TEMPERATURE_SD = 2.0  # a weak prior on log T, so that a separable pool still gives a finite temperature
# The own-map optimiser's bounds: wide, so that the optimum of a well-posed fit (Platt's targets keep
# even a separable val split finite) lies inside them; a fit that still stops at one is not kept.
BOUND = 1000.0  # |intercept|, and Platt's largest slope
LOG_T_BOUND = 12.0  # |log temperature|


def _joint(ys, zs, references, shrunk, prior_sd: float) -> tuple[float, np.ndarray, np.ndarray]:
    """One temperature T and one intercept per finding, fitted together by penalised maximum
    likelihood (a MAP fit) on every finding's labels (Platt's targets): sigmoid(z_f / T + b_f), z_f its offset-free
    logits. Each `shrunk` b_f (a finding with few positives or negatives) has a Gaussian prior
    N(c_f(T), prior_sd^2), where c_f(T) is the intercept at which
    the map's mean probability on the finding's images is the reference map's r_f (the transferred
    map's calibration in the large): a finding with few positives keeps it unless its labels say
    otherwise. Fitted jointly, a site's shift of a finding as a whole goes to its intercept, not to T
    (pooled without intercepts, a -1.2 logit shift at a true T = 1 gives T far from 1).
    Returns (T, the intercepts, their prior centres at T)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit, logsumexp

    k = len(ys)
    y, z = np.concatenate([_targets(v) for v in ys]), np.concatenate(zs)  # (Platt's: a separable finding stays finite)
    which = np.repeat(np.arange(k), [len(v) for v in ys])
    groups = [np.flatnonzero(which == j) for j in range(k)]
    log_expected = np.array([logsumexp(log_expit(r)) for r in references])
    precision = np.where(shrunk, 1.0 / prior_sd**2, 0.0)  # the others' labels pin their intercepts

    def centres(scaled):
        """c_f with sum sigmoid(scaled + c_f) = the reference's expected positives (Newton on the log of
        the sums, in log space so that logits far out do not underflow), and dc_f/d(log T)."""
        c, slope = np.empty(k), np.empty(k)
        for j, rows in enumerate(groups):
            s = scaled[rows]
            c[j] = log_expected[j] - logsumexp(log_expit(s))
            for _ in range(100):
                log_p = log_expit(s + c[j])
                total = logsumexp(log_p)
                share = np.exp(log_p - total)  # each image's part of the expected positives
                step = (total - log_expected[j]) / max(float(share @ expit(-(s + c[j]))), 1e-300)
                c[j] -= step
                if abs(step) < 1e-12:
                    break
            log_w = log_expit(s + c[j]) + log_expit(-(s + c[j]))  # p (1 - p): implicit differentiation
            w = np.exp(log_w - logsumexp(log_w))
            slope[j] = -(w @ s)
        return c, slope

    def objective(theta):
        u, b = theta[0], theta[1:]
        scaled = z * np.exp(-u)
        eta = scaled + b[which]
        centre, slope = centres(scaled)
        gap = b - centre
        loss = np.logaddexp(0, eta).sum() - (y * eta).sum() + 0.5 * (precision * gap**2).sum()
        loss += 0.5 * u**2 / LOG_TEMPERATURE_SD**2
        residual = expit(eta) - y
        grad_b = np.bincount(which, weights=residual, minlength=k) + precision * gap
        grad_u = -(residual * scaled).sum() + (precision * gap * slope).sum() + u / LOG_TEMPERATURE_SD**2
        return loss, np.r_[grad_u, grad_b]

    # Started at T = 1, a shrunk intercept at its prior's centre, another where its labels' calibration
    # in the large is about right (logits far from the truth would otherwise be a long walk).
    own = np.array([logit(np.mean(y[rows])) - np.median(z[rows]) for rows in groups])
    start = np.r_[0.0, np.where(shrunk, centres(z)[0], own)]
    # Tight tolerances: a val split with a narrow spread of logits is a flat valley along log T.
    options = {"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000}
    best = minimize(objective, start, jac=True, method="L-BFGS-B", options=options)
    temperature = float(np.exp(best.x[0]))
    return temperature, best.x[1:], centres(z / temperature)[0]


def _reference_logits(transferred: dict | None, finding: str, z: np.ndarray, offset: float) -> np.ndarray:
    """What the map falls back to without labels: the transferred map's calibrated logits (NIH's, at a
    site), or the logits with the class-weight offset taken out (on the site a run was trained for)."""
    if transferred is not None and transferred["findings"][finding]["method"] not in (UNLABELLED, "none"):
        return apply_logit(transferred["findings"][finding], z)
    return z - offset


def shared(
    fitted: dict,
    val: pd.DataFrame,
    offsets: dict[str, float],
    min_positives: int,
    transferred: dict | None = None,
    prior_sd: float = PRIOR_SD,
) -> tuple[dict, float]:
    """`fitted` with each finding fitted "none" (too few val positives) given the shared map: its own
    class-weight offset removed, one temperature for all such findings and an intercept per finding,
    fitted jointly on their val images (`_joint`), the intercept shrunk towards the
    `transferred` map's calibration in the large (NIH's calibration at a site; the offset-free logits
    without one) with its posterior SD. A finding nobody in val labels gets no map (`UNLABELLED`):
    its probability there is unknown, and no decision is made on it. Returns (the maps, T)."""
    labels = {f: val[prediction_table.label(f)].to_numpy(np.float64) for f in FINDINGS}
    logits = prediction_table.logits(val)
    # A collection that does not say (-1) is not a negative. (`metrics.labelled` spelt out: importing
    # metrics here would make every step that reads a predictions table depend on its code.)
    known = {f: labels[f] >= 0 for f in FINDINGS}
    # The findings without a map of their own, fitted together: their temperature borrows strength
    # across them (a finding with a map of its own, which may be as sharp as a separable val split
    # makes it, does not set the others' temperature).
    labelled = [f for f in FINDINGS if known[f].any() and fitted[f]["method"] == "none"]
    column = {f: k for k, f in enumerate(FINDINGS)}
    ys = [labels[f][known[f]] for f in labelled]
    zs = [logits[known[f], column[f]] - offsets[f] for f in labelled]
    references = [_reference_logits(transferred, f, logits[known[f], column[f]], offsets[f]) for f in labelled]
    few = [min(int(y.sum()), int(len(y) - y.sum())) < min_positives for y in ys]
    owned = [f for f in FINDINGS if known[f].any() and fitted[f]["method"] != "none"]
    references_owned = {f: _reference_logits(transferred, f, logits[known[f], column[f]], offsets[f]) for f in owned}
    shifts = [_shift_in_the_large(labels[f][known[f]], references_owned[f]) for f in owned]
    prior_sd = _prior_sd(prior_sd, shifts)
    temperature, intercepts, centres = _joint(ys, zs, references, few, prior_sd) if labelled else (1.0, [], [])
    pooled = f"fitted jointly with one intercept per finding on the {len(labelled)} findings without a map of their own"
    towards = f"{transferred.get('site', 'nih')}'s map" if transferred else "the offset-free logits"
    out = dict(fitted)
    for f in FINDINGS:
        params = fitted[f]
        if not known[f].any():
            out[f] = {
                "method": UNLABELLED,
                "positives": 0,
                "negatives": 0,
                "reason": "no val image is labelled for it here, so it gets no map and no decision at this site",
            }
            continue
        if params["method"] != "none":
            continue
        j = labelled.index(f)
        z, centre, intercept = zs[j] / temperature, float(centres[j]), float(intercepts[j])
        p = sigmoid(z + intercept)
        prior = {"centre": centre, "sd": prior_sd, "towards": towards} if few[j] else None
        sd = float(1.0 / np.sqrt((p * (1 - p)).sum() + (1.0 / prior_sd**2 if few[j] else 0.0)))  # Laplace, given T
        shrinking = (
            f"shrunk towards {towards} ({centre:+.3f}, prior SD {prior_sd:g})" if few[j] else "from its own labels"
        )
        why = params.get("why", f"fewer than {min_positives} of each for a map of its own")
        out[f] = {
            "method": SHARED,
            "offset": float(offsets[f]),
            "temperature": temperature,
            "intercept": intercept,
            "intercept_sd": sd,
            "prior": prior,
            "positives": params["positives"],
            "negatives": params["negatives"],
            "at_bound": bool(params.get("at_bound", False)),
            "reason": f"{params['positives']} val positives and {params['negatives']} negatives; {why}, "
            f"so its class-weight offset ({offsets[f]:+.3f} in logit) is removed, the temperature shared across "
            f"findings ({temperature:.3f}, {pooled}) is applied, and its own "
            f"intercept ({intercept:+.3f} ± {sd:.3f}), {shrinking}",
        }
    return out, temperature, prior_sd


def _shift_in_the_large(y: np.ndarray, reference: np.ndarray) -> float:
    """How far, in logit, the reference map's calibration in the large is from a finding's val labels
    (Platt's targets): the b of sigmoid(reference + b) with the least log-loss."""
    from scipy.optimize import minimize_scalar

    target = _targets(y)
    return float(minimize_scalar(lambda b: _cross_entropy(target, reference + b)[0], bounds=(-BOUND, BOUND),
                                 method="bounded").x)  # fmt: skip


def _prior_sd(floor: float, shifts: list[float]) -> float:
    """The prior SD of a few-positive finding's intercept about the transferred map's: at least `floor`,
    and at least the root mean square of the shifts the site's well-labelled findings show (an
    empirical-Bayes spread). Where the transferred map holds for the findings the site can check, a
    finding with few positives keeps it; where the site moves every finding by logits (another scanner,
    another prevalence), the prior says so and a few positives are heard."""
    return float(max(floor, np.sqrt(np.mean(np.square(shifts))))) if shifts else float(floor)


def fit_table(
    rows: pd.DataFrame,
    method: str,
    min_positives: int,
    offsets: dict[str, float],
    transferred: dict | None = None,
    prior_sd: float = PRIOR_SD,
) -> dict:
    """The one fitter: every finding's map fitted on the labelled `rows` of a predictions table (a
    site's val split, or the part of a collection a local recalibration is fitted on); those with too
    few positives (or an own fit at the optimiser's bound) get the shared map, shrunk towards the
    `transferred` calibration (NIH's, at another site) with prior SD `prior_sd`; those nobody labels,
    none. No finding keeps its raw logits (and so its class-weight offset). {"method",
    "min_positives", "offsets", "shared": the findings on the shared map, "at_bound", "unlabelled",
    "shared_temperature", "prior_sd", "findings": {finding: its map}}."""
    logits = prediction_table.logits(rows)
    fitted = {}
    for k, f in enumerate(FINDINGS):
        y = rows[prediction_table.label(f)].to_numpy()
        known = y >= 0  # a collection's unlabelled images say nothing either way (`metrics.labelled`)
        fitted[f] = fit(y[known], logits[known, k], method, min_positives, offsets[f])
    fitted, temperature, used_sd = shared(fitted, rows, offsets, min_positives, transferred, prior_sd)
    return {
        "method": method,
        "min_positives": min_positives,
        "offsets": {f: float(offsets[f]) for f in FINDINGS},
        "shared": [f for f, v in fitted.items() if v["method"] == SHARED],  # every other finding has its own map
        "at_bound": [f for f, v in fitted.items() if v.get("at_bound")],
        "unlabelled": [f for f, v in fitted.items() if v["method"] == UNLABELLED],
        "shared_temperature": temperature,
        "prior_sd": used_sd,  # at least the configured one (`_prior_sd`)
        "prior_sd_floor": prior_sd,
        "transferred_from": transferred.get("site", "nih") if transferred else None,
        "findings": fitted,
    }


def apply_logit(params: dict, z) -> np.ndarray:
    """One finding's map applied to logits `z`: the calibrated logits (float64); NaN where the finding
    has no map (`UNLABELLED`). An isotonic map's steps are probabilities, kept off 0 and 1 by its fit."""
    z = np.asarray(z, np.float64)
    method = params["method"]
    if method == "none":  # (only in a calibration written before every finding got a map)
        return z
    if method == UNLABELLED:
        return np.full(z.shape, np.nan)
    if method in ("temperature", SHARED):  # (a map written before the intercept has none)
        return (z - params["offset"]) / params["temperature"] + params.get("intercept", 0.0)
    if method == "platt":
        return params["a"] * z + params["b"]
    if method == "isotonic":
        return logit(np.interp(z, params["x"], params["y"]))
    raise ValueError(f"unknown calibration method {method!r}")


def apply_one(params: dict, z) -> np.ndarray:
    """One finding's map applied to logits `z`: calibrated probabilities (float64)."""
    if params["method"] == "isotonic":  # its steps are probabilities already
        return np.interp(np.asarray(z, np.float64), params["x"], params["y"])
    return sigmoid(apply_logit(params, z))


def apply_logits(calibration: dict | None, logits: np.ndarray) -> np.ndarray:
    """(n, 14) logits to calibrated logits (float64); the logits unchanged without a calibration."""
    logits = np.asarray(logits, np.float64)
    if calibration is None:
        return logits
    return np.stack([apply_logit(calibration["findings"][f], logits[:, k]) for k, f in enumerate(FINDINGS)], axis=1)


def apply(calibration: dict | None, logits: np.ndarray) -> np.ndarray:
    """(n, 14) logits to calibrated probabilities with a calibration JSON's maps (float64, so that no
    two scores the model ranked apart become equal); the model's own probabilities without one."""
    logits = np.asarray(logits, np.float64)
    if calibration is None:
        return sigmoid(logits)
    return np.stack([apply_one(calibration["findings"][f], logits[:, k]) for k, f in enumerate(FINDINGS)], axis=1)


def calibrated(table: pd.DataFrame, calibration: dict | None) -> pd.DataFrame:
    """A predictions table with its probabilities and logits mapped through `calibration` (the plain
    TTA scores dropped): what every figure of a report is computed from."""
    logits = prediction_table.logits(table)
    out = table.drop(columns=[c for c in prediction_table.PLAIN_COLUMNS if c in table.columns])
    out[prediction_table.SCORES] = apply(calibration, logits)
    out[prediction_table.LOGITS] = apply_logits(calibration, logits)
    return out


def caveats(calibration: dict | None, points: dict | None, site: str) -> dict[str, str]:
    """Per finding, what its probability or decision at `site` rests on where a reader must be told,
    from the site's calibration.json and thresholds.json (either None): no map and no decision (the
    site does not label it), a map on too few val positives (the shared map) or whose own fit stopped
    at an optimiser bound, no operating point (and why), or one chosen on too few val positives. What
    `cxr14 predict`, the app and the model card print beside a finding."""
    out = {}
    for f in FINDINGS:
        fitted = (calibration or {}).get("findings", {}).get(f, {})
        if fitted.get("method") == UNLABELLED:
            out[f] = f"not labelled at site {site}: no probability and no decision"
            continue
        said = []
        if fitted.get("at_bound"):
            said.append("its own map stopped at an optimiser bound")
        if fitted.get("method") == SHARED:
            said.append(f"shared map ({fitted['positives']} val positives)")
        if points is not None and points["max_f1"].get(f, 0.5) is None:
            said.append(f"no operating point ({points.get('reasons', {}).get('max_f1', {}).get(f) or 'none chosen'})")
        elif points is not None and f in points.get("few_positives", []):
            said.append(f"operating point chosen on {points['val_positives'][f]} val positives")
        if said:
            out[f] = ", ".join(said)
    return out


def loss_offsets(summary: dict | None) -> dict[str, float]:
    """Per finding, log(w_pos / w_neg) of a run trained with the class-weighted loss (from its training
    summary); 0 for another loss, or an ensemble (no summary), whose members may differ."""
    if not summary or summary["config"]["loss"] != "weighted_bce":
        return dict.fromkeys(FINDINGS, 0.0)
    w = summary["class_weights"]
    return {f: float(np.log(max(w["pos_weights"][f], _EPS) / max(w["neg_weights"][f], _EPS))) for f in FINDINGS}


def check_model(calibration: dict, model_path) -> None:
    """Refuse a calibration fitted for another model file: its maps would be wrong for this one."""
    want = calibration.get("model_sha256")
    if want and want != sha256_file(model_path):
        raise ValueError(
            f"{model_path}: this calibration was fitted for another model (sha256 {want[:12]}...); "
            "use the run's own calibration.json"
        )
