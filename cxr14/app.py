"""The web app: upload a chest X-ray (PNG, JPEG or DICOM), see the likely findings and where the
model looked. Research use only; the page says so at the top and bottom."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from .calibration import SHARED
from .constants import DISCLAIMER, FINDINGS, NIH
from .images import DEFAULT_MAX_MB, DEFAULT_MAX_MEGAPIXELS, BadImage, read_gray
from .inference import Predictor, UnknownSite, nih_first, served

log = logging.getLogger(__name__)

DISPLAY_SIZE = 448  # the Grad-CAM overlay is enlarged to this for viewing
KEEP_FILES_S = 3600  # uploads and overlays older than this are deleted from the server's disk
CSS = ".cxr14-disclaimer {background:#fff3cd; border:1px solid #e0c36c; padding:.5em 1em; font-weight:600}"


def make_examples(folder: Path, size: int = 512) -> list[str]:
    """Phantom radiographs made by cxr14 itself (no patient data), for the example gallery."""
    from .phantom import render

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    paths = []
    for name, findings in (
        ("phantom_cardiomegaly_effusion", {"Cardiomegaly", "Effusion"}),
        ("phantom_nodule", {"Nodule"}),
        ("phantom_pneumothorax", {"Pneumothorax"}),
        ("phantom_no_finding", set()),
    ):
        path = folder / f"{name}.png"
        if not path.exists():
            cv2.imwrite(str(path), render(findings, rng, size)[0])
        paths.append(str(path))
    return paths


class Analysis:
    """What the page shows for one upload and run. The session state keeps the upload at full
    resolution, so another run (of another input size) or another finding can be shown for it.

    Several uploads are worked on at once (the queue's concurrency): each is read and checked on its
    own, so a refused file never waits behind a model, while each run's model takes one image at a
    time (a lock per run): its memory is that of one forward and backward pass, however many wait."""

    def __init__(self, runs: dict[str, tuple], max_mb: float, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
        self.runs = runs  # run -> (model, its sites: name -> (calibration, thresholds))
        self.max_mb, self.max_megapixels = max_mb, max_megapixels
        self._loaded: dict[str, Predictor] = {}
        self._locks = {run: threading.Lock() for run in runs}
        self._loading = threading.Lock()
        self.overlays = Path(tempfile.mkdtemp(prefix="cxr14-overlays-"))
        self._pruned = time.monotonic()

    def predictor(self, run: str) -> Predictor:
        with self._loading:  # one copy of each model, however many uploads ask for it first
            if run not in self._loaded:
                self._loaded[run] = Predictor(*self.runs[run])
        return self._loaded[run]

    def overlay_file(self, rgb) -> str | None:
        """An overlay as a PNG file for the page, named by its content and written whole before it
        appears. (Given an array, Gradio rewrites the image in place in its cache, so two clients
        shown the same image at once could download it half-written: the load test found that.)"""
        if rgb is None:
            return None
        data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
        path = self.overlays / f"gradcam-{hashlib.sha256(data).hexdigest()[:24]}.png"
        if not path.exists():  # two uploads with the same overlay each write their own, then rename
            with tempfile.NamedTemporaryFile(dir=self.overlays, suffix=".partial", delete=False) as staged:
                staged.write(data)
            os.replace(staged.name, path)
        if time.monotonic() - self._pruned > KEEP_FILES_S / 6:
            self._pruned = time.monotonic()
            for old in self.overlays.glob("gradcam-*.png"):
                if time.time() - old.stat().st_mtime > KEEP_FILES_S:
                    old.unlink(missing_ok=True)
        return str(path)

    def describe(self, run: str, answered: bool = False) -> str:
        info = self.predictor(run).info
        return f"{'Answered by run' if answered else 'Run'} **{run}**: {info['backbone']} at {info['image_size']} px."

    def sites(self) -> list[str]:
        """Every site some run on the page has a calibration for, NIH first."""
        return nih_first({name for _, sites, *_ in self.runs.values() for name in sites})

    @staticmethod
    def findings_markdown(predictor: Predictor, probs, site: str | None = None) -> str:
        used = predictor.site(site)
        cut = used.thresholds
        rule = (
            f"the operating points chosen on {used.name}'s validation split"
            if cut
            else "0.5 (no operating points loaded)"
        )
        if used.calibration:
            what = (
                f"Probabilities are calibrated for site **{used.name}**, on its validation split "
                f"({used.calibration['method']} scaling"
                f"{', averaged over test-time augmentations' if predictor.tta else ''}); the base rate is the "
                "finding's prevalence in the training data."
            )
        else:
            what = "**These are the model's own probabilities, not calibrated** (the run has no calibration)."
        base = predictor.base_rate(site) or {}
        caveats = used.caveats()
        fitted = used.calibration["findings"] if used.calibration else {}
        decided = dict(zip(FINDINGS, predictor.decisions(probs, site)))
        lines = [
            what,
            f"Findings at or above {rule} are marked **▲**; – : no decision at this site (see the note).",
            "",
            "| finding | probability | base rate | above operating point | note |",
            "|---|---:|---:|:-:|---|",
        ]
        for k in np.argsort(-np.nan_to_num(probs, nan=-1.0)):
            name = FINDINGS[k]
            rate = f"{base[name]:.3f}" if name in base else "–"
            shown = f"{probs[k]:.3f}" if np.isfinite(probs[k]) else "–"
            if fitted.get(name, {}).get("method") == SHARED:
                shown += " (shared temperature and its own intercept: too few val positives for its own map)"
            mark = {True: "▲", False: "", None: "–"}[decided[name]]
            lines.append(f"| {name} | {shown} | {rate} | {mark} | {caveats.get(name, '')} |")
        return "\n".join(lines)

    @staticmethod
    def unlike_markdown(predictor: Predictor, distance: float | None) -> str:
        """A warning, in plain words, for an image past the run's out-of-distribution threshold."""
        if not predictor.unlike(distance):
            return ""
        return (
            f"**⚠ This image is {predictor.UNLIKE}** (its distance from the model's training images "
            f"({predictor.reference.get('training_data', 'nih')}) in its features, {distance:.1f}, is past the "
            f"{100 * predictor.reference['quantile']:g}th percentile of their validation images'): its findings "
            "below mean less than usual.\n\n"
        )

    def analyse(self, file, run: str, site: str | None = None):
        """(status, label dict, findings table, overlay, dropdown value, state) for an upload, with the
        calibration and operating points of `site` (the run's default site for None)."""
        empty = ("", None, "", None, None, None)
        if file is None:
            return empty
        path = Path(file if isinstance(file, str) else file.name)
        try:
            gray = read_gray(path.read_bytes(), self.max_mb, self.max_megapixels)
        except (BadImage, OSError) as exc:
            log.info("refused %s: %s", path.name, exc)
            return (f"**Could not read {path.name}:** {exc}. Upload a PNG, JPEG or DICOM chest X-ray.", *empty[1:])
        predictor = self.predictor(run)
        site = site if predictor.sites else None  # a run without a calibration says so in its table
        try:
            predictor.site(site)
        except UnknownSite as exc:
            return (f"**Run {run} cannot answer for that site:** {exc}.", *empty[1:])
        prepared = predictor.prepare(gray)
        with self._locks[run]:
            logits, distance = predictor.scored(prepared[None])
            probs = predictor.calibrated(logits, site)[0]
            top = FINDINGS[int(np.argmax(np.nan_to_num(probs, nan=-1.0)))]  # (no map at the site: NaN)
            overlay = predictor.explain(prepared, top, DISPLAY_SIZE)
        return (
            self.describe(run, answered=True),
            {f: float(p) for f, p in zip(FINDINGS, probs)},
            self.unlike_markdown(predictor, None if distance is None else distance[0])
            + self.findings_markdown(predictor, probs, site),
            overlay,
            top,
            gray,
        )

    def explain(self, finding, gray, run: str):
        if gray is None or not finding:
            return None
        predictor = self.predictor(run)
        prepared = predictor.prepare(np.asarray(gray, np.uint8))
        with self._locks[run]:
            return predictor.explain(prepared, finding, DISPLAY_SIZE)


def build(
    runs: dict[str, tuple],
    first: str,
    max_mb: float = DEFAULT_MAX_MB,
    examples_dir: Path | None = None,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    concurrency: int = 2,
    queue_size: int = 64,
    first_site: str = NIH,
):
    """The page for `runs` (name -> (model, sites)), showing `first` with the calibration of
    `first_site` until another is picked; `concurrency` uploads worked on at once (all events share
    it), `queue_size` waiting."""
    import gradio as gr

    analysis = Analysis(runs, max_mb, max_megapixels)
    examples = make_examples(examples_dir or Path(tempfile.gettempdir()) / "cxr14-examples")
    # Uploads and overlays are files in Gradio's cache: those older than KEEP_FILES_S are deleted.
    with gr.Blocks(
        title="cxr14: chest X-ray findings (research use only)", delete_cache=(KEEP_FILES_S // 6, KEEP_FILES_S)
    ) as demo:
        gr.Markdown(f"# cxr14\n{DISCLAIMER}", elem_classes=["cxr14-disclaimer"], elem_id="disclaimer")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label="Chest X-ray (PNG, JPEG or DICOM)",
                    file_types=[".png", ".jpg", ".jpeg", ".dcm", ".dicom"],
                    file_count="single",
                    type="filepath",
                    elem_id="upload",
                )
                gr.Examples(examples=examples, inputs=upload, label="Phantom examples made by cxr14")
                run = gr.Dropdown(choices=list(runs), value=first, label="Run (trained model)", elem_id="run-choice")
                sites = analysis.sites()
                site = gr.Dropdown(
                    choices=sites,
                    value=first_site if first_site in sites else (sites[0] if sites else None),
                    label="Site (whose calibration and operating points)",
                    elem_id="site-choice",
                )
                status = gr.Markdown(elem_id="status")
                info = gr.Markdown(analysis.describe(first), elem_id="model-info")
            with gr.Column():
                label = gr.Label(num_top_classes=len(FINDINGS), label="Findings (probability)", elem_id="findings")
                table = gr.Markdown(elem_id="findings-table")
            with gr.Column():
                choose = gr.Dropdown(choices=list(FINDINGS), label="Grad-CAM for", elem_id="gradcam-choice")
                heatmap = gr.Image(label="Where the model looked (Grad-CAM)", type="filepath", elem_id="heatmap")
        gr.Markdown(DISCLAIMER, elem_classes=["cxr14-disclaimer"])

        def analyse(file, run, site):
            status, label, table, overlay, top, gray = analysis.analyse(file, run, site)
            return status, label, table, analysis.overlay_file(overlay), top, gray

        def explain(finding, gray, run):
            return analysis.overlay_file(analysis.explain(finding, gray, run))

        outputs = [status, label, table, heatmap, choose, state]
        shared = {"concurrency_id": "cxr14", "concurrency_limit": concurrency}
        upload.change(analyse, inputs=[upload, run, site], outputs=outputs, api_name="analyse", **shared)
        run.change(analyse, inputs=[upload, run, site], outputs=outputs, api_name="analyse_again", **shared)
        site.change(analyse, inputs=[upload, run, site], outputs=outputs, api_name="analyse_for_site", **shared)
        run.change(analysis.describe, inputs=run, outputs=info, api_name="describe", **shared)
        choose.input(explain, inputs=[choose, state, run], outputs=heatmap, api_name="explain", **shared)
    return demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)


def main(args) -> int:
    if args.model and args.model.lower().endswith(".onnx"):
        print(f"{args.model}: the app shows Grad-CAM, which needs the Keras model; give model.keras", file=sys.stderr)
        return 2
    runs, first = served(args.run, args.model, args.thresholds, args.calibration)
    demo = build(runs, first, args.max_mb, max_megapixels=args.max_megapixels, concurrency=args.concurrency,
                 queue_size=args.queue_size, first_site=args.site or NIH)  # fmt: skip
    host = "0.0.0.0" if args.share_on_network else "127.0.0.1"
    # Gradio refuses a larger upload as it arrives, before it is written to disk.
    limit = int(args.max_mb * 2**20)
    demo.launch(server_name=host, server_port=args.port, css=CSS, share=False, show_error=True, max_file_size=limit)
    return 0
