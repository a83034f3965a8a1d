"""A run's model as one inference graph, and that graph as an ONNX model: what the `convert` step writes
for `score` (ONNX Runtime scoring on a CPU) and the `export` step serves.

The graph takes what the Keras model takes, (B, S, S, 1) float32 grayscale pixels 0..255 named `image`, and
holds all the preprocessing after that: gray to RGB, the backbone's input scaling and, when the run is
scored with test-time augmentation, the views and their mean (taken over logits). It gives `logits`, the
(B, 14) logits every calibration maps, `findings`, their sigmoid (the model's own probabilities), and the
plain image's `plain_logits` and `embedding` (its penultimate-layer features), from the same pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import models
from .constants import FINDINGS
from .engines import SERVING_EMBEDDING as EMBEDDING
from .engines import SERVING_INPUT as INPUT
from .engines import SERVING_LOGITS as LOGITS
from .engines import SERVING_OUTPUT as OUTPUT
from .engines import SERVING_PLAIN as PLAIN
from .engines import tta_views
from .files import atomic

ONNX_OPSET = 17
OUTPUTS = (LOGITS, OUTPUT, PLAIN, EMBEDDING)  # the graph's outputs, in this order


def serving_model(model, tta: bool):
    """The model as the evaluation scores with it: (B, S, S, 1) pixels to {`logits`, `findings`,
    `plain_logits`: (B, 14); `embedding`: (B, D)}; with `tta` the mean logits over the TTA_VIEWS
    (resampled by matrix products, so every export format holds them) and their sigmoid, and the plain
    image's logits and embedding from the same pass (the identity view is the first)."""
    import keras

    net = models.embedding_model(model)
    inputs = keras.Input(model.input_shape[1:], name=INPUT)
    if tta:
        views = tta_views(inputs)
        every, embedding = net(keras.ops.concatenate(views, axis=0))
        every = keras.ops.reshape(every, (len(views), -1, len(FINDINGS)))
        logits, plain = keras.ops.mean(every, axis=0), every[0]
        embedding = keras.ops.reshape(embedding, (len(views), -1, embedding.shape[-1]))[0]
    else:
        logits, embedding = net(inputs)
        plain = logits
    outputs = {LOGITS: keras.layers.Identity(name=LOGITS)(logits),
               OUTPUT: keras.layers.Activation("sigmoid", name=OUTPUT)(logits),
               PLAIN: keras.layers.Identity(name=PLAIN)(plain),
               EMBEDDING: keras.layers.Identity(name=EMBEDDING, dtype="float32")(embedding)}  # fmt: skip
    return keras.Model(inputs, outputs, name=f"{model.name}_serving")


def _signature(size: int):
    import tensorflow as tf

    return tf.TensorSpec((None, size, size, 1), tf.float32, name=INPUT)


def write_saved_model(net, size: int, path) -> None:
    """A SavedModel whose `serving_default` signature maps `image` to `logits` and `findings`."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(net)
    serve = lambda image: net(image, training=False)  # noqa: E731
    archive.add_endpoint("serve", serve, input_signature=[_signature(size)])
    archive.write_out(str(path), verbose=False)


def write_onnx(net, size: int, path, opset: int = ONNX_OPSET) -> None:
    """The serving model's graph, frozen, converted by tf2onnx, with inputs and outputs named as above."""
    import tensorflow as tf
    import tf2onnx
    from keras.src.export.tf2onnx_lib import patch_tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # keras.src.export.tf2onnx_lib is private, kept on purpose: tf2onnx 1.17 fails on numpy 2
    # (np.object, its constant folding) without Keras's fix. The public route,
    # `Model.export(format="onnx")`, applies the same fix but names the outputs `Identity:0`... (measured
    # with Keras 3.15), where serving.json, `cxr14 predict` and the app read `logits` and `findings`;
    # calling tf2onnx on the frozen graph ourselves keeps the names.
    patch_tf2onnx()
    serve = tf.function(lambda image: [net(image, training=False)[name] for name in OUTPUTS])
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function(_signature(size)))
    graph = frozen.graph.as_graph_def()
    _compile_nothing(graph)
    given = frozen.inputs[0].name
    names = {given: INPUT} | {output.name: name for output, name in zip(frozen.outputs, OUTPUTS)}
    proto, _ = tf2onnx.convert.from_graph_def(
        graph, input_names=[given], output_names=[o.name for o in frozen.outputs[: len(OUTPUTS)]], opset=opset,
        custom_op_handlers={"Erfc": (_erfc, [])},
    )  # fmt: skip
    for node in proto.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    for value in [*proto.graph.input, *proto.graph.output]:
        value.name = names.get(value.name, value.name)
    with atomic(path) as staged:
        Path(staged).write_bytes(proto.SerializeToString())


def _compile_nothing(graph) -> None:
    """Drop the XLA-compile marks Keras puts on some ops' functions (its grouped convolutions, as in
    ConvNeXt), so tf2onnx inlines them instead of leaving calls ONNX has no operator for."""
    for function in graph.library.function:
        function.attr.pop("_XlaMustCompile", None)
        function.attr.pop("_noinline", None)
    for node in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]:
        node.attr.pop("_XlaMustCompile", None)


def _erfc(ctx, node, name, args) -> None:
    """tf2onnx has no Erfc (exact GELU, as in ConvNeXt): 1 - Erf(x), which ONNX has."""
    from tf2onnx import utils

    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1, np.float32))
    erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=name)
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
