"""Step `monitor`: is a collection like the NIH data a run was trained and validated on? Asked without
labels, so a site can ask it before its labels arrive: its images (headers, views, intensities), the
run's embeddings of them (two-sample tests, a domain classifier), each image's distance from the NIH
training embeddings, the run's predictions, and a label-free estimate of its AUROC per finding (beside
the measured one where the collection is labelled). Every comparison is shown beside the same one
between NIH val and NIH test: the yardstick of what no shift looks like. With study dates, the same
by month."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import metrics, ood, prediction_table, shift
from ..calibration import calibrated
from ..constants import DISCLAIMER, FINDINGS
from ..files import atomic, json_safe, write_json
from ..images import describe
from ..intensity import BINS
from ..report import Figures, templates
from ..settings import MonitorSettings

log = logging.getLogger(__name__)

REFERENCE, VAL, TEST = "train", "val", "test"  # the NIH splits of the run's features


def monitor(
    *,
    predictions,
    nih_predictions,
    calibration,
    features: list,
    nih_features: list,
    ood_reference,
    table,
    nih_table,
    ingest_report,
    monitoring,
    report,
    settings: MonitorSettings,
    run: str,
    dataset: str,
    root: str,
    nih_root: str,
    members: list[str] | None = None,
) -> dict:
    """Run `run` on collection `dataset`: its `predictions` and `features` (the run's, or for an ensemble
    its `members`' embeddings side by side) against its `nih_predictions` and `nih_features`, each
    image's distance from the run's `ood_reference`, the calibrated probabilities from its NIH
    `calibration`; image headers read from a sample of the collection's `table` (under `root`) and of
    NIH's `nih_table` (under `nih_root`). To `monitoring` (JSON) and the HTML `report`."""
    collection = json.loads(Path(ingest_report).read_text())
    fitted = json.loads(Path(calibration).read_text())
    here, nih = ood.joined_features(features), ood.joined_features(nih_features)
    site = calibrated(prediction_table.read(predictions), fitted)
    nih_test = calibrated(prediction_table.read(nih_predictions, TEST), fitted)
    images = pd.read_parquet(table, columns=["image_index", "path", "study_date"])
    site = site.merge(images[["image_index", "study_date"]], on="image_index", how="left")
    at = ood.positions(here["image_index"], site.image_index)
    by_split = {s: _rows(nih, nih["split"] == s) for s in (REFERENCE, VAL, TEST)}
    for name, part in by_split.items():
        if not len(part["image_index"]):
            raise ValueError(f"{nih_features}: no NIH {name} images' features (score the run on NIH first)")
    site_features = _rows(here, at)

    # The run's reference (for an ensemble, fitted on its members' embeddings side by side), the one
    # `cxr14 predict` and the app flag an image with.
    reference = ood.load_reference(ood_reference)
    distance = ood.mahalanobis(reference, site_features["embedding"])
    nih_distance = ood.mahalanobis(reference, by_split[TEST]["embedding"])
    numbers = {
        "run": run,
        "dataset": dataset,
        "members": members,
        "labelled": bool(collection["labelled_findings"]),
        "labelled_findings": collection["labelled_findings"],
        "images": int(len(site)),
        "nih_test_images": int(len(nih_test)),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "images_section": image_section(
            site, nih_test, site_features, by_split, images, nih_table, root, nih_root, settings
        ),
        "features": feature_section(site_features, by_split, settings),
        "ood": {
            "method": "Mahalanobis distance to the NIH training embeddings (Ledoit-Wolf covariance)",
            "reference_images": int(len(by_split[REFERENCE]["image_index"])),
            "quantile": reference["quantile"],  # the one its threshold is (the ood_reference step's)
            "threshold": reference["threshold"],
            "share": float(np.mean(distance > reference["threshold"])),
            "nih_test_share": float(np.mean(nih_distance > reference["threshold"])),
            "median_distance": float(np.median(distance)),
            "nih_test_median_distance": float(np.median(nih_distance)),
        },
        "predictions": prediction_section(site, nih_test, collection["labelled_findings"]),
    }
    estimates = [v["auroc_estimate"] for v in numbers["predictions"].values()]
    numbers["mean_auroc_estimate"] = float(np.nanmean(estimates)) if np.isfinite(estimates).any() else None
    numbers["months"] = months(site, distance > reference["threshold"])
    flags = numbers["features"]
    numbers["shifted"] = bool(flags["mmd"]["p"] < settings.alpha and flags["domain"]["ci"][0] > 0.5)
    numbers["yardstick_shifted"] = bool(flags["nih_val"]["mmd"]["p"] < settings.alpha
                                        and flags["nih_val"]["domain"]["ci"][0] > 0.5)  # fmt: skip
    numbers = json_safe(numbers)
    write_json(numbers, monitoring)
    render(numbers, _drawn(site_features, by_split, distance, nih_distance), report)
    log.info(
        "%s on %s: domain AUROC %.3f (NIH val vs test %.3f), MMD p %.4f, %.1f%% of images past the OOD threshold",
        run, dataset, flags["domain"]["auroc"], flags["nih_val"]["domain"]["auroc"], flags["mmd"]["p"],
        100 * numbers["ood"]["share"],
    )  # fmt: skip
    return numbers


def _rows(features: dict, which) -> dict[str, np.ndarray]:
    return {name: values[which] for name, values in features.items()}


def _sampled(features: dict, size: int, seed: int) -> np.ndarray:
    return features["embedding"][shift.sample(len(features["embedding"]), size, seed)]


def feature_section(site: dict, nih: dict, settings: MonitorSettings) -> dict:
    """The two-sample tests on embeddings: the collection against NIH test, and NIH val against NIH
    test (the yardstick), each on a seeded sample, in the NIH training embeddings' leading principal
    components."""
    project = shift.projection(nih[REFERENCE]["embedding"], settings.dims)
    test = project(_sampled(nih[TEST], settings.sample_images, settings.seed))

    def against_test(features: dict) -> dict:
        other = project(_sampled(features, settings.sample_images, settings.seed + 1))
        return {
            "images": int(len(other)),
            "mmd": shift.mmd_test(test, other, settings.permutations, settings.seed),
            "domain": shift.domain_classifier(test, other, settings.folds, settings.seed, settings.n_boot),
        }

    return {"dims": int(test.shape[1]), "nih_test_images": int(len(test)), **against_test(site),
            "nih_val": against_test(nih[VAL])}  # fmt: skip


def image_section(site, nih_test, site_features, nih, table, nih_table, root, nih_root, settings) -> dict:
    """What the images are: their headers (a sample's), their views, and the intensities the model
    sees, each against NIH's, the intensity distances beside NIH val's from NIH test."""
    nih_images = pd.read_parquet(nih_table, columns=["image_index", "path"])
    return {
        "headers": {
            "collection": headers(table, root, settings),
            "nih": headers(nih_images[nih_images.image_index.isin(nih_test.image_index)], nih_root, settings),
        },
        "views": {"collection": _shares(site.view), "nih_test": _shares(nih_test.view)},
        "intensity": {
            stat: {
                "collection": float(np.mean(site_features[stat])),
                "nih_test": float(np.mean(nih[TEST][stat])),
                "distance": shift.wasserstein(site_features[stat], nih[TEST][stat]),
                "nih_val_distance": shift.wasserstein(nih[VAL][stat], nih[TEST][stat]),
            }
            for stat in ("pixel_mean", "pixel_std")
        },
    }


def headers(table: pd.DataFrame, root, settings: MonitorSettings) -> dict:
    """What a seeded sample of a collection's files say of themselves: counts of kind, size, bit depth
    and photometric interpretation."""
    table = table.sort_values("image_index", ignore_index=True)
    picked = table.path.to_numpy()[shift.sample(len(table), settings.source_images, settings.seed)]
    described = pd.DataFrame([describe(Path(root) / p) for p in picked])
    size = described.width.astype("Int64").astype(str) + "x" + described.height.astype("Int64").astype(str)
    return {
        "files": int(len(described)),
        "kind": _counts(described.kind),
        "size": _counts(size.where(described.width.notna(), "unreadable")),
        "bit_depth": _counts(described.bit_depth.astype("Int64").astype(str)),
        "photometric": _counts(described.photometric.fillna("unreadable")),
    }


def prediction_section(site: pd.DataFrame, nih_test: pd.DataFrame, labelled: list[str]) -> dict:
    """Per finding: the calibrated probabilities on the collection against NIH test (mean: the predicted
    prevalence; the Kolmogorov-Smirnov distance between the two distributions), and the label-free
    AUROC estimate, beside the measured AUROC on a finding the collection labels."""
    from scipy.stats import ks_2samp

    y_nih, p_nih = prediction_table.arrays(nih_test)
    y, p = prediction_table.arrays(site)
    out = {}
    for j, finding in enumerate(FINDINGS):
        entry = {
            "predicted_prevalence": float(p[:, j].mean()),
            "nih_predicted_prevalence": float(p_nih[:, j].mean()),
            "nih_prevalence": float(y_nih[:, j].mean()),
            "ks": float(ks_2samp(p[:, j], p_nih[:, j]).statistic),
            "auroc_estimate": metrics.expected_auroc(p[:, j]),
            "nih_auroc_estimate": metrics.expected_auroc(p_nih[:, j]),
            "nih_auroc": metrics.weighted_auroc(y_nih[:, j], p_nih[:, j]),
        }
        if finding in labelled:
            known = metrics.labelled(y[:, j])
            measured = metrics.weighted_auroc(y[known, j], p[known, j])
            estimate = metrics.expected_auroc(p[known, j])
            entry |= {"labelled": int(known.sum()), "auroc": measured, "auroc_estimate_labelled": estimate,
                      "estimate_error": estimate - measured}  # fmt: skip
        out[finding] = entry
    return out


def months(site: pd.DataFrame, past: np.ndarray) -> list[dict]:
    """The same by study month, where the collection dates its images: images, the share past the OOD
    threshold, each finding's predicted prevalence and the mean label-free AUROC estimate."""
    month = site.study_date.fillna("").str[:7]
    out = []
    for name in sorted(set(month) - {""}):
        rows = (month == name).to_numpy()
        _, p = prediction_table.arrays(site[rows])
        estimates = [metrics.expected_auroc(p[:, j]) for j in range(len(FINDINGS))]
        out.append({
            "month": name,
            "images": int(rows.sum()),
            "ood_share": float(past[rows].mean()),
            "predicted_prevalence": dict(zip(FINDINGS, p.mean(axis=0).tolist())),
            "mean_auroc_estimate": float(np.nanmean(estimates)) if np.isfinite(estimates).any() else None,
        })  # fmt: skip
    if out and (month == "").any():
        out.append(
            {
                "month": "undated",
                "images": int((month == "").sum()),
                "ood_share": float(past[(month == "").to_numpy()].mean()),
            }
        )
    return out


def _shares(values: pd.Series) -> dict[str, float]:
    return {k: float(v) for k, v in values.value_counts(normalize=True).sort_index().items()}


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def _drawn(site: dict, nih: dict, distance: np.ndarray, nih_distance: np.ndarray) -> dict:
    return {"site": site, "nih": nih, "distance": distance, "nih_distance": nih_distance}


def render(m: dict, drawn: dict, out_html) -> Path:
    """The monitoring report: one self-contained HTML page, its figures embedded."""
    import matplotlib.pyplot as plt

    figs = Figures(None)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    centres = (np.arange(BINS) + 0.5) * 256 / BINS
    for label, features in (
        (m["dataset"], drawn["site"]),
        ("NIH test", drawn["nih"][TEST]),
        ("NIH val", drawn["nih"][VAL]),
    ):
        axes[0].plot(centres, features["histogram"].mean(axis=0), label=label)
        axes[1].hist(features["pixel_mean"], bins=30, histtype="step", density=True, label=label)
    axes[0].set(
        title="pixel intensities (mean histogram)", xlabel="pixel value (model input)", ylabel="share of pixels"
    )
    axes[1].set(title="each image's mean intensity", xlabel="mean pixel value", ylabel="density")
    bins = np.histogram_bin_edges(np.r_[drawn["distance"], drawn["nih_distance"]], 40)
    axes[2].hist(drawn["nih_distance"], bins=bins, histtype="step", density=True, label="NIH test")
    axes[2].hist(drawn["distance"], bins=bins, histtype="step", density=True, label=m["dataset"])
    axes[2].axvline(
        m["ood"]["threshold"], color="k", ls="--", lw=1, label=f"NIH val {100 * m['ood']['quantile']:g}th pct"
    )
    axes[2].set(title="distance from the NIH training embeddings", xlabel="Mahalanobis distance", ylabel="density")
    for ax in axes:
        ax.legend(fontsize=7)
    figs.add("shift", fig)
    html = templates().get_template("monitor.html.j2").render(
        title=f"cxr14 monitoring: run {m['run']} on {m['dataset']}", disclaimer=DISCLAIMER, m=m, findings=FINDINGS,
        figs=figs.embedded,
    )  # fmt: skip
    with atomic(out_html) as staged:
        staged.write_text(html)
    return Path(out_html)
