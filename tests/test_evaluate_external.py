"""Step `evaluate` on an external collection: its images take the NIH path's preprocessing and scores,
and the report judges a run on the findings the collection labels, beside its NIH figures."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_ingest import run_ingest, settings

from conftest import EXTERNAL_LABELLED as LABELLED
from conftest import (
    NIH_SAMPLE,
    fixed_points,
    needs_shared,
    plan_one_group,
    settings_of,
    shard_one_group,
    synthetic_external_predictions,
    synthetic_predictions,
)
from cxr14 import metrics, models, paths, prediction_table, shard_io
from cxr14.calibration import apply, apply_one, logit
from cxr14.constants import FINDINGS
from cxr14.engines import KerasEngine
from cxr14.images import write_dicom
from cxr14.prediction_table import EXTERNAL
from cxr14.settings import EvaluateSettings, defaults
from cxr14.shard_io import UNSPLIT
from cxr14.steps import shards
from cxr14.steps.evaluate import evaluate
from cxr14.steps.score import predict, score


@needs_shared
def test_a_collection_holding_nih_pixels_scores_as_the_nih_path(tmp_path):
    """Real NIH test PNGs as an external collection, as PNG, DICOM and inverted MONOCHROME1 DICOM
    copies: ingest, shard and score give the NIH shard path's scores to 1e-6."""
    pngs = sorted(NIH_SAMPLE.glob("*.png"))
    model = tmp_path / "model.keras"
    models.build("small_cnn", 64, "none", dropout=0.0).save(model)
    root = tmp_path / "site"
    rows = ["path,patient_id,sex,age,view,Effusion"]
    for k, png in enumerate(pngs):
        pixels = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        (root / "png").mkdir(parents=True, exist_ok=True)
        (root / "png" / png.name).write_bytes(png.read_bytes())
        (root / "dcm").mkdir(exist_ok=True)
        write_dicom(root / "dcm" / f"{png.stem}.dcm", pixels, bits_stored=8)
        write_dicom(root / "dcm" / f"{png.stem}.m1.dcm", 255 - pixels, monochrome1=True, bits_stored=8)
        for name in (f"png/{png.name}", f"dcm/{png.stem}.dcm", f"dcm/{png.stem}.m1.dcm"):
            rows.append(f"{name},{k},F,50,PA,{k % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    s = settings(format="csv", root=str(root), files=["labels.csv"], images_per_shard=4)
    run_ingest(tmp_path, s, ["labels.csv"])
    plan = tmp_path / "out" / "plan.parquet"
    ingested = tmp_path / "out"
    n = plan_one_group(ingested, plan, images_per_shard=4)
    folder = tmp_path / "out" / "shards" / "64px-raw"
    infos = []
    for i in range(n):
        stem = folder / paths.shard_stem(UNSPLIT, i, n)
        shard_one_group(plan, root, stem, i)
        infos.append(f"{stem}.json")
    shards.shard_manifest(
        infos=infos,
        manifest=folder / "manifest.json",
        bad_images=folder / "bad.tsv",
        group=UNSPLIT,
        image_size=64,
        encoding="raw",
        max_bad_images=0,
    )
    # Deterministic: the same plan and images give the same shard bytes.
    shard_one_group(plan, root, tmp_path / "again")
    first = folder / f"{paths.shard_stem(UNSPLIT, 0, n)}.tfrecord"
    assert (tmp_path / "again.tfrecord").read_bytes() == first.read_bytes()
    score(
        model=model,
        manifests=[folder / "manifest.json"],
        splits=[EXTERNAL],
        predictions=tmp_path / "ext.parquet",
        features=tmp_path / "ext.npz",
        batch_size=4,
        tta=False,
    )
    external = prediction_table.read(tmp_path / "ext.parquet", EXTERNAL).set_index("image_index")
    assert len(external) == 3 * len(pngs)
    assert set(external.y_Effusion) <= {0, 1} and (external.y_Atelectasis == -1).all()

    # The NIH road: the same PNGs through the NIH shard writer and the NIH scorer.
    table = pd.DataFrame({
        "image_index": [p.name for p in pngs], "patient_id": range(len(pngs)), "age_years": 50.0, "sex": "F",
        "view": "PA", "split": "test", "archive": 1, **{f: 0 for f in FINDINGS},
    })  # fmt: skip
    planned = shard_io.plan_table(table, 10, 0)
    planned["file"] = [str(NIH_SAMPLE / name) for name in planned.image_index]
    nih_dir = tmp_path / "nih"
    info = shard_io.write_shard(planned, nih_dir / "test-00000-of-00001.tfrecord", 64, "raw", 0)
    shard_io.write_manifest("test", [info], 64, "raw", nih_dir / "manifest.json", nih_dir / "bad.tsv", 0)
    nih = predict(KerasEngine(model, tta=False), shards_of(nih_dir / "manifest.json"), 4)[0]
    nih = nih.set_index("image_index")
    columns = prediction_table.SCORES
    for png in pngs:
        want = nih.loc[png.name, columns].to_numpy(np.float64)
        for name in (f"png/{png.name}", f"dcm/{png.stem}.dcm", f"dcm/{png.stem}.m1.dcm"):
            np.testing.assert_allclose(external.loc[name, columns].to_numpy(np.float64), want, atol=1e-6)


def shards_of(manifest):
    from cxr14.data import Shards

    return Shards.from_manifest(manifest)


def test_the_external_report_judges_only_what_the_collection_labels(tmp_path):
    synthetic_predictions(tmp_path / "nih.parquet", seed=1, noise=0.2)
    ext = synthetic_external_predictions(tmp_path / "ext.parquet", seed=3, noise=0.25)
    calibration = {
        "method": "platt",
        "shared": [],
        "min_positives": 10,
        "findings": {f: {"method": "platt", "a": 1.2, "b": -0.3} for f in FINDINGS},
    }
    (tmp_path / "calibration.json").write_text(json.dumps(calibration))
    points = fixed_points(0.5)
    points["youden"] = dict.fromkeys(FINDINGS, 0.4)
    (tmp_path / "thresholds.json").write_text(json.dumps(points))
    collection = {
        "name": "site", "format": "csv", "images": len(ext), "patients": int(ext.patient_id.nunique()),
        "labelled_findings": LABELLED, "dropped": {"view not in views": 3}, "views": {"AP": 60, "PA": 60},
        "sex": {"F": 60, "M": 60}, "splits": {"none": 120},
        "policy": {"uncertain": "ignore", "readers": None, "views": ["PA", "AP"],
                   "label_map": {"effusion": "Effusion"}},
    }  # fmt: skip
    out = tmp_path / "report"
    m = _judge(tmp_path, tmp_path / "ext.parquet", collection, recalibrate=0.3, calibration_method="platt")
    assert m == json.loads((out / "metrics.json").read_text())
    assert list(m["findings"]) == LABELLED
    nih = pd.read_parquet(tmp_path / "nih.parquet").query("split == 'test'")
    for f in LABELLED:
        known = ext[f"y_{f}"] >= 0
        assert m["findings"][f]["labelled"] == known.sum()
        assert m["findings"][f]["auroc"] == pytest.approx(roc_auc_score(ext[f"y_{f}"][known], ext[f"p_{f}"][known]))
        nih_auroc = roc_auc_score(nih[f"y_{f}"], nih[f"p_{f}"])
        assert m["findings"][f]["nih_auroc"] == pytest.approx(nih_auroc)
        assert m["findings"][f]["drop"]["diff"] == pytest.approx(nih_auroc - m["findings"][f]["auroc"])
        lo, hi = m["findings"][f]["drop"]["ci"]  # None: a side's positives on under 10 patients (not estimable)
        assert lo is None and m["findings"][f]["drop"]["p"] is None or lo <= m["findings"][f]["drop"]["diff"] <= hi
        # The NIH operating point, on the calibrated probabilities of the labelled images.
        p = apply_one(calibration["findings"][f], logit(ext[f"p_{f}"][known]))
        want = metrics.at_threshold(ext[f"y_{f}"][known].to_numpy(), p, 0.5)
        got = m["findings"][f]["operating_points"]["max_f1"]
        assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (want["tp"], want["fp"], want["fn"], want["tn"])
        assert got["npv"] == pytest.approx(want["tn"] / (want["tn"] + want["fn"]))
        cal = m["findings"][f]["calibration"]
        assert cal["in_the_large"] == pytest.approx(cal["mean_predicted"] - cal["observed"])
        # The label-free estimate, from the same calibrated probabilities, beside the measured AUROC.
        assert m["findings"][f]["auroc_estimate"] == pytest.approx(metrics.expected_auroc(p))
        assert m["findings"][f]["auroc_estimate_error"] == pytest.approx(
            m["findings"][f]["auroc_estimate"] - m["findings"][f]["auroc"]
        )
    assert m["mean_auroc"] == pytest.approx(np.mean([m["findings"][f]["auroc"] for f in LABELLED]))
    r = m["recalibration"]
    assert r["fit_images"] + r["report_images"] == len(ext) and r["fit_patients"] == round(0.3 * 60)
    assert (
        set(r["findings"]["Effusion"]) == {"method", "note", "nih", "site"}
        and "30% of the collection" in r["fitted_on"]
    )
    assert set(m["subgroups"]) == {"sex", "age", "view"}
    assert {"F", "M"} == set(m["subgroups"]["sex"]["groups"])
    html = (out / "report.html").read_text()
    assert "label-free estimate" in html and "assumes the calibration holds" in html
    for anchor in (
        "summary",
        "collection",
        "auroc",
        "calibration",
        "operating-points",
        "site-calibration",
        "subgroups",
    ):
        assert f'id="{anchor}"' in html
    assert "not labelled, so not scored: Infiltration" in html and "research tool" in html
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "auroc.png", "calibration.png", "prevalence.png", "subgroups.png"
    ]  # fmt: skip
    assert 'href="monitor.html"' in html and m["split"] == "every image" and m["members"] is None
    assert "overflow-x: auto" in html  # a wide table scrolls inside the page


def test_a_split_collection_is_reported_with_its_own_calibration_and_operating_points_beside_nihs(tmp_path):
    """A split collection is a site: the calibrate step fits the run's calibration and operating points
    on its val split, and the report shows its test split under NIH's and under the site's, side by
    side; where the collection's scores run higher than NIH's, the site's calibration is the better."""
    from cxr14.settings import defaults
    from cxr14.steps.calibrate import calibrate

    synthetic_predictions(tmp_path / "nih.parquet", seed=1, noise=0.2)
    val = synthetic_external_predictions(tmp_path / "val.parquet", seed=4, noise=0.25).assign(split="val")
    test = synthetic_external_predictions(tmp_path / "test.parquet", seed=5, noise=0.25)
    val["image_index"] = "val/" + val.image_index
    site_scores = pd.concat([val, test], ignore_index=True)
    site_scores.to_parquet(tmp_path / "site.parquet", index=False)
    shifted = {"method": "temperature", "offset": -1.5, "temperature": 1.0}  # NIH's map: the site's scores run higher
    nih_cal = {"site": "nih", "method": "temperature", "shared": [], "min_positives": 5,
               "findings": dict.fromkeys(FINDINGS, shifted)}  # fmt: skip
    (tmp_path / "calibration.json").write_text(json.dumps(nih_cal))
    (tmp_path / "thresholds.json").write_text(json.dumps(fixed_points(0.5)))
    pd.DataFrame({"split": "train", **{f: [0, 1] for f in FINDINGS}}).to_parquet(tmp_path / "images.parquet")
    own = tmp_path / "own"
    calibrate(predictions=tmp_path / "site.parquet", table=tmp_path / "images.parquet", summary=None,
              calibration=own / "calibration.json", thresholds=own / "thresholds.json", site="site",
              method="temperature", min_positives=5, tta=False, targets=defaults("operating_points"))  # fmt: skip
    collection = {
        "name": "site", "format": "chexpert", "images": 240, "patients": 120, "labelled_findings": LABELLED,
        "dropped": {}, "views": {"AP": 120, "PA": 120}, "sex": {"F": 120, "M": 120},
        "splits": {"val": 120, "test": 120}, "labels_by": {"labeller": 200, "radiologists": 40},
        "policy": {"uncertain": "ignore", "unmentioned": "negative", "readers": None, "views": ["PA", "AP"],
                   "split": {"val": 0.5, "test": 0.5}, "label_map": {"Effusion": "Effusion"}},
    }  # fmt: skip
    out = tmp_path / "report"
    m = _judge(tmp_path, tmp_path / "site.parquet", collection,
               site_calibration=own / "calibration.json", site_thresholds=own / "thresholds.json")  # fmt: skip
    assert m["images"] == len(test)  # judged on the test split only; val fitted the site's calibration
    r = m["recalibration"]
    assert r["fitted_on"] == "site val" and r["thresholds_chosen_on"] == "site val" and r["report_images"] == len(test)
    assert r["mean"]["site"]["ece"]["mean"] < r["mean"]["nih"]["ece"]["mean"]
    site_cal = json.loads((own / "calibration.json").read_text())
    site_points = json.loads((own / "thresholds.json").read_text())
    for f in LABELLED:
        known = (test[f"y_{f}"] >= 0).to_numpy()
        y = test[f"y_{f}"].to_numpy()[known]
        shown = apply(site_cal, logit(test[[f"p_{g}" for g in FINDINGS]].to_numpy()))[known, FINDINGS.index(f)]
        for rule in ("max_f1", "youden", "sensitivity", "specificity"):
            want = metrics.at_threshold(y, shown, site_points[rule][f])
            got = r["findings"][f]["operating_points"][rule]
            assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (want["tp"], want["fp"], want["fn"], want["tn"])
            assert got["specificity_ci"][0] <= got["specificity"] <= got["specificity_ci"][1]
        assert r["findings"][f]["site"]["ece"] == pytest.approx(metrics.reliability(y, shown)["ece"])
    html = (out / "report.html").read_text()
    assert 'id="site-calibration"' in html and "cxr14 predict --site site" in html
    assert "NIH-fitted and site-fitted side by side" in html and "The site's operating points" in html
    # The labellers' conventions, stated: what the labeller left unmentioned, and who labelled.
    assert "found unmentioned: <b>negative</b>" in html and "200 images labeller, 40 images radiologists" in html


def _judge(tmp_path, predictions, collection: dict, **given) -> dict:
    """The evaluate step of run `cnn` on collection `site` (its `predictions`, described by `collection`)
    beside tmp_path's nih.parquet, calibration.json and thresholds.json, into tmp_path/report; `given`:
    the site's own calibration and operating points, or a local recalibration's settings. The inputs are
    those of every collection's job: NIH's files, every site's calibration, the collection's table."""
    (tmp_path / "ingest.json").write_text(json.dumps(collection))
    scored = pd.read_parquet(predictions)
    table = scored[["image_index", "patient_id", "age_years", "sex", "view", "split"]].assign(
        split=scored.split.replace({EXTERNAL: "none"}),
        **{f: scored[f"y_{f}"] for f in FINDINGS},
    )
    table.to_parquet(tmp_path / "table.parquet")
    out = tmp_path / "report"
    own = [given.pop(key) for key in ("site_calibration", "site_thresholds") if key in given]
    settings = {"recalibrate": 0, "seed": 0, "calibration_method": "temperature", "min_positives": 5,
                "prior_sd": defaults("calibration")["prior_sd"], **given}  # fmt: skip
    return evaluate(
        predictions=predictions, nih_predictions=tmp_path / "nih.parquet",
        calibrations=[tmp_path / "calibration.json", *own[:1]],
        operating_points=[tmp_path / "thresholds.json", *own[1:]],
        table=tmp_path / "table.parquet", collection=tmp_path / "ingest.json",
        evaluation=out / "metrics.json", report=out / "report.html", figures=out / "figures",
        settings=settings_of(EvaluateSettings, n_boot=50, seed=0, gallery_k=0, batch_size=8, tta=False),
        run="cnn", dataset="site", members=None, pages={"monitor.html": "The monitoring report"},
        model_card=tmp_path / "model_card.html", **settings,
    )  # fmt: skip
