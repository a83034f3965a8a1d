"""Step `convert`: a trained run's model as one ONNX model (`conversion.serving_model`: the TTA views, their
mean, the plain image's logits and embedding), which `score` runs with ONNX Runtime on a CPU and `export`
serves. The export step checks it against the Keras model on NIH test, with the scores `score` gave."""

from __future__ import annotations

import logging

from .. import models
from ..conversion import serving_model, write_onnx

log = logging.getLogger(__name__)


def convert(*, model, onnx, tta: bool) -> None:
    """Step `convert`: `model` (in float32, whatever it trained in) to `onnx`, test-time augmented with `tta`."""
    net = models.load(model)
    write_onnx(serving_model(net, tta), int(models.info(net)["image_size"]), onnx)
    log.info("%s: converted to %s (tta=%s)", model, onnx, tta)
