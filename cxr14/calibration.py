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
of the miscalibration that needs no data, its class-weight offset, borrows strength from the others (a
temperature shared across findings, fitted on every finding's val labels pooled, each with its own
offset removed) and gets the one parameter its few labels can pin, its calibration in the large (an
intercept). The JSON and the report name those findings (`shared`). Unlabelled val images (-1: a
collection that does not say) are left out of every fit.
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
        temperature, intercept = _temperature_and_intercept(target, z - offset)
        out.update(method="temperature", offset=float(offset), temperature=temperature, intercept=intercept)
    elif method == "platt":
        best = minimize(
            lambda ab: _log_loss(target, sigmoid(ab[0] * z + ab[1])),
            x0=[1.0, 0.0],
            method="L-BFGS-B",
            bounds=[(1e-6, None), (None, None)],
        )
        out.update(method="platt", a=float(best.x[0]), b=float(best.x[1]))
    elif method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(z, y)
        out.update(method="isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
    else:
        raise ValueError(f"calibration method must be one of {METHODS}, not {method!r}")
    out["val_log_loss_after"] = _log_loss(y, apply_one(out, z))
    return out


def _targets(y: np.ndarray) -> np.ndarray:
    """Platt's targets, (N+ + 1) / (N+ + 2) and 1 / (N- + 2) rather than 1 and 0: a val split the model
    separates perfectly would otherwise drive the fit to an infinitely sharp map (T -> 0), which
    saturates at 1.0 and ties scores the model had ranked apart."""
    positives, negatives = y.sum(), len(y) - y.sum()
    return np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def _temperature_and_intercept(target: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """The T and b of sigmoid(z / T + b) with the least log-loss against `target`, fitted together."""
    from scipy.optimize import minimize

    best = minimize(
        lambda tb: _log_loss(target, sigmoid(z / np.exp(tb[0]) + tb[1])),
        x0=[0.0, 0.0],
        method="L-BFGS-B",
        bounds=[(-6, 6), (-20, 20)],
    )
    return float(np.exp(best.x[0])), float(best.x[1])


def _temperature(target: np.ndarray, z: np.ndarray) -> float:
    """The T of sigmoid(z / T) with the least log-loss against `target`."""
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(
        lambda log_t: _log_loss(target, sigmoid(z / np.exp(log_t))), bounds=(-6, 6), method="bounded"
    )
    return float(np.exp(best.x))


def shared(fitted: dict, val: pd.DataFrame, offsets: dict[str, float], min_positives: int) -> tuple[dict, float]:
    """`fitted` with each finding fitted "none" (too few val positives) given the shared map: its own
    class-weight offset removed, one temperature for all findings, fitted on every finding's labelled
    val images pooled (1.0 when even the pool is too small), then an intercept of its own. Returns
    (the maps, that temperature).

    The intercept is the one thing a handful of positives can pin: the finding's calibration in the
    large, fitted on its own val labels with Platt's smoothed targets (so none or all positive still
    gives a finite shift towards what was seen). At a new site that is most of the miscalibration
    (another scanner and prevalence move a finding's scores as a whole); on NIH it is about 0."""
    labels = {f: val[prediction_table.label(f)].to_numpy(np.float64) for f in FINDINGS}
    logits = prediction_table.logits(val)
    # A collection that does not say (-1) is not a negative. (`metrics.labelled` spelt out: importing
    # metrics here would make every step that reads a predictions table depend on its code.)
    known = {f: labels[f] >= 0 for f in FINDINGS}
    ys = np.concatenate([labels[f][known[f]] for f in FINDINGS])
    zs = np.concatenate([logits[known[f], k] - offsets[f] for k, f in enumerate(FINDINGS)])
    positives, negatives = int(ys.sum()), int(len(ys) - ys.sum())
    temperature = _temperature(_targets(ys), zs) if min(positives, negatives) >= min_positives else 1.0
    out = dict(fitted)
    for k, f in enumerate(FINDINGS):
        params = fitted[f]
        if params["method"] != "none":
            continue
        y, z = labels[f][known[f]], (logits[known[f], k] - offsets[f]) / temperature
        intercept = _intercept(y, z) if len(y) else 0.0
        out[f] = {
            "method": SHARED,
            "offset": float(offsets[f]),
            "temperature": temperature,
            "intercept": intercept,
            "positives": params["positives"],
            "negatives": params["negatives"],
            "reason": f"{params['positives']} val positives and {params['negatives']} negatives; fewer than "
            f"{min_positives} of each for a map of its own, "
            f"so its class-weight offset ({offsets[f]:+.3f} in logit) is removed, the temperature shared across "
            f"findings ({temperature:.3f}, fitted on {positives} positive and {negatives} negative val labels of all "
            f"findings pooled) is applied, and its own intercept ({intercept:+.3f}, its calibration in the large "
            "on its val labels)",
        }
    return out, temperature


def fit_table(rows: pd.DataFrame, method: str, min_positives: int, offsets: dict[str, float]) -> dict:
    """The one fitter: every finding's map fitted on the labelled `rows` of a predictions table (a
    site's val split, or the part of a collection a local recalibration is fitted on), those with too
    few positives given the shared map. {"method", "min_positives", "shared": the findings on the shared
    map, "shared_temperature", "findings": {finding: its map}}."""
    logits = prediction_table.logits(rows)
    fitted = {}
    for k, f in enumerate(FINDINGS):
        y = rows[prediction_table.label(f)].to_numpy()
        known = y >= 0  # a collection's unlabelled images say nothing either way (`metrics.labelled`)
        fitted[f] = fit(y[known], logits[known, k], method, min_positives, offsets[f])
    skipped = [f for f, v in fitted.items() if v["method"] == "none"]
    fitted, temperature = shared(fitted, rows, offsets, min_positives)
    return {
        "method": method,
        "min_positives": min_positives,
        "shared": skipped,  # every other finding has a map of its own
        "shared_temperature": temperature,
        "findings": fitted,
    }


def _intercept(y: np.ndarray, z: np.ndarray) -> float:
    """The b of sigmoid(z + b) with the least log-loss against Platt's targets of `y`."""
    from scipy.optimize import minimize_scalar

    target = _targets(y)
    return float(minimize_scalar(lambda b: _log_loss(target, sigmoid(z + b)), bounds=(-20, 20), method="bounded").x)


def apply_logit(params: dict, z) -> np.ndarray:
    """One finding's map applied to logits `z`: the calibrated logits (float64). An isotonic map's
    steps are probabilities, clipped at 1e-15 from 0 and 1 before their logit."""
    z = np.asarray(z, np.float64)
    method = params["method"]
    if method == "none":
        return z
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
