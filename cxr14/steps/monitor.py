"""Step `monitor`: is a collection like the NIH data a run was calibrated on? Asked without labels, so a
site can ask it before its labels arrive: its images (headers, views, intensities), the run's
embeddings of them (two-sample tests, a domain classifier), its calibrated predictions (per-finding KS
tests), each image's distance from the run's training embeddings, and a label-free estimate of its
AUROC per finding where that can hold (beside the measured one where the collection is labelled). The
reference is NIH val, the split the run's NIH calibration was fitted on; every comparison is shown
beside the same one between two patient-disjoint halves of NIH val (the yardstick: what no shift looks
like) and between NIH val and NIH test (a known shift: the official test split is enriched, with more
AP views, follow-ups and Pneumothorax; the positive control). With study dates, the same by month.
Every test draws, permutes, folds and resamples whole patients (`shift`)."""

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
# A quantile is said to rest on few images when fewer than this many of the images it was fitted on
# lie past it: its relative error is then about one over the square root of that count, or worse.
MIN_TAIL_IMAGES = 10
NOT_ESTIMABLE = (
    "not estimable: the collection is flagged as shifted and has no calibration of its own, and the estimate "
    "holds only where the calibration does"
)


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
    site_calibration=None,
    members: list[str] | None = None,
    synthetic: bool = False,
) -> dict:
    """Run `run` on collection `dataset`: its `predictions` and `features` (the run's, or for an ensemble
    its `members`' embeddings side by side) against NIH val's in its `nih_predictions` and
    `nih_features` (NIH test beside them), each image's distance from the run's `ood_reference`, the
    probabilities calibrated with its NIH `calibration` (and the collection's own, `site_calibration`,
    where it is a site); image headers read from a sample of the collection's `table` (under `root`)
    and of NIH's `nih_table` (under `nih_root`). A split collection is watched on its test split (the
    images its own calibration was not fitted on). To `monitoring` (JSON) and the HTML `report`, which
    says so at the top when the data are the demo's phantom images (`synthetic`)."""
    collection = json.loads(Path(ingest_report).read_text())
    fitted = json.loads(Path(calibration).read_text())
    here, nih = ood.joined_features(features), ood.joined_features(nih_features)
    site = calibrated(prediction_table.read(predictions, prediction_table.EXTERNAL), fitted)
    nih_tables = {s: calibrated(prediction_table.read(nih_predictions, s), fitted) for s in (VAL, TEST)}
    images = pd.read_parquet(table, columns=["image_index", "path", "study_date"])
    site = site.merge(images[["image_index", "study_date"]], on="image_index", how="left")
    sides = {dataset: _side(here, prediction_table.EXTERNAL, site)}
    sides |= {s: _side(nih, s, nih_tables[s]) for s in (VAL, TEST)}
    training = _rows(nih, nih["split"] == REFERENCE)["embedding"]
    if not len(training):
        raise ValueError(f"{nih_features}: no NIH train images' features (score the run on NIH first)")

    # The run's reference (for an ensemble, fitted on its members' embeddings side by side), the one
    # `cxr14 predict` and the app flag an image with.
    reference = ood.load_reference(ood_reference)
    distance = ood.mahalanobis(reference, sides[dataset]["embedding"])
    nih_distance = {s: ood.mahalanobis(reference, sides[s]["embedding"]) for s in (VAL, TEST)}
    features = feature_section(sides, dataset, training, settings)
    numbers = {
        "run": run,
        "dataset": dataset,
        "members": members,
        "synthetic": synthetic,
        "labelled": bool(collection["labelled_findings"]),
        "labelled_findings": collection["labelled_findings"],
        "images": int(len(site)),
        "patients": int(site.patient_id.nunique()),
        "nih_val_images": int(len(nih_tables[VAL])),
        "nih_test_images": int(len(nih_tables[TEST])),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "images_section": image_section(sides, dataset, images, nih_table, root, nih_root, settings),
        "features": features,
        "ood": ood_section(reference, distance, nih_distance[TEST]),
        "shifted": features["shifted"],
        "yardstick_shifted": features["yardstick"]["shifted"],
        "nih_test_shifted": features["nih_test"]["shifted"],
    }
    own = calibrated(site, json.loads(Path(site_calibration).read_text())) if site_calibration else None
    numbers["auroc_estimate"] = estimate_basis(own is not None, numbers["shifted"])
    estimated = {"site": own, "nih": site, None: None}[numbers["auroc_estimate"]["calibration"]]
    numbers["predictions"] = prediction_section(site, estimated, nih_tables, features, collection["labelled_findings"])
    estimates = [v["auroc_estimate"] for v in numbers["predictions"].values() if v["auroc_estimate"] is not None]
    numbers["mean_auroc_estimate"] = float(np.nanmean(estimates)) if np.isfinite(estimates).any() else None
    numbers["months"] = months(site, estimated, distance > reference["threshold"])
    numbers = json_safe(numbers)
    write_json(numbers, monitoring)
    render(numbers, _drawn(sides, dataset, distance, nih_distance), report)
    log.info(
        "%s on %s: domain AUROC %.3f (yardstick %.3f, NIH test %.3f), MMD p %.4f, KS p %.4f, %.1f%% past the OOD "
        "threshold (yardstick %.1f%%)",
        run, dataset, features["domain"]["auroc"], features["yardstick"]["domain"]["auroc"],
        features["nih_test"]["domain"]["auroc"], features["mmd"]["p"], features["ks"]["p_bonferroni"],
        100 * numbers["ood"]["share"], 100 * numbers["ood"]["yardstick_share"],
    )  # fmt: skip
    return numbers


def _rows(features: dict, which) -> dict[str, np.ndarray]:
    return {name: values[which] for name, values in features.items()}


def _side(features: dict, split: str, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The features of `table`'s images (split `split` of the features), row for row, with each
    image's patient and calibrated probabilities."""
    rows = _rows(features, features["split"] == split)
    rows = _rows(rows, ood.positions(rows["image_index"], table.image_index))
    return rows | {
        "patients": table.patient_id.astype(str).to_numpy(),
        "probabilities": prediction_table.arrays(table)[1],
        "view": table.view.to_numpy(),
    }


def feature_section(sides: dict, dataset: str, training: np.ndarray, settings: MonitorSettings) -> dict:
    """The two-sample tests (`shift.compare`: embeddings in the run's NIH training embeddings' leading
    principal components, and calibrated probabilities): NIH val against the collection (its numbers
    at the top level), against its own other patient half (`yardstick`), and against NIH test
    (`nih_test`, a known shift)."""
    project = shift.projection(training, settings.dims)
    sides = {name: side | {"projected": project(side["embedding"])} for name, side in sides.items()}
    half = shift.patient_halves(sides[VAL]["patients"], settings.seed)

    def against(x: dict, y: dict) -> dict:
        return shift.compare(
            x["projected"], y["projected"], x["patients"], y["patients"], p_x=x["probabilities"],
            p_y=y["probabilities"], sample_images=settings.sample_images, permutations=settings.permutations,
            folds=settings.folds, n_boot=settings.n_boot, seed=settings.seed, alpha=settings.alpha,
        )  # fmt: skip

    val = sides[VAL]
    return {
        "dims": int(val["projected"].shape[1]),
        "reference": "NIH val",
        **against(val, sides[dataset]),
        "yardstick": against(_rows(val, half), _rows(val, ~half))
        | {"construction": "two patient-disjoint halves of NIH val (a seeded half of its patients each)"},
        "nih_test": against(val, sides[TEST]),
    }


def image_section(sides: dict, dataset: str, table, nih_table, root, nih_root, settings) -> dict:
    """What the images are: their headers (a sample's), their views, and the intensities the model
    sees, each against NIH val's, beside the same between NIH val's two patient halves (the
    yardstick) and NIH test's distance from NIH val (a known shift)."""
    nih_images = pd.read_parquet(nih_table, columns=["image_index", "path"])
    val = sides[VAL]
    half = shift.patient_halves(val["patients"], settings.seed)
    return {
        "headers": {
            "collection": headers(table, root, settings),
            "nih": headers(nih_images[nih_images.image_index.isin(val["image_index"])], nih_root, settings),
        },
        "views": {
            "collection": _shares(sides[dataset]["view"]),
            "nih_val": _shares(val["view"]),
            "nih_test": _shares(sides[TEST]["view"]),
        },
        "intensity": {
            stat: {
                "collection": float(np.mean(sides[dataset][stat])),
                "nih_val": float(np.mean(val[stat])),
                "distance": shift.wasserstein(sides[dataset][stat], val[stat]),
                "yardstick_distance": shift.wasserstein(val[stat][half], val[stat][~half]),
                "nih_test_distance": shift.wasserstein(sides[TEST][stat], val[stat]),
            }
            for stat in ("pixel_mean", "pixel_std")
        },
    }


def ood_section(reference: dict, distance: np.ndarray, nih_test_distance: np.ndarray) -> dict:
    """The share of the collection's images past the run's out-of-distribution threshold, beside the
    yardstick (the share of the held-out patient half of the val images the threshold was not fitted
    on) and NIH test's; what the reference and its threshold rest on."""
    tail = reference["threshold_images"] * (1 - reference["quantile"])
    return {
        "method": "Mahalanobis distance to the run's training embeddings (Ledoit-Wolf covariance)",
        "training_data": reference["training_data"],
        "reference_images": reference["training_images"],
        "quantile": reference["quantile"],  # the one its threshold is (the ood_reference step's)
        "threshold": reference["threshold"],
        "threshold_images": reference["threshold_images"],
        "few_threshold_images": bool(tail < MIN_TAIL_IMAGES),
        "share": float(np.mean(distance > reference["threshold"])),
        "yardstick_share": reference["heldout_share"],
        "yardstick_images": reference["heldout_images"],
        "nih_test_share": float(np.mean(nih_test_distance > reference["threshold"])),
        "median_distance": float(np.median(distance)),
        "nih_test_median_distance": float(np.median(nih_test_distance)),
    }


def estimate_basis(own_calibration: bool, shifted: bool) -> dict:
    """Which calibration the label-free AUROC estimate rests on: the collection's own where it has one
    (a site), else the NIH calibration, unless the collection is flagged as shifted, where nothing
    says the NIH calibration holds: then none, and why."""
    if own_calibration:
        return {"calibration": "site", "reason": "the run's calibration fitted on this collection's val split"}
    if shifted:
        return {"calibration": None, "reason": NOT_ESTIMABLE}
    return {"calibration": "nih", "reason": "the NIH calibration, on a collection not flagged as shifted from NIH val"}


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


def prediction_section(
    site: pd.DataFrame, estimated: pd.DataFrame | None, nih: dict, features: dict, labelled: list[str]
) -> dict:
    """Per finding: the NIH-calibrated probabilities on the collection against NIH val's (the mean: the
    predicted prevalence; the KS statistic and p-value of `features`' test), NIH test's beside them,
    and the label-free AUROC estimate of the `estimated` probabilities (None where not estimable),
    beside the measured AUROC on a finding the collection labels."""
    y_val, p_val = prediction_table.arrays(nih[VAL])
    y_test, p_test = prediction_table.arrays(nih[TEST])
    y, p = prediction_table.arrays(site)
    p_estimated = None if estimated is None else prediction_table.arrays(estimated)[1]
    ks = features["ks"]
    out = {}
    for j, finding in enumerate(FINDINGS):
        entry = {
            "predicted_prevalence": float(p[:, j].mean()),
            "nih_val_predicted_prevalence": float(p_val[:, j].mean()),
            "nih_val_prevalence": float(y_val[:, j].mean()),
            "nih_predicted_prevalence": float(p_test[:, j].mean()),
            "nih_prevalence": float(y_test[:, j].mean()),
            "ks": ks["statistic"][j],
            "ks_p": ks["p"][j],
            "nih_test_ks": features["nih_test"]["ks"]["statistic"][j],
            "auroc_estimate": None if p_estimated is None else metrics.expected_auroc(p_estimated[:, j]),
            "nih_auroc_estimate": metrics.expected_auroc(p_test[:, j]),
            "nih_auroc": metrics.weighted_auroc(y_test[:, j], p_test[:, j]),
        }
        if finding in labelled:
            known = metrics.labelled(y[:, j])
            entry |= {"labelled": int(known.sum()), "auroc": metrics.weighted_auroc(y[known, j], p[known, j])}
            if p_estimated is not None:
                estimate = metrics.expected_auroc(p_estimated[known, j])
                entry |= {"auroc_estimate_labelled": estimate, "estimate_error": estimate - entry["auroc"]}
        out[finding] = entry
    return out


def months(site: pd.DataFrame, estimated: pd.DataFrame | None, past: np.ndarray) -> list[dict]:
    """The same by study month, where the collection dates its images: images, the share past the OOD
    threshold, each finding's predicted prevalence (NIH-calibrated) and the mean label-free AUROC
    estimate (of the `estimated` probabilities; None where not estimable)."""
    month = site.study_date.fillna("").str[:7]
    out = []
    for name in sorted(set(month) - {""}):
        rows = (month == name).to_numpy()
        _, p = prediction_table.arrays(site[rows])
        mean_estimate = None
        if estimated is not None:
            _, q = prediction_table.arrays(estimated[rows])
            estimates = [metrics.expected_auroc(q[:, j]) for j in range(len(FINDINGS))]
            mean_estimate = float(np.nanmean(estimates)) if np.isfinite(estimates).any() else None
        out.append({
            "month": name,
            "images": int(rows.sum()),
            "ood_share": float(past[rows].mean()),
            "predicted_prevalence": dict(zip(FINDINGS, p.mean(axis=0).tolist())),
            "mean_auroc_estimate": mean_estimate,
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


def _shares(values) -> dict[str, float]:
    return {k: float(v) for k, v in pd.Series(values).value_counts(normalize=True).sort_index().items()}


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}


def _drawn(sides: dict, dataset: str, distance: np.ndarray, nih_distance: dict) -> dict:
    return {"site": sides[dataset], "val": sides[VAL], "test": sides[TEST], "distance": distance,
            "nih_distance": nih_distance}  # fmt: skip


def render(m: dict, drawn: dict, out_html) -> Path:
    """The monitoring report: one self-contained HTML page, its figures embedded."""
    import matplotlib.pyplot as plt

    figs = Figures(None)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    centres = (np.arange(BINS) + 0.5) * 256 / BINS
    for label, features in (
        (m["dataset"], drawn["site"]),
        ("NIH val", drawn["val"]),
        ("NIH test", drawn["test"]),
    ):
        axes[0].plot(centres, features["histogram"].mean(axis=0), label=label)
        axes[1].hist(features["pixel_mean"], bins=30, histtype="step", density=True, label=label)
    axes[0].set(
        title="pixel intensities (mean histogram)", xlabel="pixel value (model input)", ylabel="share of pixels"
    )
    axes[1].set(title="each image's mean intensity", xlabel="mean pixel value", ylabel="density")
    nih_distance = drawn["nih_distance"]
    bins = np.histogram_bin_edges(np.r_[drawn["distance"], nih_distance[VAL], nih_distance[TEST]], 40)
    axes[2].hist(drawn["distance"], bins=bins, histtype="step", density=True, label=m["dataset"])
    axes[2].hist(nih_distance[VAL], bins=bins, histtype="step", density=True, label="NIH val")
    axes[2].hist(nih_distance[TEST], bins=bins, histtype="step", density=True, label="NIH test")
    axes[2].axvline(
        m["ood"]["threshold"], color="k", ls="--", lw=1,
        label=f"{100 * m['ood']['quantile']:g}th pct of {m['ood']['threshold_images']} val images",
    )  # fmt: skip
    axes[2].set(
        title=f"distance from the run's training embeddings ({m['ood']['training_data']})",
        xlabel="Mahalanobis distance", ylabel="density",
    )  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
    figs.add("shift", fig)
    html = templates().get_template("monitor.html.j2").render(
        title=f"cxr14 monitoring: run {m['run']} on {m['dataset']}", disclaimer=DISCLAIMER,
        synthetic=m.get("synthetic"), m=m, findings=FINDINGS, figs=figs.embedded,
    )  # fmt: skip
    with atomic(out_html) as staged:
        staged.write_text(html)
    return Path(out_html)
