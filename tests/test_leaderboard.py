"""Step `leaderboard` (cxr14/leaderboard.py): rows, paired comparisons, seed spread and the page."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import judged_on_nih, synthetic_external_predictions, synthetic_predictions
from cxr14.constants import FINDINGS
from cxr14.steps import leaderboard


def _monitored(path, domain_auroc: float) -> dict:
    """A monitor step's figures the leaderboard reads."""
    m = {"features": {"domain": {"auroc": domain_auroc, "ci": [domain_auroc - 0.05, domain_auroc + 0.05]}},
         "ood": {"share": 0.25}, "shifted": domain_auroc > 0.6}  # fmt: skip
    path.write_text(json.dumps(m))
    path.with_suffix(".html").write_text("monitoring report")
    return m


def _board(
    tmp_path,
    runs: dict,
    settings: dict,
    groups: dict,
    site: dict | None = None,
    starts_from=None,
    labelled=True,
    calibrations: dict | None = None,
    n_boot: int = 1000,
    seeds: dict | None = None,
):
    """The leaderboard of runs {name: noise of its synthetic predictions}, the first the reference;
    `site`: {name: noise} of each run's predictions on an external collection "site" (without labels
    unless `labelled`); `starts_from`: the fine-tunes' starting runs; `calibrations`: {run: its NIH
    calibration} (none by default), which its evaluation judges with; `seeds`: {run: the seed of its
    noise} (its place in `runs` by default). 1,000 replicates: enough for Holm in a family of 14."""
    paths, external = {}, {key: {} for key in ("external_evaluations", "external_predictions", "external_reports",
                                               "monitors", "monitor_reports")}  # fmt: skip
    calibrations = calibrations or {}
    for k, (run, noise) in enumerate(runs.items()):
        pred = synthetic_predictions(tmp_path / f"{run}.parquet", (seeds or {}).get(run, k), noise)
        m = judged_on_nih(pred, calibration=calibrations.get(run))
        (tmp_path / f"{run}.json").write_text(json.dumps(m))
        (tmp_path / f"{run}.calibration.json").write_text(json.dumps(calibrations.get(run)))
        (tmp_path / f"{run}.summary.json").write_text(
            json.dumps({"seconds_this_run": 10.0, "epochs_run": 3, "epochs_this_run": 3, "train_images": 100})
        )
        paths[run] = tmp_path / f"{run}.html"
        paths[run].write_text("report")
    for run, noise in (site or {}).items():
        pred = synthetic_external_predictions(tmp_path / f"{run}.site.parquet", 10 + len(run), noise)
        findings = [f for f in FINDINGS if (pred[f"y_{f}"] >= 0).any()]
        mean = float(
            np.mean(
                [
                    roc_auc_score(pred[f"y_{f}"][pred[f"y_{f}"] >= 0], pred[f"p_{f}"][pred[f"y_{f}"] >= 0])
                    for f in findings
                ]
            )
        )
        m = {"mean_auroc": mean, "mean_auroc_ci": [mean - 0.05, mean + 0.05], "labelled_findings": findings,
             "nih": {"mean_auroc": 0.8}, "drop": {"diff": 0.8 - mean, "ci": [0.0, 0.2]}}  # fmt: skip
        if not labelled:
            m = {"labelled": False, "images": len(pred)}
        _monitored(tmp_path / f"{run}.site.monitor.json", 0.9)
        (tmp_path / f"{run}.site.json").write_text(json.dumps(m))
        (tmp_path / f"{run}.site.html").write_text("external report")
        for key, suffix in (
            ("external_evaluations", "json"),
            ("external_predictions", "parquet"),
            ("external_reports", "html"),
            ("monitors", "monitor.json"),
            ("monitor_reports", "monitor.html"),
        ):
            external[key].setdefault("site", {})[run] = tmp_path / f"{run}.site.{suffix}"
    return leaderboard.leaderboard(
        evaluations={r: tmp_path / f"{r}.json" for r in runs},
        predictions={r: tmp_path / f"{r}.parquet" for r in runs},
        calibrations={r: tmp_path / f"{r}.calibration.json" for r in runs},
        summaries={r: tmp_path / f"{r}.summary.json" for r in runs},
        reports=paths,
        **external,
        csv=tmp_path / "lb.csv",
        html=tmp_path / "lb.html",
        groups=groups,
        flat_settings=settings,
        reference=next(iter(runs)),
        starts_from=starts_from or {},
        model_cards={r: tmp_path / r / "model_card.html" for r in runs},
        n_boot=n_boot,
        seed=0,
    )


def test_a_leaderboard_of_one_run_has_no_comparisons(tmp_path):
    table = _board(tmp_path, {"ref": 0.3}, {"ref": {}}, {})
    assert len(table) == 1 and table.diff_vs_reference.isna().all()
    assert "ref" in (tmp_path / "lb.html").read_text()


def test_leaderboard_rows_comparisons_and_spread(tmp_path):
    settings = {
        "ref": {"train.learning_rate": 0.001},
        "s1": {"train.learning_rate": 0.01},
        "s2": {"train.learning_rate": 0.01},
    }
    table = _board(tmp_path, {"ref": 0.35, "s1": 0.2, "s2": 0.22}, settings, {"s": ["s1", "s2"]})
    csv = pd.read_csv(tmp_path / "lb.csv")
    assert list(csv.run) == ["ref", "s1", "s2"] and csv.loc[1, "differs_from_reference"] == "train.learning_rate=0.01"
    assert csv.loc[1, "diff_vs_reference"] > 0 and csv.loc[1, "diff_ci_low"] > 0  # less noise ranks better
    assert csv.loc[0, "report"] == "ref.html" and csv.loc[0, "images_per_second"] == 30.0
    assert {"auroc_Mass", "auprc_Mass", "ece_Mass", "p_holm"} <= set(csv.columns)
    html = (tmp_path / "lb.html").read_text()
    assert "30</b> comparisons" in html and "s1 − ref" in html and "not medical advice" in html
    assert "table.sortable" in html and 'href="ref.html"' in html and "± " in html
    # Better than the reference is green; worse (a CI wholly below 0) is red, never green.
    assert html.count('class="worse"') == 0 and 'class="better"' in html
    assert table.loc[1, "p_holm"] >= table.loc[1, "p_bootstrap"]


def test_a_worse_run_is_marked_worse_not_better(tmp_path):
    _board(tmp_path, {"ref": 0.2, "noisy": 0.45}, {"ref": {}, "noisy": {}}, {})
    html = (tmp_path / "lb.html").read_text()
    row = html.split('id="run-noisy"', 1)[1].split("</tr>", 1)[0]
    assert 'class="worse"' in row and 'class="better"' not in row


def test_each_external_collection_gets_its_columns_and_a_paired_comparison(tmp_path):
    settings = {"ref": {}, "better": {"train.loss": "focal"}}
    _board(tmp_path, {"ref": 0.3, "better": 0.3}, settings, {}, site={"ref": 0.4, "better": 0.1})
    csv = pd.read_csv(tmp_path / "lb.csv").set_index("run")
    assert csv.loc["better", "site_mean_auroc"] > csv.loc["ref", "site_mean_auroc"]
    assert csv.loc["better", "site_diff_vs_reference"] > 0 and csv.loc["better", "site_diff_ci_low"] > 0
    assert np.isnan(csv.loc["ref", "site_diff_vs_reference"]) and csv.loc["better", "site_report"] == "better.site.html"
    html = (tmp_path / "lb.html").read_text()
    assert 'id="external-site"' in html and "Atelectasis, Cardiomegaly, Effusion, Pneumothorax" in html


def test_a_fine_tune_is_compared_with_its_starting_run_on_nih_and_on_the_site(tmp_path):
    """A run fine-tuned on the site (less noise there, more on NIH) against the run it started from,
    not only against the reference: its gain on the site is green, its cost on NIH test red."""
    runs = {"ref": 0.3, "start": 0.25, "tuned": 0.45}
    settings = dict.fromkeys(runs, {})
    site = {"ref": 0.3, "start": 0.4, "tuned": 0.1}
    _board(tmp_path, runs, settings, {}, site=site, starts_from={"tuned": "start"})
    csv = pd.read_csv(tmp_path / "lb.csv").set_index("run")
    assert csv.loc["tuned", "starts_from"] == "start" and pd.isna(csv.loc["start", "starts_from"])
    assert csv.loc["tuned", "site_gain_vs_start"] > 0 and csv.loc["tuned", "site_gain_ci_low"] > 0
    assert csv.loc["tuned", "nih_gain_vs_start"] < 0 and csv.loc["tuned", "nih_gain_ci_high"] < 0
    # the gain is against the start, not the reference
    assert csv.loc["tuned", "site_gain_vs_start"] != csv.loc["tuned", "site_diff_vs_reference"]
    html = (tmp_path / "lb.html").read_text()
    section = html.split('id="fine-tunes"', 1)[1].split("</section>", 1)[0]
    row = section.split("<td>tuned</td>", 1)[1].split("</tr>", 1)[0]
    assert "Δ NIH test" in section and "Δ site" in section
    cells = row.split("<td")
    assert [c for c in cells if 'class="worse"' in c] and [c for c in cells if 'class="better"' in c]
    assert row.index('class="worse"') < row.index('class="better"')  # NIH first, then the site


def test_repeats_and_a_collection_together_spread_the_nih_scores(tmp_path):
    """A repeated run beside an external collection (the seed spread once read the collection's results
    for the NIH evaluations: a KeyError, #28)."""
    settings = dict.fromkeys(("ref", "s1", "s2"), {})
    site = {"ref": 0.4, "s1": 0.1, "s2": 0.2}
    _board(tmp_path, {"ref": 0.35, "s1": 0.2, "s2": 0.22}, settings, {"s": ["s1", "s2"]}, site=site)
    nih = np.array([json.loads((tmp_path / f"{run}.json").read_text())["mean_auroc"] for run in ("s1", "s2")])
    assert f'data-sort="{nih.mean()}"' in (tmp_path / "lb.html").read_text()


COMPARISON_ROW = re.compile(
    r'<tr><td>([^<]*)</td><td class="text">(primary|secondary)</td><td data-sort="[^"]*"( class="(?:better|worse)")?>'
    r'[^<]*</td><td>([^<]*)</td>\s*<td data-sort="([^"]*)">[^<]*</td><td data-sort="([^"]*)">([^<]*)</td>'
)


def _comparison_rows(html: str) -> dict:
    """run -> [(test, family, coloured, CI text, p, adjusted p or 1, adjusted p's cell)] of the page's
    per-run comparison tables."""
    out = {}
    for part in html.split('id="comparisons"', 1)[1].split('<h3 id="compare-')[1:]:
        out[part.split('"', 1)[0]] = COMPARISON_ROW.findall(part)
    return out


def test_a_cell_is_coloured_by_its_familys_holm_adjusted_decision_and_never_by_the_unadjusted_ci(tmp_path):
    """The page's one verdict per comparison: a cell is green or red exactly where the Holm-adjusted p
    of its family is below 0.05, whatever the unadjusted CI beside it says; a run whose mean AUROC
    shows no difference has its findings gated (no verdict, "gated"), and each table names its family."""
    runs = {"ref": 0.35, "clear": 0.15, "close": 0.34}
    _board(tmp_path, runs, {r: {} for r in runs}, {})
    csv = pd.read_csv(tmp_path / "lb.csv").set_index("run")
    html = (tmp_path / "lb.html").read_text()
    for run in ("clear", "close"):
        row = html.split(f'id="run-{run}"', 1)[1].split("</tr>", 1)[0]
        decided = csv.loc[run, "p_holm"] < 0.05
        assert ('class="better"' in row or 'class="worse"' in row) == decided, (run, csv.loc[run, "p_holm"])
    assert csv.loc["clear", "p_holm"] < 0.05 and csv.loc["close", "p_holm"] >= 0.05
    assert "Primary family" in html and "Secondary families" in html and "Holm over the 2 runs" in html
    rows = _comparison_rows(html)
    assert [len(rows[run]) for run in ("clear", "close")] == [15, 15]
    for run, tests in rows.items():
        assert [family for _, family, *_ in tests] == ["primary"] + ["secondary"] * 14
        for name, _, coloured, _, _, adjusted, shown in tests:
            assert bool(coloured) == (shown != "gated" and float(adjusted) < 0.05), (run, name, shown)
    assert all(shown == "gated" for *_, shown in rows["close"][1:])  # its mean shows no difference
    assert any(not coloured for _, _, coloured, *_ in rows["clear"][1:]) and any(c for _, _, c, *_ in rows["clear"][1:])


def test_a_runs_verdicts_do_not_change_when_unrelated_runs_join(tmp_path):
    """Main's one Holm family held every test of every run: with 5 runs the headline needed
    p < 0.05/60 and each run's findings were adjusted for the other runs'. Now the families are the
    runs' means, and each run's own findings: four more runs like the reference leave the clear
    run's per-finding adjusted p's and verdicts as they were."""
    two = {"ref": 0.35, "clear": 0.15}
    six = two | {f"same{k}": 0.35 for k in range(4)}
    (tmp_path / "two").mkdir(), (tmp_path / "six").mkdir()
    _board(tmp_path / "two", two, {r: {} for r in two}, {})
    _board(
        tmp_path / "six",
        six,
        {r: {} for r in six},
        {},
        seeds={"ref": 0, "clear": 1} | {f"same{k}": 2 + k for k in range(4)},
    )
    before = _comparison_rows((tmp_path / "two" / "lb.html").read_text())["clear"]
    after = _comparison_rows((tmp_path / "six" / "lb.html").read_text())
    assert after["clear"][1:] == before[1:]  # the findings: the same adjusted p's and colours
    assert after["clear"][0][2] and before[0][2]  # its mean AUROC better in both
    assert not any(coloured for run in after if run.startswith("same") for _, _, coloured, *_ in after[run])


def test_every_comparisons_ci_excludes_0_exactly_where_its_p_is_below_005(tmp_path):
    """One method for the CI and the p of each comparison, mean and findings, so they agree on every
    row (main printed percentile CIs excluding 0 beside Wald p-values of 0.10-0.21)."""
    noise = {"ref": 0.3, "a": 0.25, "b": 0.33, "c": 0.4, "d": 0.2}
    tables = {
        run: synthetic_predictions(tmp_path / f"{run}.parquet", k, sd) for k, (run, sd) in enumerate(noise.items())
    }
    tests = {run: t[t.split == "test"].sort_values("image_index", ignore_index=True) for run, t in tables.items()}
    compared = leaderboard.compare(tests, leaderboard.against(tests, "ref"), 1000, 0)
    rows = [(run, name, t) for run, c in compared.items() for name, t in c["tests"].items()]
    assert len(rows) == 60
    for run, name, t in rows:
        excludes = t["ci"][0] > 0 or t["ci"][1] < 0
        assert excludes == (t["p"] < 0.05), (run, name, t["ci"], t["p"])
    assert any(t["p"] < 0.05 for *_, t in rows) and any(t["p"] >= 0.05 for *_, t in rows)


def test_delta_is_on_the_same_calibrated_scores_as_the_rows(tmp_path):
    """The rows' AUROCs are on each run's calibrated scores; Δ was on the raw ones. With an isotonic
    map (steps: tied scores) the two differ, and Δ must be the difference of the rows' figures."""
    steps = {"method": "isotonic", "x": [-40.0, -1.0, -0.99, 40.0], "y": [0.2, 0.2, 0.6, 0.6]}
    coarse = {"method": "isotonic", "shared": [], "findings": dict.fromkeys(FINDINGS, steps)}
    runs = {"ref": 0.3, "other": 0.3}
    _board(tmp_path, runs, {r: {} for r in runs}, {}, calibrations={"ref": coarse})
    csv = pd.read_csv(tmp_path / "lb.csv").set_index("run")
    raw = synthetic_predictions(tmp_path / "raw.parquet", 0, 0.3)
    assert judged_on_nih(raw)["mean_auroc"] != pytest.approx(csv.loc["ref", "mean_auroc"], abs=0.01)  # the map matters
    rows_difference = csv.loc["other", "mean_auroc"] - csv.loc["ref", "mean_auroc"]
    assert csv.loc["other", "diff_vs_reference"] == pytest.approx(rows_difference, abs=1e-5)


def test_a_collection_without_labels_has_its_shift_and_no_auroc_on_the_board(tmp_path):
    """An unlabelled collection: no AUROC, no comparison, no fine-tune gain there; its shift (the
    monitor step's domain AUROC and OOD share) in its columns, flagged, and linked."""
    runs = {"ref": 0.3, "tuned": 0.3}
    table = _board(tmp_path, runs, {r: {} for r in runs}, {}, site=runs, starts_from={"tuned": "ref"}, labelled=False)
    assert table.site_mean_auroc.isna().all() and (table.site_domain_auroc == 0.9).all()
    assert table.site_shifted.all() and (table.site_ood_share == 0.25).all()
    assert "site_gain_vs_start" not in table and "nih_gain_vs_start" in table
    html = (tmp_path / "lb.html").read_text()
    assert "no labels: nothing to judge" in html and 'href="ref.site.monitor.html"' in html
