"""The leaderboard's statistics (paired bootstrap, DeLong, Holm), the ensemble step and the page."""

import json

import numpy as np
import pandas as pd
import pytest

from cxr14 import evaluate, leaderboard, metrics
from cxr14.constants import FINDINGS


def _delong_by_definition(y, a, b):
    """DeLong's variance from its O(m*n) definition (the placement values), for the fast form to match."""
    y = np.asarray(y).astype(bool)
    comps = []
    for s in (a, b):
        pos, neg = s[y], s[~y]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = comps
    s10, s01 = np.cov(np.vstack([v10a, v10b])), np.cov(np.vstack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / y.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / (~y).sum()
    return auc_a - auc_b, (auc_a - auc_b) / np.sqrt(var)


def test_delong_matches_its_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.3
    a = np.round(y + rng.normal(0, 1.0, 300), 1)   # rounding makes ties
    b = np.round(y + rng.normal(0, 1.4, 300), 1)
    diff, z = _delong_by_definition(y, a, b)
    got = metrics.delong(y, a, b)
    assert got["diff"] == pytest.approx(diff) and got["z"] == pytest.approx(z)
    assert 0 < got["p"] < 1


def test_paired_bootstrap_agrees_with_delong_and_is_paired():
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random(n) < 0.3)[:, None]
    a = y + rng.normal(0, 0.8, (n, 1))
    b = y + rng.normal(0, 2.5, (n, 1))
    boot = metrics.paired_bootstrap(y, a, b, np.arange(n) // 2, n_boot=1000, seed=0)
    dl = metrics.delong(y[:, 0], a[:, 0], b[:, 0])
    assert boot["mean"]["diff"] == pytest.approx(dl["diff"])
    assert boot["mean"]["ci"][0] > 0 and boot["mean"]["p"] < 0.05 and dl["p"] < 0.05
    # A run against itself: the paired differences are exactly 0 in every replicate.
    same = metrics.paired_bootstrap(y, a, a, np.arange(n), n_boot=100, seed=0)
    assert same["mean"]["diff"] == 0 and same["mean"]["ci"] == [0, 0] and same["mean"]["p"] == 1.0


def test_holm_by_hand():
    assert metrics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = metrics.holm([0.2, float("nan")])
    assert out[0] == pytest.approx(0.2) and np.isnan(out[1])


def _predictions(path, seed, noise, images=80):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"image_index": [f"{k:08d}_000.png" for k in range(images)],
                          "patient_id": np.arange(images) // 2, "age_years": 50.0, "sex": "F", "view": "PA",
                          "split": ["val", "test"] * (images // 2)})
    truth = np.random.default_rng(99).random((images, len(FINDINGS))) < 0.3
    for j, f in enumerate(FINDINGS):
        frame[f"y_{f}"] = truth[:, j].astype(np.int8)
        frame[f"p_{f}"] = np.clip(truth[:, j] * 0.5 + rng.normal(0.25, noise, images), 0, 1).astype(np.float32)
    frame.to_parquet(path, index=False)
    return frame


def test_ensemble_is_the_weighted_mean_and_refuses_other_images(tmp_path):
    a, b = _predictions(tmp_path / "a.parquet", 1, 0.2), _predictions(tmp_path / "b.parquet", 2, 0.3)
    evaluate.ensemble(members=[tmp_path / "a.parquet", tmp_path / "b.parquet"], predictions=tmp_path / "e.parquet",
                      names=["a", "b"], weights=[3.0, 1.0])
    out = pd.read_parquet(tmp_path / "e.parquet").set_index("image_index").loc[a.image_index]
    np.testing.assert_allclose(out["p_Mass"], (3 * a.p_Mass + b.p_Mass) / 4, rtol=1e-6)
    assert (out["y_Mass"].to_numpy() == a.y_Mass.to_numpy()).all()
    _predictions(tmp_path / "c.parquet", 3, 0.2, images=60)
    with pytest.raises(ValueError, match="ensemble members a and c were scored on different images"):
        evaluate.ensemble(members=[tmp_path / "a.parquet", tmp_path / "c.parquet"], predictions=tmp_path / "x.parquet",
                          names=["a", "c"], weights=[])
    assert not (tmp_path / "x.parquet").exists()


def _board(tmp_path, runs: dict, settings: dict, groups: dict) -> pd.DataFrame:
    """The leaderboard of runs {name: noise of its synthetic predictions}, the first the reference."""
    from cxr14.evaluate import assess

    paths = {}
    for k, (run, noise) in enumerate(runs.items()):
        pred = _predictions(tmp_path / f"{run}.parquet", k, noise)
        m = assess(pred, None, None, members=["x", "y"], calibration=None, boxes_csv=None, expert_csv=None, n_boot=20, seed=0,
                   gallery_k=0, batch_size=8)["metrics"]
        m["model"] = {"backbone": "small_cnn", "image_size": 32}
        (tmp_path / f"{run}.json").write_text(json.dumps(m))
        (tmp_path / f"{run}.summary.json").write_text(json.dumps(
            {"seconds_this_run": 10.0, "epochs_run": 3, "epochs_this_run": 3, "train_images": 100}))
        paths[run] = tmp_path / f"{run}.html"
        paths[run].write_text("report")
    return leaderboard.leaderboard(
        metrics=[tmp_path / f"{r}.json" for r in runs], predictions=[tmp_path / f"{r}.parquet" for r in runs],
        summaries=[tmp_path / f"{r}.summary.json" for r in runs], reports=list(paths.values()),
        csv=tmp_path / "lb.csv", html=tmp_path / "lb.html", runs=list(runs), trained=list(runs),
        groups=groups, settings=settings, reference=next(iter(runs)), n_boot=200, seed=0)


def test_a_leaderboard_of_one_run_has_no_comparisons(tmp_path):
    table = _board(tmp_path, {"ref": 0.3}, {"ref": {}}, {})
    assert len(table) == 1 and table.diff_vs_reference.isna().all()
    assert "ref" in (tmp_path / "lb.html").read_text()


def test_leaderboard_rows_comparisons_and_spread(tmp_path):
    settings = {"ref": {"train.learning_rate": 0.001}, "s1": {"train.learning_rate": 0.01},
                "s2": {"train.learning_rate": 0.01}}
    table = _board(tmp_path, {"ref": 0.35, "s1": 0.2, "s2": 0.22}, settings, {"s": ["s1", "s2"]})
    csv = pd.read_csv(tmp_path / "lb.csv")
    assert list(csv.run) == ["ref", "s1", "s2"] and csv.loc[1, "differs_from_reference"] == "train.learning_rate=0.01"
    assert csv.loc[1, "diff_vs_reference"] > 0 and csv.loc[1, "diff_ci_low"] > 0  # less noise ranks better
    assert csv.loc[0, "report"] == "ref.html" and csv.loc[0, "images_per_second"] == 30.0
    assert {"auroc_Mass", "auprc_Mass", "ece_Mass", "p_holm"} <= set(csv.columns)
    html = (tmp_path / "lb.html").read_text()
    assert "30</b> comparisons" in html and "s1 − ref" in html and "not medical advice" in html
    assert "table.sortable" in html and 'href="ref.html"' in html and "± " in html
    assert table.loc[1, "p_holm"] >= table.loc[1, "p_bootstrap"]
