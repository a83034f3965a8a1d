"""The web app: upload a chest X-ray (PNG, JPEG or DICOM), see the likely findings and where the
model looked. Research use only; the page says so at the top and bottom."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .constants import DISCLAIMER, FINDINGS
from .images import BadImage
from .inference import DEFAULT_MAX_MB, Predictor, read_gray

log = logging.getLogger(__name__)

DISPLAY_SIZE = 448  # the Grad-CAM overlay is enlarged to this for viewing
CSS = ".cxr14-disclaimer {background:#fff3cd; border:1px solid #e0c36c; padding:.5em 1em; font-weight:600}"


def make_examples(folder: Path, size: int = 512) -> list[str]:
    """Phantom radiographs made by cxr14 itself (no patient data), for the example gallery."""
    from .demo import render

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    paths = []
    for name, findings in (("phantom_cardiomegaly_effusion", {"Cardiomegaly", "Effusion"}),
                           ("phantom_nodule", {"Nodule"}), ("phantom_pneumothorax", {"Pneumothorax"}),
                           ("phantom_no_finding", set())):
        path = folder / f"{name}.png"
        if not path.exists():
            cv2.imwrite(str(path), render(findings, rng, size)[0])
        paths.append(str(path))
    return paths


class Analysis:
    """What the page shows for one upload; kept in the session state to re-explain other findings."""

    def __init__(self, predictor: Predictor, max_mb: float):
        self.predictor, self.max_mb = predictor, max_mb

    def findings_markdown(self, probs) -> str:
        cut = self.predictor.thresholds
        above = set(self.predictor.above(probs))
        rule = "the operating points chosen on the validation split" if cut else "0.5 (no evaluation thresholds loaded)"
        lines = [f"Findings at or above {rule} are marked **▲**.", "", "| finding | probability | |", "|---|---:|:-:|"]
        for k in np.argsort(-probs):
            name = FINDINGS[k]
            lines.append(f"| {name} | {probs[k]:.3f} | {'▲' if name in above else ''} |")
        return "\n".join(lines)

    def analyse(self, file):
        """(status, label dict, findings table, overlay, dropdown value, state) for an upload."""
        empty = ("", None, "", None, None, None)
        if file is None:
            return empty
        path = Path(file if isinstance(file, str) else file.name)
        try:
            prepared = self.predictor.prepare(read_gray(path.read_bytes(), self.max_mb))
        except (BadImage, OSError) as exc:
            log.info("refused %s: %s", path.name, exc)
            return (f"**Could not read {path.name}:** {exc}. Upload a PNG, JPEG or DICOM chest X-ray.",
                    *empty[1:])
        probs = self.predictor.predict(prepared[None])[0]
        top = FINDINGS[int(np.argmax(probs))]
        return ("", {f: float(p) for f, p in zip(FINDINGS, probs)}, self.findings_markdown(probs),
                self.predictor.explain(prepared, top, DISPLAY_SIZE), top, prepared)

    def explain(self, finding, prepared):
        if prepared is None or not finding:
            return None
        return self.predictor.explain(np.asarray(prepared, np.float32), finding, DISPLAY_SIZE)


def build(predictor: Predictor, max_mb: float = DEFAULT_MAX_MB, examples_dir: Path | None = None):
    import gradio as gr

    analysis = Analysis(predictor, max_mb)
    examples = make_examples(examples_dir or Path(tempfile.gettempdir()) / "cxr14-examples")
    with gr.Blocks(title="cxr14: chest X-ray findings (research use only)") as demo:
        gr.Markdown(f"# cxr14\n{DISCLAIMER}", elem_classes=["cxr14-disclaimer"], elem_id="disclaimer")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Chest X-ray (PNG, JPEG or DICOM)", file_types=[".png", ".jpg", ".jpeg", ".dcm", ".dicom"],
                                 file_count="single", type="filepath", elem_id="upload")
                gr.Examples(examples=examples, inputs=upload, label="Phantom examples made by cxr14")
                status = gr.Markdown(elem_id="status")
                info = predictor.info
                gr.Markdown(f"Model: {info['backbone']} at {info['image_size']} px.", elem_id="model-info")
            with gr.Column():
                label = gr.Label(num_top_classes=len(FINDINGS), label="Findings (probability)", elem_id="findings")
                table = gr.Markdown(elem_id="findings-table")
            with gr.Column():
                choose = gr.Dropdown(choices=list(FINDINGS), label="Grad-CAM for", elem_id="gradcam-choice")
                heatmap = gr.Image(label="Where the model looked (Grad-CAM)", type="numpy", elem_id="heatmap")
        gr.Markdown(DISCLAIMER, elem_classes=["cxr14-disclaimer"])
        upload.change(analysis.analyse, inputs=upload, outputs=[status, label, table, heatmap, choose, state])
        choose.input(analysis.explain, inputs=[choose, state], outputs=heatmap)
    return demo


def main(args) -> int:
    predictor = Predictor(args.model, args.thresholds)
    demo = build(predictor, args.max_mb)
    host = "0.0.0.0" if args.share_on_network else "127.0.0.1"
    demo.launch(server_name=host, server_port=args.port, css=CSS, share=False, show_error=True)
    return 0
