"""The leaderboard: every run side by side, and each compared with the reference run on the same
test images and the same calibrated scores as its row, with a paired patient bootstrap (the same
patients resampled for both runs in each replicate; its CI and the p that inverts it) and, per
finding, DeLong's test clustered by patient as a second opinion. Verdicts in two families
(`judge_families`): each run's mean AUROC against the reference, Holm over the runs; each run's
findings, Holm over its own, tested only where its mean AUROC differs."""

from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, prediction_table
from ..calibration import calibrated
from ..constants import DISCLAIMER, FINDINGS
from ..files import atomic
from ..prediction_table import EXTERNAL
from ..report import known, templates

log = logging.getLogger(__name__)


def leaderboard(
    *,
    evaluations: dict,
    predictions: dict,
    calibrations: dict,
    summaries: dict,
    reports: dict,
    external_evaluations: dict,
    external_predictions: dict,
    external_reports: dict,
    monitors: dict,
    monitor_reports: dict,
    csv,
    html,
    groups: dict,
    flat_settings: dict,
    reference: str,
    starts_from: dict,
    model_cards: dict,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    """Step `leaderboard`: `csv` and the self-contained, sortable `html`, one row per run in the order
    of `evaluations`. Each input is {run: file}: `evaluations` (metrics JSON), `predictions`,
    `calibrations` (its NIH calibration, which its evaluations judge every collection with: the
    comparisons use the same calibrated scores) and `reports` of every run; `summaries` (training) of
    the trained runs only. `flat_settings`: each run's
    settings as {"section.key": value}, for the 'differs from the reference' column. The `external_*`
    inputs are {dataset: {run: file}}: each run's evaluation, predictions and report on each external
    collection, which add a column group per collection (its mean AUROC over the findings it labels,
    and the paired comparison with the reference run on it). `starts_from`: each fine-tune's starting
    run, which it is compared with on NIH test and on every collection (what it gained, what it lost).
    `model_cards`: {run: its model card page}, which the board links to. `monitors` ({dataset: {run:
    monitor.json}}) add each collection's shift: the domain classifier's AUROC against NIH test and the
    share of images past the out-of-distribution threshold (`monitor_reports` linked). A collection
    without labels has those alone."""
    runs = list(evaluations)
    by_run = {run: json.loads(Path(path).read_text()) for run, path in evaluations.items()}
    trained_summaries = {run: json.loads(Path(path).read_text()) for run, path in summaries.items()}
    maps = {run: json.loads(Path(path).read_text()) for run, path in calibrations.items()}
    tests = {run: calibrated(prediction_table.read(path, "test"), maps[run]) for run, path in predictions.items()}
    comparisons = judge_families(compare(tests, against(tests, reference), n_boot, seed))
    rows = [
        _row(
            run,
            by_run[run],
            trained_summaries.get(run),
            flat_settings,
            reference,
            comparisons.get(run),
            os.path.relpath(reports[run], Path(html).parent),
            os.path.relpath(model_cards[run], Path(html).parent),
        )
        for run in runs
    ]
    collections = {
        dataset: external(evaluations_of, external_predictions[dataset], maps, reference, n_boot, seed)
        for dataset, evaluations_of in external_evaluations.items()
    }
    unlabelled = [d for d, by_run in collections.items() if not _labelled({r: f["metrics"] for r, f in by_run.items()})]
    fine_tunes = fine_tune_gains(tests, external_predictions, maps, starts_from, n_boot, seed, unlabelled)
    for row in rows:
        row["starts_from"] = starts_from.get(row["run"])
        for dataset, on_collection in collections.items():
            row.update(_external_row(dataset, on_collection[row["run"]]))
            row.update(_shift_row(dataset, json.loads(Path(monitors[dataset][row["run"]]).read_text())))
            row[f"{dataset}_monitor"] = os.path.relpath(monitor_reports[dataset][row["run"]], Path(html).parent)
            row[f"{dataset}_report"] = os.path.relpath(external_reports[dataset][row["run"]], Path(html).parent)
        for where, comparison in fine_tunes.get(row["run"], {}).items():
            mean = comparison["tests"]["mean AUROC"]
            row |= {f"{where}_gain_vs_start": mean["diff"], f"{where}_gain_ci_low": mean["ci"][0],
                    f"{where}_gain_ci_high": mean["ci"][1]}  # fmt: skip
    table = pd.DataFrame(rows)
    with atomic(csv) as staged:
        table.to_csv(staged, index=False, float_format="%.6g")
    spread = repeat_spread(groups, by_run)
    synthetic = any(m.get("synthetic") for m in by_run.values())  # the demo's phantom data
    _render(table, comparisons, spread, reference, n_boot, html, collections, fine_tunes, synthetic)
    log.info(
        "leaderboard of %d runs against %s: %d paired comparisons",
        len(runs),
        reference,
        sum(len(c["tests"]) for c in comparisons.values()),
    )
    return table


ALPHA = 0.05  # the family-wise error rate of the page's verdicts


def against(tables: dict, reference: str) -> dict[str, str]:
    """Every run but the reference, paired with the reference."""
    return {run: reference for run in tables if run != reference}


def compare(tests: dict[str, pd.DataFrame], pairs: dict[str, str], n_boot: int, seed: int) -> dict:
    """run -> its comparison with the run `pairs` names for it on the test images both scored (each
    table's scores as its row's figures use them: calibrated): the paired-bootstrap difference in
    mean AUROC and per finding (`metrics.paired_bootstrap`: CI, p, p_floor) and, per finding, the
    clustered DeLong p. No verdicts: `judge_families` gives them."""
    out = {}
    for run, other in pairs.items():
        test, ref = tests[run], tests[other]
        both = ref[["image_index"]].merge(test[["image_index"]], on="image_index")
        a = test.set_index("image_index").loc[both.image_index]
        b = ref.set_index("image_index").loc[both.image_index]
        (y, score_b), (_, score_a) = prediction_table.arrays(b), prediction_table.arrays(a)
        patients = b.patient_id.to_numpy()
        boot = metrics.paired_bootstrap(y, score_a, score_b, patients, n_boot, seed)
        delong = [metrics.delong(y[:, j], score_a[:, j], score_b[:, j], patients)["p"] for j in range(len(FINDINGS))]
        per_finding = {f: {**boot["per_column"][j], "delong_p": delong[j]} for j, f in enumerate(FINDINGS)}
        tests_ = {PRIMARY: {**boot["mean"], "delong_p": float("nan")}, **per_finding}  # DeLong is per finding
        out[run] = {"images": int(len(both)), "patients": int(b.patient_id.nunique()), "tests": tests_}
    return out


PRIMARY = "mean AUROC"  # each comparison's primary test; the findings' are secondary


def judge_families(comparisons: dict, alpha: float = ALPHA) -> dict:
    """`comparisons` (`compare`'s) with each test's family, its Holm-adjusted p and its verdict, by
    `metrics.gatekept_holm`: the primary family, every run's mean AUROC (Holm over the runs); the
    secondary, per run, its findings (Holm over that run's alone), tested only where its primary test
    rejected ("gated" otherwise: no verdict). A verdict is the sign of the difference where the
    adjusted p < `alpha`; "excludes_0": whether the unadjusted CI does (exactly when p < 0.05)."""
    runs = list(comparisons)
    if not runs:
        return comparisons
    findings = [name for name in comparisons[runs[0]]["tests"] if name != PRIMARY]
    decided = metrics.gatekept_holm(
        [comparisons[run]["tests"][PRIMARY]["p"] for run in runs],
        [[comparisons[run]["tests"][name]["p"] for name in findings] for run in runs],
        alpha,
    )
    for i, run in enumerate(runs):
        tests = comparisons[run]["tests"]
        adjusted = {PRIMARY: decided["primary_holm"][i], **dict(zip(findings, decided["secondary_holm"][i]))}
        for name, test in tests.items():
            p = float(adjusted[name])
            test["family"] = "primary" if name == PRIMARY else "secondary"
            test["gated"] = name != PRIMARY and not decided["gate_open"][i]
            test["p_holm"] = p
            test["excludes_0"] = bool(np.isfinite(test["ci"][0]) and (test["ci"][0] > 0 or test["ci"][1] < 0))
            # The one verdict the page colours, from the adjusted p of the test's family.
            test["verdict"] = ("better" if test["diff"] > 0 else "worse") if np.isfinite(p) and p < alpha else None
    return comparisons


def external(evaluations: dict, predictions: dict, maps: dict, reference: str, n_boot: int, seed: int) -> dict:
    """run -> its figures on one external collection (mean AUROC over the findings it labels, the
    drop from NIH) and its paired comparison with `reference` on the collection's images, each run's
    scores through its NIH calibration `maps[run]` (as its evaluation there judges them); the
    collection's comparisons are families of their own (`judge_families`)."""
    by_run = {run: json.loads(Path(path).read_text()) for run, path in evaluations.items()}
    if not _labelled(by_run):
        return {run: {"metrics": m, "comparison": None} for run, m in by_run.items()}
    tables = {run: calibrated(prediction_table.read(path, EXTERNAL), maps[run]) for run, path in predictions.items()}
    comparisons = judge_families(compare(tables, against(tables, reference), n_boot, seed))
    return {run: {"metrics": m, "comparison": comparisons.get(run)} for run, m in by_run.items()}


def _labelled(by_run: dict) -> bool:
    """Whether a collection has labels (its evaluations say so: one without says `labelled: false`)."""
    return next(iter(by_run.values())).get("labelled", True)


def fine_tune_gains(
    tests: dict, external_predictions: dict, maps: dict, starts_from: dict, n_boot: int, seed: int, unlabelled=()
) -> dict:
    """fine-tune -> {"nih" or dataset: its paired comparison with its starting run there}: what it
    gained on the collections (but the `unlabelled` ones) and what it gave up on NIH test (`tests`,
    calibrated already), each run's scores through its NIH calibration `maps[run]`; the fine-tunes on
    each are families of their own (`judge_families`)."""
    if not starts_from:
        return {}
    out: dict = {}
    tables = {"nih": tests} | {
        dataset: {run: calibrated(prediction_table.read(path, EXTERNAL), maps[run]) for run, path in by_run.items()}
        for dataset, by_run in external_predictions.items()
        if dataset not in unlabelled
    }
    for where, by_run in tables.items():
        for run, comparison in judge_families(compare(by_run, starts_from, n_boot, seed)).items():
            out.setdefault(run, {})[where] = comparison
    return out


def _external_row(dataset: str, figures: dict) -> dict:
    m, comparison = figures["metrics"], figures["comparison"]
    if not m.get("labelled", True):
        return {f"{dataset}_mean_auroc": None}
    mean = comparison["tests"]["mean AUROC"] if comparison else None
    return {
        f"{dataset}_mean_auroc": m["mean_auroc"],
        f"{dataset}_ci_low": m["mean_auroc_ci"][0],
        f"{dataset}_ci_high": m["mean_auroc_ci"][1],
        f"{dataset}_drop_from_nih": m["drop"]["diff"],
        f"{dataset}_diff_vs_reference": mean and mean["diff"],
        f"{dataset}_diff_ci_low": mean and mean["ci"][0],
        f"{dataset}_diff_ci_high": mean and mean["ci"][1],
        f"{dataset}_p_bootstrap": mean and mean["p"],
    }


def _shift_row(dataset: str, m: dict) -> dict:
    """A run's shift on a collection (its monitor step's): told from NIH val by the domain classifier,
    the share of images past the out-of-distribution threshold, and whether it is flagged."""
    domain = m["features"]["domain"]
    return {
        f"{dataset}_domain_auroc": domain["auroc"],
        f"{dataset}_domain_ci_low": domain["ci"][0],
        f"{dataset}_domain_ci_high": domain["ci"][1],
        f"{dataset}_ood_share": m["ood"]["share"],
        f"{dataset}_shifted": m["shifted"],
    }


def repeat_spread(groups: dict, by_run: dict) -> list[dict]:
    """Seed-to-seed spread of each repeated run: mean and sd of the copies' mean test AUROC."""
    out = []
    for group, members in groups.items():
        values = np.array([by_run[m]["mean_auroc"] for m in members], np.float64)
        out.append(
            {
                "run": group,
                "copies": len(members),
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "members": members,
            }
        )
    return out


def _differs(run: str, settings: dict, reference: str) -> str:
    mine, ref = settings[run], settings[reference]
    return "; ".join(f"{k}={v}" for k, v in mine.items() if ref.get(k) != v)


def _row(run, m, summary, settings, reference, comparison, report, model_card) -> dict:
    per = m["findings"]
    ece = [per[f]["calibration"]["ece"] for f in FINDINGS if per[f]["calibration"]["ece"] is not None]
    auprc = [per[f]["auprc"] for f in FINDINGS if per[f]["auprc"] is not None]
    row = {
        "run": run,
        "kind": "ensemble" if m["members"] else "trained",
        "mean_auroc": m["mean_auroc"],
        "ci_low": m["mean_auroc_ci"][0],
        "ci_high": m["mean_auroc_ci"][1],
        "mean_auprc": float(np.mean(auprc)) if auprc else None,
        "mean_ece": float(np.mean(ece)) if ece else None,
        "differs_from_reference": "(reference)" if run == reference else _differs(run, settings, reference),
        "trained_on": summary and " + ".join(summary.get("trained_on", ["nih"])),
        "train_seconds": summary and summary["seconds_this_run"],
        "epochs": summary and summary["epochs_run"],
        "images_per_second": summary
        and round(summary["train_images"] * summary["epochs_this_run"] / max(summary["seconds_this_run"], 1e-9), 1),
        "report": report,
        "model_card": model_card,
        **dict.fromkeys(["diff_vs_reference", "diff_ci_low", "diff_ci_high", "p_bootstrap", "p_floor", "p_holm"]),
    }
    if comparison:
        mean = comparison["tests"]["mean AUROC"]
        row.update(
            {
                "diff_vs_reference": mean["diff"],
                "diff_ci_low": mean["ci"][0],
                "diff_ci_high": mean["ci"][1],
                "p_bootstrap": mean["p"],
                "p_floor": mean["p_floor"],
                "p_holm": mean["p_holm"],
            }
        )
    row.update({f"auroc_{f}": per[f]["auroc"] for f in FINDINGS})
    row.update({f"auprc_{f}": per[f]["auprc"] for f in FINDINGS})
    row.update({f"ece_{f}": per[f]["calibration"]["ece"] for f in FINDINGS})
    return row


def _render(
    table: pd.DataFrame,
    comparisons: dict,
    spread: list[dict],
    reference: str,
    n_boot: int,
    html,
    collections: dict,
    fine_tunes: dict,
    synthetic: bool,
) -> None:
    env = templates()
    env.filters["p"] = _p
    env.filters["num"] = lambda v: f"{v:g}" if known(v) else "–"
    records = table.astype(object).where(table.notna(), None).to_dict("records")
    page = env.get_template("leaderboard.html.j2").render(
        rows=records,
        findings=FINDINGS,
        comparisons=comparisons,
        collections=collections,
        fine_tunes=fine_tunes,
        spread=spread,
        reference=reference,
        n_boot=n_boot,
        n_tests=sum(len(c["tests"]) for c in comparisons.values()),
        min_boot=_replicates_needed(len(comparisons)),
        disclaimer=DISCLAIMER,
        synthetic=synthetic,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    with atomic(html) as staged:
        staged.write_text(page)


def _p(value, floor=None) -> str:
    """A p-value for the page: "≤ floor" where it sits at the bootstrap's resolution (no replicate
    crossed 0), so no smaller number is implied than the replicates resolve."""
    if not known(value):
        return "–"
    if known(floor) and value <= floor:
        return f"≤{floor:.2g}"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _replicates_needed(runs: int, alpha: float = ALPHA) -> int:
    """The fewest bootstrap replicates B with which Holm can reject in the larger family (the runs',
    or a run's 14 findings): its smallest adjusted p, family size x 2 / (B + 1), below `alpha`."""
    return int(np.floor(2 * max(len(FINDINGS), runs) / alpha))
