"""Every statistic the reports print, checked by simulation on data shaped like NIH ChestX-ray14
(`cxr14.simulation`: the real patients, images per patient, enriched test split and prevalences, with
patient random effects in the simulated logits and embeddings): type-I error at its alpha under a
patient-clustered null, power under a stated shift, and the coverage of every 95 % CI against the
population value (exact from the model's law, or from a very large draw). Prints one markdown table.

    .venv/bin/python bench/bench_statistics.py                       # 500 replicates of every experiment
    .venv/bin/python bench/bench_statistics.py --replicates 100 --only monitor_null --only leaderboard

Each library statistic is called in exactly one probe function below (`# Probes`): when a signature
changes, adapt the probe; the experiments and the tests (tests/test_statistics.py) stay as they are.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxr14 import assess, metrics, ood, shift, simulation  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.steps import leaderboard  # noqa: E402

METADATA = REPO.parent / "shared" / "nih-metadata"


@dataclass(frozen=True)
class Sizes:
    """What one replicate draws and resamples. The bench's defaults let >= 500 replicates of everything
    finish in about a quarter of an hour on 2 cores; the monitor's settings are smaller than the
    schema's (1000 images a side, 1000 permutations, 1000 bootstrap replicates) for that reason only."""

    sample_images: int = 500  # the monitor's sample, each side
    permutations: int = 500  # of the MMD test and the domain classifier (p resolution 1/501, below alpha / 2)
    folds: int = 5  # of the domain classifier
    monitor_boot: int = 200  # the domain classifier's bootstrap
    alpha: float = 0.01  # the monitor's (schema monitor.alpha)
    quantile: float = 0.99  # the OOD threshold's (schema monitor.quantile)
    ood_patients: int = 1000  # each of the OOD reference's train, val and held-out draws (train_val patients)
    test_patients: int = 300  # a test collection drawn from NIH test (~2,750 images)
    val_patients: int = 300  # the val collection operating points are chosen on (train_val, ~930 images)
    n_boot: int = 200  # every patient bootstrap
    runs: int = 5  # on the leaderboard (4 comparisons with the reference, 15 tests each: 60)
    site_images: int = 500  # a small site (train_val patients; rare findings not labelled)
    embedding_shift: float = 0.5  # the stated shift: this norm along a random direction (image SD ~1.5 a dim)
    gain: float = 0.02  # the AUROC difference whose CI is checked (every finding)


LEVEL = 0.95  # of every CI checked
COVERAGE_BOUND = 0.93  # the issue's: every 95 % CI covers at least this often
BIAS_BOUND = 0.02  # the label-free estimate's mean error, where its assumption holds

# Probes: each library statistic called once, here -------------------------------------------------------


def monitor_compare(a: simulation.Sample, b: simulation.Sample, sizes: Sizes, seed: int) -> dict:
    """The monitor's comparison of collection `a` with the reference `b`: its patient samples, the MMD
    and domain-classifier tests on their embeddings and the per-finding KS on the probabilities."""
    return shift.compare(
        a.embedding, b.embedding, a.patients, b.patients, sample_images=sizes.sample_images,
        permutations=sizes.permutations, folds=sizes.folds, n_boot=sizes.monitor_boot, seed=seed, alpha=sizes.alpha,
        p_x=a.probabilities[0], p_y=b.probabilities[0],
    )  # fmt: skip


def ood_share(train: np.ndarray, val: simulation.Sample, other: np.ndarray, quantile: float, seed: int) -> float:
    """The share of `other` past the OOD threshold fitted on `train` and `val` (its patients split in
    two by the reference: the threshold from one half)."""
    reference = ood.fit_reference(train, val.embedding, quantile, val_patients=val.patients, seed=seed)
    return float(np.mean(ood.mahalanobis(reference, other) > reference["threshold"]))


def auroc_cis(y, p, patients, n_boot, seed) -> tuple[np.ndarray, np.ndarray]:
    """(per-finding CIs (k, 2), the mean AUROC's CI (2,))."""
    boot = metrics.bootstrap_auroc(y, p, patients, n_boot, seed, LEVEL)
    return np.array(boot["ci"]), np.array(boot["mean_ci"])


def delta_cis(y, a, b, patients, n_boot, seed) -> tuple[np.ndarray, np.ndarray]:
    """The paired difference AUROC(a) - AUROC(b): (per-finding CIs (k, 2), the mean's CI (2,))."""
    boot = metrics.paired_bootstrap(y, a, b, patients, n_boot, seed, LEVEL)
    return np.array([c["ci"] for c in boot["per_column"]]), np.array(boot["mean"]["ci"])


def calibration_cis(y, p, patients, n_boot, seed) -> dict[str, np.ndarray]:
    """The CIs of the mean over findings of ECE (equal-width bins) and Brier score."""
    boot = metrics.bootstrap_calibration(y, p, patients, n_boot, seed)
    return {name: np.array(boot[name]["ci"]) for name in ("ece", "brier")}


def calibration_point(y, p) -> dict[str, float]:
    """The same figures, no CI (the population's, on a very large draw)."""
    errors = [metrics.reliability(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return {name: float(np.mean([e[name] for e in errors])) for name in ("ece", "brier")}


def operating_points(y, p) -> dict[str, np.ndarray]:
    """Per rule, the 14 thresholds chosen on val, as the calibrate step chooses them (NaN: no point)."""
    chosen = [metrics.thresholds(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return {rule: np.array([np.nan if c[rule] is None else c[rule] for c in chosen], np.float64)
            for rule in metrics.OPERATING_RULES}  # fmt: skip


def rate_cis(y, p, threshold, patients, n_boot, seed) -> dict[str, np.ndarray]:
    """Sensitivity and specificity CIs at one finding's `threshold`."""
    weights = metrics.patient_bootstrap_weights(patients, n_boot, seed)
    out = metrics.at_threshold(y, p, threshold, weights)
    return {name: np.array(out[f"{name}_ci"]) for name in ("sensitivity", "specificity")}


def subgroup_gaps(table, thresholds: dict[str, float], n_boot: int, seed: int) -> dict[str, dict]:
    """Per kind (sex, age, view): the underdiagnosis gap's CI and its groups' names."""
    found = assess.subgroups(table, thresholds, n_boot, seed)
    return {kind: {"ci": np.array(v["underdiagnosis_gap"]["ci"]), "groups": v["underdiagnosis_gap"]["compared"]}
            for kind, v in found.items() if v["underdiagnosis_gap"]}  # fmt: skip


def label_free(p: np.ndarray) -> float:
    return metrics.expected_auroc(p)


def comparison_family(tables: dict, pairs: dict, n_boot: int, seed: int) -> dict:
    """The leaderboard's comparisons (each run against its pair, Holm over the family): per run, per
    test name ("mean AUROC" or a finding), {"verdict", "p" (unadjusted), "delong_p"}."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # DeLong on a finding with one positive: NaN, as it says
        found = leaderboard.judge_families(leaderboard.compare(tables, pairs, n_boot, seed))
    return {run: {name: {k: t[k] for k in ("verdict", "p", "delong_p")} for name, t in c["tests"].items()}
            for run, c in found.items()}  # fmt: skip


# The world: the real metadata, the model, the population values ---------------------------------------


@dataclass
class World:
    cohorts: dict
    model: simulation.Model
    test_truth: dict  # the population ECE and Brier on NIH test
    subgroup_thresholds: dict  # fixed operating points of the subgroup check
    subgroup_rates: dict  # kind -> group -> population underdiagnosis rate at them


@functools.cache
def world() -> World:
    """Built once: the cohorts, a model calibrated on train_val's prevalences (so it is off in the large
    on the enriched test split, as NIH val's calibration is on NIH test), and what is measured on a
    very large draw (every test patient ten times over, ~256,000 images)."""
    cohorts = simulation.cohorts(simulation.read_metadata(METADATA))
    model = simulation.Model(calibrated_on=tuple(cohorts[simulation.TRAIN_VAL].prevalence()))
    rng = np.random.default_rng(2026)
    test = cohorts[simulation.TEST]
    every = np.tile(np.arange(test.patients), 10)
    big = simulation.draw(test, rng, model, chosen=every)
    val = simulation.draw(cohorts[simulation.TRAIN_VAL], rng, model, chosen=np.arange(3000))
    thresholds = dict(zip(FINDINGS, operating_points(val.labels, val.probabilities[0])["max_f1"]))
    return World(cohorts, model, calibration_point(big.labels, big.probabilities[0]), thresholds,
                 _underdiagnosis(big, thresholds))  # fmt: skip


def _underdiagnosis(sample: simulation.Sample, thresholds: dict) -> dict:
    """Per kind and group, the share of images with a finding that no score at its threshold calls."""
    p = sample.probabilities[0]
    sick = (sample.labels == 1).any(axis=1)
    missed = sick & ~(p >= np.array([thresholds[f] for f in FINDINGS])).any(axis=1)
    groups = {"sex": sample.rows.sex.to_numpy(), "age": metrics.age_band(sample.rows.age_years.to_numpy()),
              "view": sample.rows.view.to_numpy()}  # fmt: skip
    return {kind: {str(g): missed[values == g].sum() / sick[values == g].sum() for g in set(values)}
            for kind, values in groups.items()}  # fmt: skip


# Experiments: one replicate each, returning {check: outcome} -----------------------------------------------


def covers(ci: np.ndarray, truth) -> np.ndarray:
    """1 where a CI covers the truth, 0 where it does not, NaN where none is printed (not estimable: too
    few patients with a positive, `metrics.MIN_CI_PATIENTS`): coverage counts the printed CIs only,
    and the table says how many were printed."""
    ci = np.asarray(ci, np.float64).reshape(-1, 2)
    hit = ((ci[:, 0] <= truth) & (truth <= ci[:, 1])).astype(np.float64)
    return np.where(np.isfinite(ci).all(axis=1), hit, np.nan)


def monitor_verdicts(a, b, sizes: Sizes, seed: int) -> dict[str, bool]:
    found = monitor_compare(a, b, sizes, seed)
    return {"mmd": found["mmd"]["p"] < sizes.alpha, "domain": found["domain"]["p"] < sizes.alpha,
            "ks": found["ks"]["p_bonferroni"] < sizes.alpha, "flag": found["shifted"]}  # fmt: skip


def monitor_null(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """Two patient-disjoint halves of NIH test: one population, no shift."""
    test = w.cohorts[simulation.TEST]
    first, second = simulation.halves(test, rng)
    a, b = (simulation.draw(test, rng, w.model, chosen=half) for half in (first, second))
    return {f"monitor_{k}": v for k, v in monitor_verdicts(a, b, sizes, seed).items()}


def monitor_power(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """Half of NIH test against the other half shifted by `embedding_shift` along a random direction,
    and against train_val patients (the enriched test split against NIH val: a known shift)."""
    test, train_val = w.cohorts[simulation.TEST], w.cohorts[simulation.TRAIN_VAL]
    first, second = simulation.halves(test, rng)
    direction = rng.normal(size=w.model.dims)
    moved = sizes.embedding_shift * direction / np.linalg.norm(direction)
    a = simulation.draw(test, rng, w.model, chosen=first)
    b = simulation.draw(test, rng, w.model, chosen=second, embedding_shift=moved)
    val = simulation.draw(train_val, rng, w.model, patients=len(first))
    return {"monitor_power_shift": monitor_verdicts(a, b, sizes, seed)["flag"],
            "monitor_power_enriched": monitor_verdicts(a, val, sizes, seed)["flag"]}  # fmt: skip


def ood_experiment(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """The OOD reference fitted on train_val patients (train: the first 2000 images of `ood_patients`
    patients, as the ood_reference step takes the first in shard order; val: as many others), the share
    past it of further train_val patients (nominal 1 - quantile) and of NIH test patients."""
    train_val, test = w.cohorts[simulation.TRAIN_VAL], w.cohorts[simulation.TEST]
    order = rng.permutation(train_val.patients)
    size = sizes.ood_patients
    train, val, held = (
        simulation.draw(train_val, rng, w.model, chosen=order[i * size : (i + 1) * size]) for i in range(3)
    )
    reference = train.embedding[: min(2000, len(train.embedding))]
    enriched = simulation.draw(test, rng, w.model, patients=sizes.ood_patients // 3)
    return {"ood_share": ood_share(reference, val, held.embedding, sizes.quantile, seed),
            "ood_share_enriched": ood_share(reference, val, enriched.embedding, sizes.quantile, seed)}  # fmt: skip


def nih_test_collection(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """A collection of NIH test patients scored by two runs, b of the model's AUROCs and a of `gain`
    more on every finding; operating points chosen on a val draw of train_val patients."""
    test, train_val = w.cohorts[simulation.TEST], w.cohorts[simulation.TRAIN_VAL]
    base = np.asarray(w.model.auroc)
    sample = simulation.draw(test, rng, w.model, patients=sizes.test_patients, aurocs=[base, base + sizes.gain])
    y, patients = sample.labels, sample.patients
    p, p_better = sample.probabilities
    out = {}
    per_finding, mean = auroc_cis(y, p, patients, sizes.n_boot, seed)
    out["auroc_ci"], out["mean_auroc_ci"] = covers(per_finding, base), covers(mean, base.mean())
    per_finding, mean = delta_cis(y, p_better, p, patients, sizes.n_boot, seed)
    out["delta_ci"], out["mean_delta_ci"] = covers(per_finding, sizes.gain), covers(mean, sizes.gain)
    for name, ci in calibration_cis(y, p, patients, sizes.n_boot, seed).items():
        out[f"{name}_ci"] = covers(ci, w.test_truth[name])
    val = simulation.draw(train_val, rng, w.model, patients=sizes.val_patients)
    sensitivity, specificity = [], []
    for chosen in operating_points(val.labels, val.probabilities[0]).values():
        chosen = np.where(chosen < 1, chosen, np.nan)  # "call nothing" has no finite population rate
        truth = {"sensitivity": w.model.sensitivity(chosen), "specificity": w.model.specificity(chosen)}
        for j in np.flatnonzero(np.isfinite(chosen)):
            cis = rate_cis(y[:, j], p[:, j], chosen[j], patients, sizes.n_boot, seed)
            sensitivity.append(covers(cis["sensitivity"], truth["sensitivity"][j])[0])
            specificity.append(covers(cis["specificity"], truth["specificity"][j])[0])
    out["sensitivity_ci"], out["specificity_ci"] = np.array(sensitivity), np.array(specificity)
    for kind, gap in subgroup_gaps(sample.table(0), w.subgroup_thresholds, sizes.n_boot, seed).items():
        rates = [w.subgroup_rates[kind][g] for g in gap["groups"]]
        out[f"gap_{kind}_ci"] = covers(gap["ci"], max(rates) - min(rates))
    out["label_free_enriched"] = np.array([label_free(p[:, j]) for j in range(len(FINDINGS))]) - base
    return out


def label_free_experiment(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """The label-free estimate on held-out train_val patients, where the calibration holds."""
    sample = simulation.draw(w.cohorts[simulation.TRAIN_VAL], rng, w.model, patients=sizes.test_patients * 3)
    p = sample.probabilities[0]
    return {"label_free": np.array([label_free(p[:, j]) for j in range(len(FINDINGS))]) - np.asarray(w.model.auroc)}


def leaderboard_null(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """`runs` runs of the same population AUROCs on one collection of NIH test patients, each against
    the first: any verdict is a false one."""
    sample = simulation.draw(w.cohorts[simulation.TEST], rng, w.model, patients=sizes.test_patients,
                             aurocs=[w.model.auroc] * sizes.runs)  # fmt: skip
    tables = {f"run{r}": sample.table(r) for r in range(sizes.runs)}
    found = comparison_family(tables, leaderboard.against(tables, "run0"), sizes.n_boot, seed)
    tests = [t for c in found.values() for t in c.values()]
    per_finding = [t for c in found.values() for name, t in c.items() if name in FINDINGS]
    delong, paired = (np.array([t[key] for t in per_finding]) for key in ("delong_p", "p"))
    return {"leaderboard_family": any(t["verdict"] for t in tests),
            "leaderboard_mean": any(c["mean AUROC"]["verdict"] for c in found.values()),
            "paired_p": paired[np.isfinite(paired)] < 0.05, "delong": delong[np.isfinite(delong)] < 0.05}  # fmt: skip


def fine_tune_null(w: World, sizes: Sizes, rng, seed: int) -> dict:
    """A fine-tune no better than its start, judged on a small site that does not label its rare findings."""
    train_val = w.cohorts[simulation.TRAIN_VAL]
    site = simulation.draw(train_val, rng, w.model, images=sizes.site_images, aurocs=[w.model.auroc] * 2,
                           unlabelled=simulation.rare_findings(train_val, 0.015))  # fmt: skip
    found = comparison_family({"start": site.table(0), "tuned": site.table(1)}, {"tuned": "start"}, sizes.n_boot, seed)
    return {"fine_tune": any(t["verdict"] for t in found["tuned"].values())}


EXPERIMENTS = {
    "monitor_null": monitor_null,
    "monitor_power": monitor_power,
    "ood": ood_experiment,
    "test_collection": nih_test_collection,
    "label_free": label_free_experiment,
    "leaderboard": leaderboard_null,
    "fine_tune": fine_tune_null,
}


@dataclass(frozen=True)
class Check:
    """One row of the table: what an outcome means and what it must satisfy."""

    statistic: str
    truth: str
    kind: str  # "type-I" (outcome: rejected), "coverage" (covered), "power" (rejected), "share", "bias"
    nominal: float = float("nan")  # alpha, the CI's level, or the share expected


CHECKS = {
    "monitor_mmd": Check("monitor: MMD p < alpha", "two patient-disjoint halves of NIH test", "type-I", 0.01),
    "monitor_domain": Check("monitor: domain classifier p < alpha", "the same", "type-I", 0.01),
    "monitor_ks": Check("monitor: per-finding KS, Bonferroni p < alpha", "the same", "type-I", 0.01),
    "monitor_flag": Check("monitor: 'shifted'", "the same", "type-I", 0.01),
    "monitor_power_shift": Check("monitor: 'shifted', power", "embeddings moved 0.5 along a random direction", "power"),
    "monitor_power_enriched": Check("monitor: 'shifted', power", "NIH test against train_val (enriched)", "power"),
    "ood_share": Check("OOD share past the threshold", "held-out train_val patients: 1 - quantile", "share", 0.01),
    "ood_share_enriched": Check("OOD share past the threshold", "NIH test patients (a known shift)", "share"),
    "auroc_ci": Check("AUROC 95 % CI (14 findings pooled)", "the model's population AUROC", "coverage", LEVEL),
    "mean_auroc_ci": Check("mean AUROC 95 % CI", "the mean population AUROC", "coverage", LEVEL),
    "delta_ci": Check("paired Δ AUROC 95 % CI (14 pooled)", "Δ = 0.02 each finding", "coverage", LEVEL),
    "mean_delta_ci": Check("paired Δ mean AUROC 95 % CI", "Δ = 0.02", "coverage", LEVEL),
    "ece_ci": Check("ECE 95 % CI (mean of 14)", "ECE of ~256,000 NIH test images", "coverage", LEVEL),
    "brier_ci": Check("Brier 95 % CI (mean of 14)", "Brier of the same draw", "coverage", LEVEL),
    "sensitivity_ci": Check("sensitivity 95 % CI at operating points", "exact, 4 val rules x 14", "coverage", LEVEL),
    "specificity_ci": Check("specificity 95 % CI at operating points", "exact, 4 val rules x 14", "coverage", LEVEL),
    "gap_sex_ci": Check("underdiagnosis gap 95 % CI, sex", "population max - min rate", "coverage", LEVEL),
    "gap_age_ci": Check("underdiagnosis gap 95 % CI, age band", "population max - min rate", "coverage", LEVEL),
    "gap_view_ci": Check("underdiagnosis gap 95 % CI, view", "population max - min rate", "coverage", LEVEL),
    "label_free": Check("label-free AUROC estimate (no CI printed)", "calibrated: train_val patients", "bias"),
    "label_free_enriched": Check("label-free AUROC estimate", "NIH test, val's calibration (fails there)", "bias"),
    "leaderboard_family": Check("leaderboard: any verdict after Holm", "5 runs, equal AUROCs", "type-I", 0.05),
    "leaderboard_mean": Check("leaderboard: a mean-AUROC verdict", "the same", "type-I", 0.05),
    "paired_p": Check("paired bootstrap p < 0.05, unadjusted (per finding)", "the same", "type-I", 0.05),
    "delong": Check("DeLong p < 0.05 (clustered by patient, per finding)", "the same", "type-I", 0.05),
    "fine_tune": Check("fine-tune gain: any verdict after Holm", "a 500-image site, tuned = start", "type-I", 0.05),
}  # fmt: skip
UNBOUNDED = {"monitor_power_shift", "monitor_power_enriched", "ood_share_enriched", "label_free_enriched"}  # reported


def run(experiment: str, replicates: int, sizes: Sizes = Sizes(), seed: int = 0) -> dict[str, list]:
    """{check: one outcome array per replicate} of `replicates` seeded replicates of `experiment`."""
    w = world()
    outcomes: dict[str, list] = {}
    for r in range(replicates):
        rng = np.random.default_rng([seed, list(EXPERIMENTS).index(experiment), r])
        for name, value in EXPERIMENTS[experiment](w, sizes, rng, seed + r).items():
            outcomes.setdefault(name, []).append(np.atleast_1d(np.asarray(value, np.float64)))
    return outcomes


@dataclass(frozen=True)
class Summary:
    value: float  # the rejection rate, coverage, mean share or mean error
    se: float  # its Monte Carlo SE (over replicates, each replicate's mean one observation)
    bound: str
    passed: bool | None
    worst: str = ""  # where a replicate's outcome is one per finding: the finding furthest from the promise
    printed: float = 1.0  # of a CI: the share of its outcomes where one was printed (the rest not estimable)


def summarise(name: str, outcomes: list, coverage_bound: float = COVERAGE_BOUND) -> Summary:
    """An outcome's rate and whether it meets its bound: type-I error <= alpha + 3 SE (the SE of a
    rate at alpha over these replicates), coverage >= `coverage_bound`, the OOD share <= its nominal +
    3 SE, the label-free estimate's mean error within +-BIAS_BOUND."""
    check = CHECKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate where no CI was printed: NaN
        per_replicate = np.array([np.nanmean(o) for o in outcomes])
    pooled = np.concatenate(outcomes)
    value = float(np.nanmean(pooled))
    se = float(np.nanstd(per_replicate) / np.sqrt(np.isfinite(per_replicate).sum()))
    worst = _worst(check, outcomes)
    if name in UNBOUNDED or check.kind == "power":
        return Summary(value, se, "—", None, worst)
    if check.kind == "type-I":
        limit = check.nominal + 3 * np.sqrt(check.nominal * (1 - check.nominal) / len(outcomes))
        return Summary(value, se, f"<= {limit:.3f}", value <= limit, worst)
    if check.kind == "coverage":
        printed = float(np.isfinite(pooled).mean())
        return Summary(value, se, f">= {coverage_bound:.2f}", value >= coverage_bound, worst, printed)
    if check.kind == "share":
        limit = check.nominal + 3 * se
        return Summary(value, se, f"<= {limit:.4f}", value <= limit, worst)
    return Summary(value, se, f"within +-{BIAS_BOUND}", abs(value) <= BIAS_BOUND, worst)


def _worst(check: Check, outcomes: list) -> str:
    """The finding furthest from the promise, where every replicate has one outcome per finding."""
    if {len(o) for o in outcomes} != {len(FINDINGS)}:
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a finding never printed: NaN, and skipped
        per_finding = np.nanmean(np.stack(outcomes), axis=0)
    at = int(np.nanargmin(per_finding) if check.kind == "coverage" else np.nanargmax(np.abs(per_finding)))
    return f"{FINDINGS[at]} {per_finding[at]:+.3f}" if check.kind == "bias" else f"{FINDINGS[at]} {per_finding[at]:.3f}"


def table(results: dict[str, tuple[int, Summary]]) -> str:
    rows = ["| statistic | null / truth | replicates | type-I error or coverage | MC SE | bound | pass |",
            "|---|---|---:|---:|---:|---|---|"]  # fmt: skip
    for name, (replicates, s) in results.items():
        check = CHECKS[name]
        what = {"type-I": "type-I", "coverage": "coverage", "power": "power", "share": "share", "bias": "mean error"}
        passed = "—" if s.passed is None else ("yes" if s.passed else "**no**")
        notes = [f"printed {100 * s.printed:.0f} %"] if s.printed < 1 else []
        notes += [f"worst: {s.worst}"] if s.worst else []
        worst = f" ({'; '.join(notes)})" if notes else ""
        rows.append(f"| {check.statistic} | {check.truth} | {replicates} | {what[check.kind]} {s.value:.3f}{worst} | "
                    f"{s.se:.3f} | {s.bound} | {passed} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--only", action="append", choices=list(EXPERIMENTS), help="an experiment (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not METADATA.is_dir():
        sys.exit(f"{METADATA} is not there: the simulation draws the real NIH patients from it")
    results, seconds = {}, {}
    for experiment in args.only or EXPERIMENTS:
        start = time.perf_counter()
        for name, outcomes in run(experiment, args.replicates, seed=args.seed).items():
            results[name] = (len(outcomes), summarise(name, outcomes))
        seconds[experiment] = time.perf_counter() - start
        print(f"{experiment}: {seconds[experiment]:.0f} s", file=sys.stderr, flush=True)
    print(table(results))
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f"; total {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main()
