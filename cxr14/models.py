"""Keras models for 14-finding multi-label classification of grayscale chest X-rays.

Every model takes (size, size, 1) float32 pixels in 0..255, so training, evaluation, the batch
predictor and the app all feed the same thing. Inside the graph: the model's metadata (`ModelInfo`),
grayscale to 3 channels for ImageNet backbones, the backbone's own input scaling, the backbone
(a sub-model named "backbone" whose output is its last convolutional feature map, which Grad-CAM
uses), global average pooling, dropout and a 14-unit sigmoid head in float32.
"""

from __future__ import annotations

import json
import urllib.error

import keras
from keras import layers

from .constants import FINDINGS

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CAFFE_MEAN_BGR = [103.939, 116.779, 123.68]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be had (no network, or a bad local file)."""


def _application(name: str, **options):
    """A Keras application without its top, at (size, size, 3), as a backbone builder."""

    def build(size, weights):
        return getattr(keras.applications, name)(
            include_top=False, weights=weights, input_shape=(size, size, 3), **options
        )

    return build


def _small_cnn(size, weights):
    """A small CNN for CPU runs, tests and the demo (grayscale in, no pretrained weights).
    BatchNorm momentum 0.9: with few steps per epoch the default 0.99 leaves the inference
    statistics lagging the weights for many epochs."""
    inputs = keras.Input((size, size, 1))
    x = layers.Rescaling(1.0 / 255)(inputs)
    for k, filters in enumerate((16, 32, 64, 96, 128)):
        x = layers.Conv2D(filters, 3, strides=2 if k == 0 else 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        if 0 < k < 4:
            x = layers.MaxPooling2D()(x)
    return keras.Model(inputs, x, name="small_cnn")


# name -> (builder, input scaling inside the graph, channels the backbone takes). "builtin": the
# application scales 0..255 itself (include_preprocessing); "torch" and "caffe" are done here.
BACKBONES = {
    "densenet121": (_application("DenseNet121"), "torch", 3),
    "densenet169": (_application("DenseNet169"), "torch", 3),
    "densenet201": (_application("DenseNet201"), "torch", 3),
    "efficientnetb0": (_application("EfficientNetB0"), "builtin", 3),
    "efficientnetv2b0": (_application("EfficientNetV2B0", include_preprocessing=True), "builtin", 3),
    "convnext_tiny": (_application("ConvNeXtTiny", include_preprocessing=True), "builtin", 3),
    "resnet50": (_application("ResNet50"), "caffe", 3),
    "mobilenetv3small": (_application("MobileNetV3Small", include_preprocessing=True), "builtin", 3),
    "small_cnn": (_small_cnn, "builtin", 1),
}


@keras.saving.register_keras_serializable(package="cxr14")
class ModelInfo(layers.Layer):
    """An identity layer that carries what inference needs: labels, input size, backbone, scaling."""

    def __init__(self, info: dict | str, **kwargs):
        super().__init__(**kwargs)
        self.info = json.loads(info) if isinstance(info, str) else dict(info)

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {**super().get_config(), "info": json.dumps(self.info, sort_keys=True)}


def _backbone(name: str, size: int, weights: str | None):
    builder, _, _ = BACKBONES[name]
    if weights == "imagenet" and name == "small_cnn":
        raise WeightsUnavailable("small_cnn has no ImageNet weights: set train.weights to none")
    try:
        net = builder(size, "imagenet" if weights == "imagenet" else None)
    except Exception as exc:  # Keras reports a failed download as a bare Exception
        if weights == "imagenet" and (
            "URL fetch failure" in str(exc) or isinstance(exc, (OSError, urllib.error.URLError))
        ):
            raise WeightsUnavailable(
                f"could not download the ImageNet weights for {name} ({exc}). With no network, set "
                "`train.weights: none` to train from scratch, or `train.weights: /path/to/weights.h5` "
                "(a Keras application's no-top weights file, e.g. copied from ~/.keras/models on a "
                "machine that has network)."
            ) from exc
        raise
    if weights not in (None, "none", "imagenet"):
        try:
            net.load_weights(weights)
        except Exception as exc:
            raise WeightsUnavailable(f"{weights}: cannot load as {name} weights ({exc})") from exc
    net.name = "backbone"
    return net


def build(backbone: str, image_size: int, weights: str | None, dropout: float) -> keras.Model:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    _, scaling, channels = BACKBONES[backbone]
    info = {
        "labels": list(FINDINGS),
        "image_size": image_size,
        "backbone": backbone,
        "input": "grayscale float32 0..255, shape (size, size, 1)",
        "scaling": scaling,
    }
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = ModelInfo(info, name="cxr14_info")(inputs)
    if channels == 3:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if scaling == "torch":
        x = layers.Rescaling(1.0 / 255, name="to_unit")(x)
        x = layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD], name="imagenet_norm")(x)
    elif scaling == "caffe":
        x = layers.Normalization(mean=CAFFE_MEAN_BGR, variance=[1.0, 1.0, 1.0], name="caffe_norm")(x)
    features = _backbone(backbone, image_size, weights)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(len(FINDINGS), activation="sigmoid", dtype="float32", name=HEAD)(x)
    return keras.Model(inputs, outputs, name=f"cxr14_{backbone}")


def info(model: keras.Model) -> dict:
    """The metadata a cxr14 model carries."""
    return model.get_layer("cxr14_info").info


HEAD = "findings"  # the 14-unit head: float32 whatever the rest computes in (a stable sigmoid and loss)


LOGITS = "logits"  # the head's pre-sigmoid output, what scoring, calibration and the exports use


def logits_model(model: keras.Model) -> keras.Model:
    """The same network giving its head's logits instead of their sigmoid: a float32 sigmoid
    saturates at 1.0 where the logits still rank and calibrate. Built from the head's own weights, so
    every saved model.keras (a probability head) keeps loading and scoring as it was."""
    head = model.get_layer(HEAD)
    dense = layers.Dense(len(FINDINGS), dtype="float32", name=LOGITS)
    logits = dense(head.input)
    dense.set_weights(head.get_weights())
    return keras.Model(model.inputs, logits, name=f"{model.name}_logits")


EMBEDDING = "pool"  # the penultimate layer: the pooled features the head reads, what `monitor` compares


def embedding_model(model: keras.Model) -> keras.Model:
    """The network giving (its head's logits, its penultimate-layer embedding) from one forward pass."""
    logits = logits_model(model)
    return keras.Model(model.inputs, [logits.output, model.get_layer(EMBEDDING).output], name=f"{model.name}_embedded")


def precision(model: keras.Model) -> str:
    """The dtype policy the network computes in (its pooling layer's, set as every layer's but the head's)."""
    return model.get_layer(EMBEDDING).dtype_policy.name


def _set_policies(node, policy: str) -> None:
    """Every layer's dtype policy in a model config set to `policy`, the head's left alone."""
    if isinstance(node, list):
        for item in node:
            _set_policies(item, policy)
    elif isinstance(node, dict):
        if node.get("class_name") == "DTypePolicy":
            node["config"]["name"] = policy
        elif not (node.get("name") == HEAD and "inbound_nodes" in node):
            for value in node.values():
                _set_policies(value, policy)


def with_precision(model: keras.Model, policy: str) -> keras.Model:
    """The same network and weights computing in `policy` (float32, mixed_float16, mixed_bfloat16): a model
    trained in mixed precision is saved, scored, exported and served in float32, whose results do not
    depend on the device, and a fine-tune on GPUs takes it back to mixed precision. Weights are float32
    under every policy, so nothing is lost either way; the model itself is returned when it already
    computes in `policy`."""
    if precision(model) == policy:
        return model
    config = model.get_config()
    _set_policies(config, policy)
    clone = type(model).from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def load(path, policy: str = "float32") -> keras.Model:
    """A saved cxr14 model (no optimizer state), computing in `policy`: float32 for inference."""
    return with_precision(keras.saving.load_model(path, compile=False), policy)


@keras.saving.register_keras_serializable(package="cxr14")
class FindingsLoss(keras.losses.Loss):
    """Binary cross-entropy per finding, optionally class-weighted (CheXNet's w+ = N_neg / N,
    w- = N_pos / N from the training split) and focal ((1 - p_t)^gamma), averaged over the findings
    each image is labelled for: a label of -1 (a collection that does not say) is masked, never
    taken as negative. On NIH every finding is labelled and this is the plain mean over 14."""

    def __init__(self, pos_weights=None, neg_weights=None, gamma=0.0, name="findings_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        ones = [1.0] * len(FINDINGS)
        self.pos_weights = [float(w) for w in (ones if pos_weights is None else pos_weights)]
        self.neg_weights = [float(w) for w in (ones if neg_weights is None else neg_weights)]
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        ops = keras.ops
        eps = keras.config.epsilon()
        p = ops.clip(ops.cast(y_pred, "float32"), eps, 1.0 - eps)
        y_true = ops.cast(y_true, "float32")
        mask = ops.cast(y_true >= 0, "float32")
        y = ops.maximum(y_true, 0.0)
        pos = ops.convert_to_tensor(self.pos_weights) * y * ops.log(p)
        neg = ops.convert_to_tensor(self.neg_weights) * (1.0 - y) * ops.log(1.0 - p)
        if self.gamma:
            pos, neg = pos * (1.0 - p) ** self.gamma, neg * p**self.gamma
        return -ops.sum((pos + neg) * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)

    def get_config(self):
        return {**super().get_config(), "pos_weights": self.pos_weights, "neg_weights": self.neg_weights,
                "gamma": self.gamma}  # fmt: skip


@keras.saving.register_keras_serializable(package="cxr14")
class FindingsAUC(keras.metrics.AUC):
    """Keras's multi-label AUC (the training log's `auroc`) over labelled images only (-1 labels weigh
    nothing), averaged over the findings the training split has both classes of (from its `positives`
    and `labelled` counts): a finding a collection never labels would count as an AUC of 0."""

    def __init__(self, positives=None, labelled=None, **kwargs):
        kwargs.setdefault("multi_label", True)
        kwargs.setdefault("num_labels", len(FINDINGS))
        if positives is not None and "label_weights" not in kwargs:
            weights = [float(0 < p < n) for p, n in zip(positives, labelled)]
            kwargs["label_weights"] = weights if any(weights) else None
        super().__init__(**kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(y_true, "float32")
        labelled = keras.ops.cast(y_true >= 0, "float32")
        return super().update_state(keras.ops.maximum(y_true, 0.0), y_pred, sample_weight=labelled)

    def get_config(self):
        config = super().get_config()
        if config.get("label_weights") is not None:  # a tensor, which a saved model's JSON cannot hold
            config["label_weights"] = [float(w) for w in keras.ops.convert_to_numpy(config["label_weights"])]
        return config


@keras.saving.register_keras_serializable(package="cxr14")
class ReplicaSafeLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras's dynamic loss scaling, with the overflow check made on every replica's gradients.

    Keras's LossScaleOptimizer, under a MirroredStrategy, decides whether a step's gradients are finite
    from the first replica's alone: its comment assumes they are already all-reduced, but Keras 3 sums
    them later, in the inner optimizer's apply. A float16 overflow on any other replica then goes
    unnoticed: the step is applied, the sum carries its inf into the weights, and the model computes
    NaN from then on while the loss scale never drops (the demo's fine-tune on two simulated GPUs, #27).
    Here every replica learns whether any replica overflowed before that check, so all skip the step
    together and the scale is halved, as on one GPU."""

    def apply(self, grads, trainable_variables=None):
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            overflowed = keras.ops.cast(keras.ops.logical_not(self.check_finite(grads)), "float32")
            anywhere = context.all_reduce(tf.distribute.ReduceOp.SUM, overflowed) > 0
            first = next(k for k, g in enumerate(grads) if g is not None)
            grads = list(grads)  # a NaN in one gradient: the first replica's check sees it too
            grads[first] = grads[first] + keras.ops.where(anywhere, float("nan"), 0.0)
        return super().apply(grads, trainable_variables)


def optimizer(learning_rate: float, policy: str) -> keras.optimizers.Optimizer:
    """Adam, with dynamic loss scaling that holds across replicas under mixed_float16 (Keras would
    otherwise wrap it in its own LossScaleOptimizer at compile time)."""
    adam = keras.optimizers.Adam(learning_rate)
    return ReplicaSafeLossScaleOptimizer(adam) if policy == "mixed_float16" else adam


def class_weights(positives, total, labelled=None) -> dict:
    """Per-finding weights from the training split's label counts: `positives` and, where a finding is
    not labelled on every one of the `total` images, the `labelled` count of each (0: weights 0)."""
    pos = [max(int(p), 0) for p in positives]
    known = [int(total)] * len(FINDINGS) if labelled is None else [int(n) for n in labelled]
    pos_w = [(n - p) / n if n else 0.0 for p, n in zip(pos, known)]
    neg_w = [p / n if n else 0.0 for p, n in zip(pos, known)]
    return {
        "positives": dict(zip(FINDINGS, pos)),
        "total": int(total),
        "labelled": dict(zip(FINDINGS, known)),
        "pos_weights": dict(zip(FINDINGS, pos_w)),
        "neg_weights": dict(zip(FINDINGS, neg_w)),
    }


def make_loss(name: str, weights: dict | None, focal_gamma: float) -> FindingsLoss:
    if name == "weighted_bce":
        return FindingsLoss(*([weights[kind][f] for f in FINDINGS] for kind in ("pos_weights", "neg_weights")))
    if name == "bce":
        return FindingsLoss()
    if name == "focal":
        return FindingsLoss(gamma=focal_gamma)
    raise ValueError(f"unknown loss {name!r}; choose weighted_bce, bce or focal")
