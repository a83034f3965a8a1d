"""The engines a trained network runs on: Keras (model.keras) or ONNX Runtime (the `convert` step's
graph of the same network), behind one call, pixels -> (logits, the plain image's logits under TTA,
embeddings). The score step, `cxr14 predict` and the app score through here, so they agree (the export
step checks the two engines against each other). Test-time augmentation's views live here too: the
Keras engine applies them, the ONNX graph holds them (`conversion.serving_model`).

Nothing here knows where a run's files are (`paths`) or how scores are calibrated or explained, so a
change there reruns no score job (docs/rerunning.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Test-time augmentation: small anatomy-safe views, (shift x, shift y) as fractions of the side and a
# zoom about the centre; no flips (the heart is on the left). The identity view is always first.
TTA_VIEWS = ((0.0, 0.0, 1.0), (-0.03, 0.0, 1.0), (0.03, 0.0, 1.0), (0.0, 0.0, 1.05), (0.0, 0.0, 0.95))


def axis_resampling(size: int, shift: float, scale: float) -> np.ndarray:
    """The (size, size) matrix that resamples one image axis, shifted by `shift` of the side and zoomed
    by `scale` about the centre: bilinear, edges extended, as keras's affine transform does (to float
    rounding). Kept as matrices, a view is two matrix products, which every export format takes."""
    centre = (size - 1) / 2
    source = np.clip(np.arange(size) / scale + centre * (1 - 1 / scale) - shift * size, 0, size - 1)
    low = np.floor(source).astype(int)
    weight = source - low
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.arange(size), low), 1 - weight)
    np.add.at(matrix, (np.arange(size), np.minimum(low + 1, size - 1)), weight)
    return matrix.astype(np.float32)


def tta_views(x) -> list:
    """The TTA_VIEWS of a (B, S, S, C) batch (an array, a tensor or a Keras model's input)."""
    import keras

    size = x.shape[1]
    views = []
    for dx, dy, scale in TTA_VIEWS:
        if (dx, dy, scale) == (0.0, 0.0, 1.0):
            views.append(x)
            continue
        rows, cols = axis_resampling(size, dy, scale), axis_resampling(size, dx, scale)
        # rows @ image @ cols.T per image and channel, as two batched matrix products (which ONNX Runtime
        # runs several times faster than the Einsum an einsum converts to).
        planes = keras.ops.transpose(x, (0, 3, 1, 2))
        resampled = keras.ops.matmul(keras.ops.matmul(rows, planes), cols.T)
        views.append(keras.ops.transpose(resampled, (0, 2, 3, 1)))
    return views


def view_scores(model, x) -> np.ndarray:
    """(V, B, 14) logits of each of the TTA_VIEWS of a (B, S, S, C) batch, in one forward pass
    (`model`: a `models.logits_model`)."""
    import keras

    views = tta_views(x)
    scores = np.asarray(model.predict_on_batch(keras.ops.concatenate(views, axis=0)), np.float64)
    return scores.reshape(len(views), -1, scores.shape[-1])


def tta_scores(model, x) -> tuple[np.ndarray, np.ndarray]:
    """(TTA mean, plain image's) (B, 14) logits of a batch, from one forward pass over its views: the
    mean is taken over logits, the space every calibration maps."""
    views = view_scores(model, x)
    return views.mean(axis=0).astype(np.float32), views[0].astype(np.float32)


def forward(model, x, tta: bool) -> np.ndarray:
    """(B, S, S, C) model inputs to (B, 14) logits (`model`: a `models.logits_model`); with `tta` the
    mean over TTA_VIEWS. Evaluation, `predict` and the app all score through here, so they agree."""
    if not tta:
        return np.asarray(model.predict_on_batch(x), np.float32)
    return tta_scores(model, x)[0]


def forward_embedded(model, x, tta: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(B, S, S, C) model inputs to ((B, 14) logits as `forward` gives them, the plain image's logits
    under `tta` (else None), (B, D) embeddings of the plain image), from one forward pass of `model` (a
    `models.embedding_model`)."""
    import keras

    if not tta:
        logits, embedding = model.predict_on_batch(x)
        return np.asarray(logits, np.float32), None, np.asarray(embedding, np.float32)
    logits, embedding = model.predict_on_batch(keras.ops.concatenate(tta_views(x), axis=0))
    views = np.asarray(logits, np.float64).reshape(len(TTA_VIEWS), len(x), -1)
    plain = np.asarray(embedding, np.float32)[: len(x)]
    return views.mean(axis=0).astype(np.float32), views[0].astype(np.float32), plain


SERVING_INPUT = "image"  # the names in every format the export step writes
SERVING_LOGITS, SERVING_OUTPUT = "logits", "findings"  # (B, 14) logits and the model's own probabilities
SERVING_PLAIN, SERVING_EMBEDDING = "plain_logits", "embedding"  # the plain image's (B, 14) logits, (B, D) features


def onnx_session(path, threads: int | None = None):
    """An `onnxruntime.InferenceSession` of an ONNX model on the CPU (no TensorFlow needed)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # No busy-waiting between runs: beside TensorFlow's input pipeline (the score step reads its shards
    # with tf.data) spinning threads take the cores the other needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_onnx(path, threads: int | None = None):
    """(B, S, S, 1) pixels -> {`logits`, `findings`: (B, 14), ...} through `onnx_session`, every output
    in one run; the export step checks its ONNX models with this."""
    session = onnx_session(path, threads)
    names = [output.name for output in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(names, {SERVING_INPUT: np.asarray(x, np.float32)})))


ONNX_BATCH = 16  # images per ONNX Runtime run: larger batches run slower on a CPU (bench/README.md)


class KerasEngine:
    """A Keras network (a model.keras path or a loaded model), logits and the plain image's embedding
    from one forward pass (`forward_embedded`), test-time augmented with `tta`."""

    name = "Keras"

    def __init__(self, model, tta: bool):
        from . import models

        self.model = models.load(model) if isinstance(model, (str, Path)) else model
        self.network = models.embedding_model(self.model)
        self.info = models.info(self.model)
        self.image_size = int(self.info["image_size"])
        self.tta = tta

    def __call__(self, x) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        return forward_embedded(self.network, np.asarray(x, np.float32), self.tta)


class OnnxEngine:
    """The `convert` step's ONNX graph of a network (`conversion.serving_model`) in ONNX Runtime, as
    `KerasEngine` gives its outputs, ONNX_BATCH images a run. The graph holds its TTA views itself (a
    graph converted without them gives the plain logits); `tta` says whether the plain image's logits
    are returned beside the mean."""

    name = "ONNX Runtime"
    OUTPUTS = (SERVING_LOGITS, SERVING_PLAIN, SERVING_EMBEDDING)

    def __init__(self, path, tta: bool, threads: int | None = None):
        self.session = onnx_session(path, threads)
        self.image_size = int(self.session.get_inputs()[0].shape[1])
        self.tta = tta

    def __call__(self, x) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        x, names = np.asarray(x, np.float32), list(self.OUTPUTS)
        runs = [self.session.run(names, {SERVING_INPUT: x[k : k + ONNX_BATCH]}) for k in range(0, len(x), ONNX_BATCH)]
        logits, plain, embedding = (np.concatenate(parts) for parts in zip(*runs))
        return logits, plain if self.tta else None, embedding
