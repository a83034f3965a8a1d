"""Step `leaderboard` (cxr14/leaderboard.py): rows, paired comparisons, seed spread and the page."""

import json
import re

import numpy as np
import pandas as pd
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
    tmp_path, runs: dict, settings: dict, groups: dict, site: dict | None = None, starts_from=None, labelled=True
):
    """The leaderboard of runs {name: noise of its synthetic predictions}, the first the reference;
    `site`: {name: noise} of each run's predictions on an external collection "site" (without labels
    unless `labelled`); `starts_from`: the fine-tunes' starting runs."""
    paths, external = {}, {key: {} for key in ("external_evaluations", "external_predictions", "external_reports",
                                               "monitors", "monitor_reports")}  # fmt: skip
    for k, (run, noise) in enumerate(runs.items()):
        pred = synthetic_predictions(tmp_path / f"{run}.parquet", k, noise)
        m = judged_on_nih(pred)
        (tmp_path / f"{run}.json").write_text(json.dumps(m))
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
        n_boot=200,
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


def test_a_cell_is_coloured_by_the_holm_adjusted_decision_and_never_by_the_unadjusted_ci(tmp_path):
    """The page's one verdict per comparison: a cell is green or red exactly where the Holm-adjusted p
    (over every test on the page) is below 0.05, whatever the unadjusted CI beside it says; with the
    Wald p on the bootstrap SE, a clear difference survives Holm even at 200 replicates and 30 tests
    (a percentile p floored at 1/200 could not: 30 x 0.005 = 0.15)."""
    _board(tmp_path, {"ref": 0.35, "clear": 0.15, "close": 0.33}, {r: {} for r in ("ref", "clear", "close")}, {})
    csv = pd.read_csv(tmp_path / "lb.csv").set_index("run")
    html = (tmp_path / "lb.html").read_text()
    for run in ("clear", "close"):
        row = html.split(f'id="run-{run}"', 1)[1].split("</tr>", 1)[0]
        decided = csv.loc[run, "p_holm"] < 0.05
        assert ('class="better"' in row or 'class="worse"' in row) == decided, (run, csv.loc[run, "p_holm"])
    assert csv.loc["clear", "p_holm"] < 0.05 and csv.loc["clear", "diff_ci_low"] > 0
    # In the per-finding tables too: every coloured cell has its adjusted p below 0.05, and some cell whose
    # unadjusted CI excludes 0 stays uncoloured (the multiplicity the CI does not account for).
    cells = re.findall(r'<td data-sort="[^"]*"( class="(?:better|worse)")?>[^<]*</td><td>([^<]*)</td>\s*'
                       r'<td data-sort="[^"]*">[^<]*</td><td data-sort="([^"]*)">',
                       html.split('id="comparisons"', 1)[1])  # fmt: skip
    assert cells, "no per-finding comparison rows found"
    for coloured, ci, p_holm in cells:
        assert bool(coloured) == (float(p_holm) < 0.05), (coloured, ci, p_holm)
    assert any(
        not coloured and (float(ci.split("–")[0]) > 0 or float(ci.split("–")[1]) < 0) for coloured, ci, _ in cells
    )


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
