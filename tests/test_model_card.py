"""Step `model_card` (cxr14/model_card.py): a run's card from the files the workflow wrote, with the
sections of Mitchell et al. 2019, its numbers those of the evaluations, in Markdown and HTML."""

import json

import yaml

from conftest import fixed_points, judged_on_nih, synthetic_predictions
from cxr14.steps import model_card


def _inputs(tmp_path, trained=True):
    pred = synthetic_predictions(tmp_path / "pred.parquet", 0, 0.3)
    m = judged_on_nih(pred, members=None if trained else ["a", "b"])
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    chosen = fixed_points(0.3)
    chosen["max_f1"]["Mass"] = 0.42
    (tmp_path / "thresholds.json").write_text(json.dumps(chosen))
    (tmp_path / "site_thresholds.json").write_text(json.dumps(fixed_points(0.6, "site")))
    (tmp_path / "calibration.json").write_text(
        json.dumps({"site": "nih", "method": "temperature", "val_images": 40, "shared": ["Hernia"]})
    )
    (tmp_path / "site_calibration.json").write_text(
        json.dumps({"site": "site", "method": "temperature", "val_images": 25, "shared": []})
    )
    summary = {
        "backbone": "small_cnn", "image_size": 32, "trained_on": ["nih", "site"], "train_images": 300, "val_images": 60,
        "data": {"train": ["a" * 64, "b" * 64], "val": ["c" * 64]}, "init": {"model_sha256": "d" * 64},
        "epochs_run": 5, "best_epoch": 4, "best_val_mean_auroc": 0.91, "tensorflow": "2.21.0", "keras": "3.15.1",
        "config": {"freeze_epochs": 1, "loss": "weighted_bce", "learning_rate": 0.0005, "batch_size": 16, "seed": 7},
        "device": {"gpus": 0}, "model_sha256": "e" * 64,
    }  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    site = {"images": 90, "labelled_findings": ["Effusion", "Pneumothorax"], "mean_auroc": 0.81,
            "mean_auroc_ci": [0.75, 0.86], "nih": {"mean_auroc": 0.97},
            "drop": {"diff": 0.16, "ci": [0.1, 0.22]},
            "recalibration": {"mean": {"nih": {"ece": {"mean": 0.21}}, "site": {"ece": {"mean": 0.04}}}}}  # fmt: skip
    (tmp_path / "site.json").write_text(json.dumps(site))
    return m, {
        "evaluation": tmp_path / "metrics.json",
        "calibrations": [tmp_path / "calibration.json", tmp_path / "site_calibration.json"],
        "thresholds": [tmp_path / "thresholds.json", tmp_path / "site_thresholds.json"],
        "summary": tmp_path / "summary.json" if trained else None,
        "external_evaluations": {"site": {"tuned": tmp_path / "site.json"}},
        "card": tmp_path / "model_card.md",
        "html": tmp_path / "model_card.html",
    }


def test_a_fine_tunes_card_has_every_section_and_the_evaluations_numbers(tmp_path):
    m, files = _inputs(tmp_path)
    config = {"runs": {"base": {"train": {"seed": 7}}, "tuned": {"train": {"init": "base", "data": ["nih", "site"]}}}}
    text = model_card.model_card(**files, run="tuned", config=config, starts_from="base")
    for section in ("Model details", "Intended use", "Out-of-scope use", "Factors", "Metrics", "Calibration",
                    "Operating points", "Caveats and recommendations", "How to reproduce"):  # fmt: skip
        assert f"\n## {section}\n" in text, section
    assert "not a medical device" in text and "Fine-tuned from** run `base`" in text
    assert f"mean AUROC\n**{m['mean_auroc']:.3f}**" in text
    mass = m["findings"]["Mass"]
    low, high = mass["auroc_ci"]
    assert f"| Mass | {mass['auroc']:.3f} ({low:.3f}–{high:.3f}) | {mass['auprc']:.3f} |" in text
    assert "| site | 90 | Effusion, Pneumothorax | 0.810 (0.750–0.860) | 0.970 | 0.160 (0.100–0.220) |" in text
    assert f"`{model_card.data_hash(json.loads(files['summary'].read_text()))[:16]}`" in text
    assert "| sex | F |" in text and "| view | PA |" in text and "Hernia had too few val" in text
    assert "| Mass | 0.420 |" in text  # the NIH max-F1 operating point
    # Per site, what `cxr14 predict --site` uses: its calibration and its four operating points.
    assert "### Site `nih` (default)" in text and "### Site `site`" in text
    assert "On its test split: mean ECE 0.040 with this calibration, 0.210 with NIH's." in text
    assert "| Mass | 0.600 | 0.600 | 0.600 | 0.600 |" in text and "| Mass | 0.420 | 0.300 | 0.300 | 0.300 |" in text
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == config  # the reproducing config, as YAML a user can paste
    html = files["html"].read_text()
    assert "<h2>Model details</h2>" in html and "<table>" in html and "not a medical device" in html


def test_an_ensembles_card_names_its_members(tmp_path):
    _, files = _inputs(tmp_path, trained=False)
    text = model_card.model_card(**files, run="tuned", config={"runs": {}}, starts_from=None)
    assert "**Ensemble** of the trained runs a, b" in text and "Fine-tuned" not in text
