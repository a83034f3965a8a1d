"""Figures (matplotlib, saved as PNG) and the self-contained HTML report (Jinja2 template)."""

from __future__ import annotations

import base64
import datetime
import io
import math
import numbers
import os
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
# Constrained layout is solved while the figure is drawn for saving; tight_layout would draw every
# figure a second time (a third of the report's time).
matplotlib.rcParams["figure.constrained_layout.use"] = True
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402

from .constants import DISCLAIMER, FINDINGS, SPLITS  # noqa: E402
from .files import atomic  # noqa: E402
from .gradcam import overlay  # noqa: E402


def _grid(n=14, cols=5, size=2.6):
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def roc_grid(curves, m):
    findings = m["labelled_findings"]
    fig, axes = _grid(len(findings))
    for ax, name in zip(axes, findings):
        c = curves[name]
        ax.plot([0, 1], [0, 1], color="0.8", lw=1)
        if c["fpr"] is not None:
            lo, hi = m["findings"][name]["auroc_ci"]  # None where too few patients have a positive
            interval = f"[{lo:.3f}, {hi:.3f}]" if known(lo) and known(hi) else "no CI: too few patients"
            ax.plot(c["fpr"], c["tpr"], lw=1.5, label=f"AUROC {c['auroc']:.3f}\n{interval}")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("1 - specificity", fontsize=7)
        ax.set_ylabel("sensitivity", fontsize=7)
        ax.tick_params(labelsize=6)
    return fig


def pr_grid(curves, m):
    findings = m["labelled_findings"]
    fig, axes = _grid(len(findings))
    for ax, name in zip(axes, findings):
        c = curves[name]
        if c["precision"] is not None:
            ax.plot(c["recall"], c["precision"], lw=1.5, label=f"AUPRC {c['auprc']:.3f}")
            prevalence = m["findings"][name]["prevalence"]
            ax.axhline(prevalence, color="0.8", lw=1, label=f"prevalence {prevalence:.3f}")
            ax.legend(loc="upper right", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("recall", fontsize=7)
        ax.set_ylabel("precision", fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    return fig


def reliability_grid(reliability, findings=FINDINGS, site: dict | None = None):
    """Per finding, the reliability curve of the model's own probabilities (dashed) and of the
    calibrated ones (solid), with ECE before -> after; with `site` (finding -> reliability), also
    under the site's own calibration (dotted)."""
    fig, axes = _grid(len(findings))
    for ax, name in zip(axes, findings):
        ax.plot([0, 1], [0, 1], color="0.8", lw=1)
        curves = {**reliability[name], **({"site": site[name]} if site and site.get(name) else {})}
        for kind, style in (
            ("before", dict(ls="--", color="0.55", label="model's own")),
            ("after", dict(ls="-", color="C0", label="NIH-calibrated" if site else "calibrated")),
            ("site", dict(ls=":", color="C3", label="site-calibrated")),
        ):
            if kind not in curves:
                continue
            c = curves[kind]
            pts = [(m, f) for m, f in zip(c["mean_predicted"], c["fraction_positive"]) if m is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, **style)
        before, after = reliability[name]["before"], reliability[name]["after"]
        own = f" (site {curves['site']['ece']:.3f})" if "site" in curves else ""
        ax.set_title(f"{name}\nECE {before['ece']:.3f} → {after['ece']:.3f}{own}", fontsize=8)
        ax.set_xlabel("mean predicted", fontsize=7)
        ax.set_ylabel("fraction positive", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].legend(loc="upper left", fontsize=6)
    return fig


def auroc_comparison(m):
    """The run's AUROC per finding beside the figures published on the collection, with its CIs."""
    if not m.get("published"):
        return None
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(FINDINGS))
    mine = {f: m["findings"][f]["auroc"] for f in FINDINGS}
    ci = {f: m["findings"][f]["auroc_ci"] for f in FINDINGS}
    series = {"this model (official split)": [mine[f] or 0 for f in FINDINGS]}
    series.update(
        {name.split(",")[0].split(" (")[0]: [v["auroc"][f] for f in FINDINGS] for name, v in m["published"].items()}
    )
    width = 0.8 / len(series)
    for k, (name, vals) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, vals, width, label=name)
    lo = [mine[f] - ci[f][0] if mine[f] is not None and ci[f][0] is not None else 0 for f in FINDINGS]
    hi = [ci[f][1] - mine[f] if mine[f] is not None and ci[f][1] is not None else 0 for f in FINDINGS]
    ax.errorbar(
        x - (len(series) - 1) / 2 * width,
        series["this model (official split)"],
        yerr=[lo, hi],
        fmt="none",
        ecolor="k",
        lw=0.8,
    )
    ax.set_xticks(x, FINDINGS, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("test AUROC")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _bars(entries: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Bar heights (NaN where unknown) and their (2, n) error bars from each entry's `key` and its
    `key_ci` [low, high] (0 where unknown)."""
    vals = np.array([e[key] if known(e[key]) else np.nan for e in entries])
    ci = np.array([[v if known(v) else np.nan for v in e[f"{key}_ci"]] for e in entries]).reshape(-1, 2)
    return vals, np.nan_to_num(np.abs(np.vstack([vals - ci[:, 0], ci[:, 1] - vals])))


def subgroup_figure(subgroups):
    """Per kind (sex, age, view): the mean AUROC and the underdiagnosis rate of each group, with CIs."""
    fig, axes = plt.subplots(2, len(subgroups), figsize=(4 * len(subgroups), 5.6), squeeze=False)
    for col, (kind, section) in enumerate(subgroups.items()):
        groups = section["groups"]
        names = list(groups)
        for row, (key, title, lo) in enumerate(
            (("mean_auroc", "mean AUROC", 0.5), ("underdiagnosis", "underdiagnosis", 0))
        ):
            ax = axes[row, col]
            vals, err = _bars([groups[g] for g in names], key)
            ax.bar(names, np.nan_to_num(vals, nan=lo), yerr=err, capsize=3,
                   color="tab:blue" if row == 0 else "tab:red")  # fmt: skip
            for k, g in enumerate(names):
                ax.text(k, lo + 0.01, f"n={groups[g]['images']}", ha="center", fontsize=7, rotation=90)
            ax.set_ylim(lo, 1.0)
            ax.set_title(f"{title} by {kind} (95% CI)", fontsize=9)
            ax.tick_params(labelsize=7)
    return fig


def _splits(table: pd.DataFrame) -> list[str]:
    """A collection's splits, NIH's in their order, then any other (`none`: an unsplit collection)."""
    present = set(table.split)
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def prevalence_figure(table: pd.DataFrame):
    """Per split, each finding's share of positives among the images labelled for it."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(FINDINGS))
    splits = _splits(table)
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        part = table.loc[table.split == split, list(FINDINGS)]
        share = part.where(part >= 0).mean().fillna(0).to_numpy() * 100
        ax.bar(x + (k - (len(splits) - 1) / 2) * width, share, width, label=f"{split} (n={len(part)})")
    ax.set_xticks(x, FINDINGS, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("prevalence (%)")
    ax.legend(fontsize=8)
    return fig


def cooccurrence_figure(table: pd.DataFrame):
    y = table[list(FINDINGS)].to_numpy(np.float64).clip(0)  # unlabelled (-1) is not positive
    counts = y.T @ y
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = counts / np.diag(counts)[:, None]  # P(column | row)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.nan_to_num(cond), cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(FINDINGS)), FINDINGS, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(FINDINGS)), FINDINGS, fontsize=7)
    ax.set_title("P(column finding | row finding), all splits", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def demographics_figure(table: pd.DataFrame):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    splits = _splits(table)
    for split in splits:
        ages = table.loc[table.split == split, "age_years"].dropna()
        a.hist(ages, bins=np.arange(0, 101, 5), histtype="step", density=True, label=split)
    a.set_xlabel("age (years)")
    a.set_title("age distribution", fontsize=9)
    a.legend(fontsize=8)
    sex = table.groupby(["split", "sex"]).size().unstack(fill_value=0).reindex(splits)
    view = table.groupby(["split", "view"]).size().unstack(fill_value=0).reindex(splits)
    frac = pd.concat([sex, view], axis=1).div(sex.sum(axis=1), axis=0) * 100
    frac.plot.bar(ax=b, rot=0, fontsize=8)
    b.set_ylabel("% of images")
    b.set_title("sex and view position per split", fontsize=9)
    b.legend(fontsize=7)
    return fig


def gallery_figure(gallery, name):
    items = [g for g in gallery if g[0] == name]
    if not items:
        return None
    fig, axes = plt.subplots(1, len(items), figsize=(1.9 * len(items), 2.2), squeeze=False)
    for ax, (_, kind, image_index, prob, img, cam) in zip(axes.flat, items):
        ax.imshow(overlay(img, cam))
        ax.set_title(f"{kind} p={prob:.2f}\n{image_index}", fontsize=6)
        ax.axis("off")
    return fig


def localisation_figure(examples):
    if not examples:
        return None
    fig, axes = plt.subplots(1, len(examples), figsize=(1.9 * len(examples), 2.2), squeeze=False)
    for ax, (finding, _image, img, cam, box, hit) in zip(axes.flat, examples):
        pic = overlay(img, cam).copy()
        cv2.rectangle(pic, box[:2], (box[2] - 1, box[3] - 1), (0, 255, 0), 1)
        ax.imshow(pic)
        ax.set_title(f"{finding}\n{'hit' if hit else 'miss'}", fontsize=6)
        ax.axis("off")
    return fig


class Figures:
    """Saves each figure as a PNG (in `folder`, when given) and keeps its base64 for embedding."""

    def __init__(self, folder: Path | None):
        self.folder = folder and Path(folder)
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.embedded: dict[str, str] = {}

    def add(self, name: str, fig) -> str | None:
        if fig is None:
            return None
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        data = buf.getvalue()
        if self.folder:
            (self.folder / f"{name}.png").write_bytes(data)
        self.embedded[name] = base64.b64encode(data).decode()
        return name


def known(value) -> bool:
    """A number to show (not None, not NaN)."""
    return isinstance(value, numbers.Real) and math.isfinite(value)


def templates() -> Environment:
    """The package's HTML templates, with the number filters every page uses ('–' where unknown)."""
    env = Environment(loader=PackageLoader("cxr14", "templates"), autoescape=select_autoescape(["html", "j2"]))
    env.filters["f3"] = lambda v: f"{v:.3f}" if known(v) else "–"
    env.filters["sci"] = lambda v: f"{v:.1e}" if known(v) else "–"
    env.filters["pct"] = lambda v: f"{100 * v:.1f}%" if known(v) else "–"
    env.filters["ci"] = lambda pair: f"{pair[0]:.3f}–{pair[1]:.3f}" if pair and all(known(v) for v in pair) else "–"
    return env


def render(m: dict, drawn: dict, table: pd.DataFrame, out_html, figures_dir, title: str, model_card: str | None = None,
           pages: dict | None = None, metric_labels: dict | None = None) -> Path:  # fmt: skip
    """A judgement's report (`assess.judge`'s result `m` and what it `drawn`), one self-contained HTML page
    and its figures, for any collection: NIH's (`report.html.j2`), another beside NIH
    (`external.html.j2`), one without labels (`unlabelled.html.j2`). The collection's `table` is drawn
    in its data section; the report links the run's `model_card` and the `pages` beside it ({file:
    title}, in the report's folder). `metric_labels`: {key: column name} of the per-finding metrics
    (`assess.METRIC_LABELS`), a column each in the per-finding tables."""
    figs = Figures(figures_dir)
    folder = Path(out_html).parent
    context = {
        "title": title,
        "disclaimer": DISCLAIMER,
        "m": m,
        "pages": pages or {},
        "metric_labels": metric_labels or {},
        "model_card": model_card and os.path.relpath(model_card, folder),
        "synthetic": m.get("synthetic", False),
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if not m["labelled"]:
        name = "unlabelled.html.j2"
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
    else:
        findings = m["labelled_findings"]
        if "nih" in m:
            name = "external.html.j2"
            figs.add("auroc", external_auroc_figure(m))
        else:
            name = "report.html.j2"
            figs.add("auroc_comparison", auroc_comparison(m))
            figs.add("roc_curves", roc_grid(drawn["curves"], m))
            figs.add("pr_curves", pr_grid(drawn["curves"], m))
        figs.add("calibration", reliability_grid(drawn["reliability"], findings, drawn.get("site_reliability")))
        figs.add("subgroups", subgroup_figure(m["subgroups"]))
        figs.add("prevalence", prevalence_figure(table))
        if name == "report.html.j2":
            figs.add("cooccurrence", cooccurrence_figure(table))
            figs.add("demographics", demographics_figure(table))
        context |= {
            "findings": findings,
            "subgroup_findings": findings,
            "unlabelled": [f for f in FINDINGS if f not in findings],
            "splits": _splits(table),
        }
    html = templates().get_template(name).render(figs=figs.embedded, **context)
    with atomic(out_html) as staged:
        staged.write_text(html)
    return Path(out_html)


def render_explanation(explained: dict, out_html, title: str, synthetic: bool = False) -> Path:
    """A trained run's explanations on NIH test (the `explain` step): Grad-CAM galleries and the
    localisation against the NIH boxes, one self-contained HTML page."""
    figs = Figures(None)
    figs.add("localisation_examples", localisation_figure(explained["localisation_examples"]))
    gallery = [(f, figs.add(f"gallery_{f}", gallery_figure(explained["gallery"], f))) for f in FINDINGS]
    html = (
        templates()
        .get_template("explanation.html.j2")
        .render(
            title=title,
            disclaimer=DISCLAIMER,
            synthetic=synthetic,
            e=explained,
            figs=figs.embedded,
            gallery=gallery,
            created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
    with atomic(out_html) as staged:
        staged.write_text(html)
    return Path(out_html)


def render_expert_labels(expert: dict, out_html, title: str, synthetic: bool = False) -> Path:
    """The run's AUROC against the expert labels beside the NLP ones (the `expert_labels` step)."""
    html = (
        templates()
        .get_template("expert_labels.html.j2")
        .render(title=title, disclaimer=DISCLAIMER, synthetic=synthetic, e=expert,
                created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    )  # fmt: skip
    with atomic(out_html) as staged:
        staged.write_text(html)
    return Path(out_html)


def external_auroc_figure(m: dict):
    """Per labelled finding, the run's AUROC on NIH test and on the collection, with 95% CIs."""
    names = m["labelled_findings"]
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(names) + 2), 3.8))
    x = np.arange(len(names))
    for k, (key, label) in enumerate((("nih_auroc", "NIH test"), ("auroc", m["dataset"]))):
        vals, err = _bars([m["findings"][f] for f in names], key)
        ax.bar(x + (k - 0.5) * 0.4, np.nan_to_num(vals, nan=0.5), 0.4, yerr=err, capsize=2, label=label)
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("AUROC")
    ax.legend(fontsize=8, loc="lower right")
    return fig
