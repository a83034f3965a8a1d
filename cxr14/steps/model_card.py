"""Step `model_card`: a run's model card (Mitchell et al. 2019), in Markdown and as an HTML page, from
the files the workflow has already written: what the model is and was trained on, what it is for and
not for, how it was judged (NIH test and every external collection, by subgroup, with CIs), its
calibration and operating points, what to be wary of, and how to make it again."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import yaml

from ..assess import METRIC_LABELS
from ..calibration import caveats
from ..constants import DISCLAIMER, FINDINGS, NIH
from ..files import atomic
from ..report import templates

log = logging.getLogger(__name__)


def data_hash(summary: dict) -> str:
    """One digest of the shards a run trained and chose its epoch on (their sha256s, in order)."""
    shards = [*summary["data"]["train"], *summary["data"]["val"]]
    return hashlib.sha256("\n".join(shards).encode()).hexdigest()


def model_card(
    *,
    evaluation,
    calibrations: list,
    thresholds: list,
    summary,
    external_evaluations: dict | None,
    monitors: dict | None = None,
    card,
    html,
    run: str,
    config: dict,
    starts_from: str | None,
) -> str:
    """Write the model card of `run` to `card` (Markdown) and `html`. Inputs: its NIH `evaluation`
    (metrics JSON), every site's `calibrations` and `thresholds` (NIH's first: what `cxr14 predict
    --site` uses), its training `summary` (None for an ensemble) and
    `external_evaluations` and `monitors` ({dataset: {run: metrics JSON, or monitor.json}}, None without
    collections); `config` is the
    part of the config that makes the run again (`runs.reproducing_config`), `starts_from` a
    fine-tune's starting run."""
    m = json.loads(Path(evaluation).read_text())
    trained = json.loads(Path(summary).read_text()) if summary else None
    external = {
        dataset: json.loads(Path(by_run[run]).read_text()) for dataset, by_run in (external_evaluations or {}).items()
    }
    watched = {dataset: json.loads(Path(by_run[run]).read_text()) for dataset, by_run in (monitors or {}).items()}
    env = templates()
    env.autoescape = False  # Markdown, not HTML
    sites = {}
    for c, t in zip(calibrations, thresholds, strict=True):
        fitted = json.loads(Path(c).read_text())
        points = json.loads(Path(t).read_text())
        said = caveats(fitted, points, fitted["site"])  # what a finding's map or point rests on
        sites[fitted["site"]] = {"calibration": fitted, "thresholds": points, "caveats": said,
                                 "calibration_file": str(c), "thresholds_file": str(t)}  # fmt: skip
    text = env.get_template("model_card.md.j2").render(
        run=run,
        m=m,
        trained=trained,
        data_hash=data_hash(trained) if trained else None,
        external=external,
        monitors=watched,
        sites=sites,
        thresholds=sites[NIH]["thresholds"],
        thresholds_file=sites[NIH]["thresholds_file"],
        nih_caveats=sites[NIH]["caveats"],
        card_file=str(card),
        calibration=sites[NIH]["calibration"],
        config=yaml.safe_dump(config, sort_keys=False, default_flow_style=False).strip(),
        starts_from=starts_from,
        findings=FINDINGS,
        metric_labels=METRIC_LABELS,
        disclaimer=DISCLAIMER,
        synthetic=m.get("synthetic", False),  # said in the card's text, so on its page too
    )
    with atomic(card) as staged:
        staged.write_text(text)
    page = (
        templates()
        .get_template("model_card.html.j2")
        .render(title=f"Model card: run {run}", body=_html(text), disclaimer=DISCLAIMER, synthetic=m.get("synthetic"))
    )
    with atomic(html) as staged:
        staged.write_text(page)
    log.info("model card of %s: %s, %s", run, card, html)
    return text


def _html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown)
