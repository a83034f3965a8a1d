"""Inference on single files, shared by the batch predictor and the web app: the images `images.read_gray`
reads (as the shard stage does), predicted and explained."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import FINDINGS, NIH
from .engines import KerasEngine, OnnxEngine
from .images import resize
from .paths import CALIBRATION, MODEL, OOD_REFERENCE, OPERATING_POINTS, RUN, dataset_of


def load_thresholds(path) -> dict | None:
    """The operating points written by the calibrate step (its thresholds.json), when present."""
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())


def max_f1(points: dict | None) -> dict[str, float | None] | None:
    """The max-F1 thresholds of a thresholds.json, a finding without one None."""
    if points is None:
        return None
    return {f: None if v is None else float(v) for f, v in points["max_f1"].items()}


def load_calibration(path, model_path) -> dict | None:
    """A run's calibration (from the calibrate step), checked to belong to `model_path`."""
    from .calibration import check_model

    if path is None or not Path(path).is_file():
        return None
    calibration = json.loads(Path(path).read_text())
    check_model(calibration, model_path)
    return calibration


@dataclass(frozen=True)
class Site:
    """Where a prediction's numbers come from: the calibration and the operating points fitted on one
    collection's val split (`nih`, or a split collection a run was calibrated on); neither without one."""

    name: str
    calibration: dict | None
    thresholds: dict[str, float | None] | None
    points: dict | None = None  # the whole thresholds.json: why a point is missing, what it rests on

    def caveats(self) -> dict[str, str]:
        """Per finding, what its probability or decision here rests on where a reader must be told
        (`calibration.caveats`)."""
        from .calibration import caveats

        return caveats(self.calibration, self.thresholds and self.points, self.name)

    def describe(self) -> str:
        """In plain words, which calibration and thresholds are in use."""
        if self.calibration is None:
            return "the model's own uncalibrated probabilities, threshold 0.5 (no calibration.json)"
        fitted = f"calibrated on {self.name}'s validation split ({self.calibration['method']} scaling)"
        cut = f"operating points chosen on {self.name}'s validation split (max F1)" if self.thresholds else "0.5"
        return f"site {self.name}: probabilities {fitted}, {cut}"


UNCALIBRATED = Site("none", None, None)


class UnknownSite(LookupError):
    """A site the model has no calibration for; the message names those it has."""


class NoTrainedRun(LookupError):
    """Nothing to serve: no trained run on disk, not the one asked for, or an exported model without
    its own serving.json; the message says which (the command prints it, no traceback)."""


SERVING = "serving.json"  # what the export step writes beside its models


def exported(model_path) -> dict:
    """The serving.json beside an exported model, checked to describe that very file."""
    from .files import sha256_file

    path = Path(model_path).with_name(SERVING)
    if not path.is_file():
        raise NoTrainedRun(f"{model_path}: no {SERVING} beside it; use the export step's folder as it is")
    serving = json.loads(path.read_text())
    want = serving["files"]["onnx"]["sha256"]
    if Path(model_path).name != serving["files"]["onnx"]["path"] or sha256_file(model_path) != want:
        raise NoTrainedRun(f"{path} describes another model than {model_path} (sha256 {want[:12]}...)")
    return serving


class Predictor:
    """A network loaded once, with its calibration and operating points per site; predicts and explains
    grayscale images. Without a calibration the probabilities are the model's own (and no TTA).

    One interface, two engines (`engines`): a run's model.keras runs on Keras (`sites`: name ->
    (calibration.json, thresholds.json)); the export step's ONNX model runs on ONNX Runtime alone,
    holds the TTA views itself and brings every site's calibration and operating points in the
    serving.json beside it. Both give logits and embeddings; only Keras explains (Grad-CAM needs the
    network's gradients)."""

    UNLIKE = "unlike the images this model was trained and validated on"

    def __init__(self, model_path, sites: dict[str, tuple] | None = None, reference=None):
        """`reference`: the run's out-of-distribution reference (the `ood_reference` step's), which
        flags an image unlike NIH's (either engine gives the embedding it needs; an exported ONNX model's
        serving.json carries no reference, so `--model model.onnx` checks none)."""
        from .ood import load_reference

        if Path(model_path).suffix.lower() == ".onnx":
            if sites:
                raise NoTrainedRun(f"{model_path}: an ONNX model's operating points and calibration are its {SERVING}")
            serving = exported(model_path)
            self.sites = {name: Site(name, given["calibration"], given["operating_points"],
                                     given.get("operating_points_by_rule"))
                          for name, given in serving["sites"].items()}  # fmt: skip
            self.engine = OnnxEngine(model_path, tta=bool(serving["tta"]))
            self.info = serving["model"]
        else:
            self.sites = {}
            for name, (calibration, thresholds) in (sites or {}).items():
                points = load_thresholds(thresholds)
                self.sites[name] = Site(name, load_calibration(calibration, model_path), max_f1(points), points)
            tta = any(s.calibration and s.calibration["tta"] for s in self.sites.values())
            self.engine = KerasEngine(model_path, tta)
            self.info = self.engine.info
        self.reference = load_reference(reference) if reference and Path(reference).is_file() else None
        self.size = self.engine.image_size

    @property
    def tta(self) -> bool:
        return self.engine.tta

    @property
    def explains(self) -> bool:
        """Whether it can draw Grad-CAM (the Keras engine: it needs the network's gradients)."""
        return isinstance(self.engine, KerasEngine)

    @property
    def default_site(self) -> str | None:
        """NIH's when the model has it (the collection it was validated on), else the first."""
        return NIH if NIH in self.sites else next(iter(self.sites), None)

    def site(self, name: str | None = None) -> Site:
        """The calibration and operating points of site `name` (the default site for None)."""
        name = name or self.default_site
        if name is None:
            return UNCALIBRATED
        if name not in self.sites:
            known = ", ".join(self.sites) or "none (the model has no calibration)"
            raise UnknownSite(f"no calibration for site {name!r}; this model's sites: {known}")
        return self.sites[name]

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """Full-resolution grayscale to the model's input, exactly as the shard stage does."""
        return resize(gray, self.size).astype(np.float32)[..., None]

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) logits (TTA'd as in the evaluation)."""
        return self._forward(batch)[0]

    def scored(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, S, S, 1) prepared images to ((B, 14) logits, each image's distance from the NIH training
        embeddings, None without a reference), from one forward pass."""
        logits, embedding = self._forward(batch)
        if self.reference is None:
            return logits, None
        from .ood import mahalanobis

        return logits, mahalanobis(self.reference, embedding)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, the plain images' embeddings), from one pass of the engine."""
        logits, _, embedding = self.engine(batch)
        return logits, embedding

    def unlike(self, distance: float | None) -> bool | None:
        """Whether an image's distance puts it past the reference's threshold (None: not checked)."""
        return None if distance is None or self.reference is None else bool(distance > self.reference["threshold"])

    def calibrated(self, logits: np.ndarray, site: str | None = None) -> np.ndarray:
        """Logits to the site's calibrated probabilities (the model's own without a calibration)."""
        from .calibration import apply

        return apply(self.site(site).calibration, logits)

    def predict(self, batch: np.ndarray, site: str | None = None) -> np.ndarray:
        """(B, S, S, 1) prepared images to (B, 14) calibrated probabilities."""
        return self.calibrated(self.scores(batch), site)

    def above(self, probs: np.ndarray, site: str | None = None) -> list[str]:
        """Findings at or above the site's operating point (0.5 without operating points at all)."""
        return [f for f, called in zip(FINDINGS, self.decisions(probs, site)) if called]

    def decisions(self, probs: np.ndarray, site: str | None = None) -> list[bool | None]:
        """Per finding whether it is called (at or above the site's operating point; 0.5 without any),
        or None where no decision is made: no operating point was chosen for it on the site's val
        split, or the site has no map for it (it does not label it)."""
        cut = self.site(site).thresholds
        out = []
        for f, p in zip(FINDINGS, probs):
            t = 0.5 if cut is None else cut.get(f, 0.5)
            out.append(None if t is None or not np.isfinite(p) else bool(p >= t))
        return out

    def base_rate(self, site: str | None = None) -> dict[str, float] | None:
        """Each finding's prevalence in the training data, when the calibration records it."""
        calibration = self.site(site).calibration
        return calibration["base_rate"] if calibration else None

    def explain(self, prepared: np.ndarray, finding: str, display_size: int | None = None) -> np.ndarray:
        """Grad-CAM overlay (RGB uint8) of one finding on one prepared image, at the model's input
        size or enlarged to `display_size` for viewing."""
        import cv2

        from .gradcam import gradcam, overlay

        if not self.explains:
            raise ValueError("Grad-CAM needs the Keras model (model.keras), not its ONNX export")

        cam, _ = gradcam(self.engine.model, prepared[None], FINDINGS.index(finding))
        gray, cam = prepared[..., 0], cam[0]
        if display_size and display_size != gray.shape[0]:
            shape = (display_size, display_size)
            gray = cv2.resize(gray, shape, interpolation=cv2.INTER_LINEAR)
            cam = cv2.resize(cam, shape, interpolation=cv2.INTER_LINEAR)
        return overlay(gray, cam)


def nih_first(sites) -> list[str]:
    """Site names NIH's first (the default), the others in name order."""
    return sorted(sites, key=lambda name: (name != NIH, name))


def sites_on_disk(run: str) -> dict[str, tuple[str | None, str | None]]:
    """A run's sites under results/runs/<run>/datasets/ (from the working directory), NIH first:
    name -> (calibration.json, thresholds.json), either None where the step has not written it."""
    patterns = (CALIBRATION, OPERATING_POINTS)
    names = {dataset_of(path) for pattern in patterns for path in Path().glob(pattern.format(run=run, dataset="*"))}
    found = {}
    for name in nih_first(names):
        files = [Path(pattern.format(run=run, dataset=name)) for pattern in patterns]
        found[name] = tuple(str(f) if f.exists() else None for f in files)
    return found


def on_disk() -> dict[str, tuple[str, dict, str | None]]:
    """The trained runs with a saved model under results/runs/ (from the working directory):
    name -> (model, its sites as `sites_on_disk` gives them, its out-of-distribution reference or None)."""
    found = {}
    for model in sorted(Path().glob(MODEL.format(run="*"))):
        run = model.parts[-3]
        reference = Path(OOD_REFERENCE.format(run=run))
        found[run] = (str(model), sites_on_disk(run), str(reference) if reference.is_file() else None)
    return found


def served(
    run: str | None, model: str | None, thresholds: str | None = None, calibration: str | None = None
) -> tuple[dict[str, tuple], str]:
    """What `cxr14 app` and `cxr14 predict` serve: a model file (with the `calibration` and
    `thresholds` given, as the site the calibration names), or the trained runs on disk (starting
    with `run`); (name -> (model, sites), the first name)."""
    given = {}
    if calibration or thresholds:
        name = json.loads(Path(calibration).read_text()).get("site", "given") if calibration else "given"
        given = {name: (calibration, thresholds)}
    if model:
        return {"model": (model, given)}, "model"
    runs = on_disk()
    if not runs:
        raise NoTrainedRun(f"no trained run under {RUN.format(run='*')}: run the workflow first, or give --model")
    first = run or next(iter(runs))
    if first not in runs:
        raise NoTrainedRun(
            f"run {first!r} has no trained model ({MODEL.format(run=first)}); trained runs: "
            f"{', '.join(runs)} (an ensemble has no model of its own: use one of its members)"
        )
    runs[first] = (runs[first][0], given | runs[first][1], runs[first][2]) if given else runs[first]
    return runs, first
