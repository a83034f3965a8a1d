"""Step `model_card` (cxr14/model_card.py): a run's card from the files the workflow wrote, with the
sections of Mitchell et al. 2019, its numbers those of the evaluations, in Markdown and HTML."""

import json

import yaml

from conftest import synthetic_predictions
from cxr14.assess import assess
from cxr14.constants import FINDINGS
from cxr14.steps import model_card


def _inputs(tmp_path, trained=True):
    pred = synthetic_predictions(tmp_path / "pred.parquet", 0, 0.3)
    m = assess(pred, calibration=None, expert_csv=None, n_boot=20, seed=0)["metrics"]
    m["model"] = {"backbone": "small_cnn", "image_size": 32} if trained else {"members": ["a", "b"]}
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    chosen = {rule: {f: m["thresholds"][f][rule] for f in FINDINGS} for rule in ("max_f1", "youden")}
    (tmp_path / "thresholds.json").write_text(json.dumps(chosen))
    (tmp_path / "calibration.json").write_text(
        json.dumps({"method": "temperature", "val_images": 40, "shared": ["Hernia"]})
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
            "drop": {"diff": 0.16, "ci": [0.1, 0.22]}}  # fmt: skip
    (tmp_path / "site.json").write_text(json.dumps(site))
    return m, {
        "evaluation": tmp_path / "metrics.json",
        "thresholds": tmp_path / "thresholds.json",
        "calibration": tmp_path / "calibration.json",
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
    assert f"| Mass | {m['auroc']['Mass']:.3f} ({m['auroc_ci']['Mass'][0]:.3f}–{m['auroc_ci']['Mass'][1]:.3f})" in text
    assert "| site | 90 | Effusion, Pneumothorax | 0.810 (0.750–0.860) | 0.970 | 0.160 (0.100–0.220) |" in text
    assert f"`{model_card.data_hash(json.loads(files['summary'].read_text()))[:16]}`" in text
    assert "| sex | F |" in text and "| view | PA |" in text and "Hernia had too few val" in text
    assert f"| Mass | {json.loads(files['thresholds'].read_text())['max_f1']['Mass']:.3f} |" in text
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == config  # the reproducing config, as YAML a user can paste
    html = files["html"].read_text()
    assert "<h2>Model details</h2>" in html and "<table>" in html and "not a medical device" in html


def test_an_ensembles_card_names_its_members(tmp_path):
    _, files = _inputs(tmp_path, trained=False)
    text = model_card.model_card(**files, run="tuned", config={"runs": {}}, starts_from=None)
    assert "**Ensemble** of the trained runs a, b" in text and "Fine-tuned" not in text
