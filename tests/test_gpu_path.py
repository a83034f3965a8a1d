"""The GPU path of `train` (a MirroredStrategy, mixed precision) proven on the CPU: `train.simulate_gpus: 2`
mirrors over two logical CPU devices (conftest makes them) in mixed_float16, as on a machine with two GPUs.
The test demo runs cnn and its fine-tune cnn_site this way through every step of `rule all`."""

import json
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import (
    NIH_SAMPLE,
    TRAIN_PARAMS,
    KillAfterFirstEpoch,
    Killed,
    RecordEpochs,
    RecordWeights,
    needs_shared,
    train_into,
    write_easy_shards,
)
from cxr14 import conversion, engines, inference, models
from cxr14.constants import FINDINGS
from cxr14.steps import export
from cxr14.training import TrainingDiverged

# The GPU path's global batch (batch_size x 2 replicas) is the CPU's.
PARAMS = {key: value for key, value in TRAIN_PARAMS.items() if key != "batch_size"}
CPU = {"batch_size": 16, "simulate_gpus": 0}
GPU = {"batch_size": 8, "simulate_gpus": 2}


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    return write_easy_shards(tmp_path_factory.mktemp("easy"), splits=(("train", 168), ("val", 64)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return write_easy_shards(tmp_path_factory.mktemp("site"), seed=5, unlabelled=("Mass", "Nodule"))


class _CountBatches(keras.callbacks.Callback):
    """Training steps per epoch."""

    def __init__(self):
        super().__init__()
        self.steps = {}

    def on_train_batch_end(self, batch, logs=None):
        self.steps[self._epoch] = self.steps.get(self._epoch, 0) + 1

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


@pytest.fixture(scope="module")
def both_paths(easy, tmp_path_factory):
    """The same run trained on the CPU path and the GPU path: {path: (folder, summary, steps per epoch)},
    and the warnings each raised."""
    out = {}
    for name, device in (("cpu", CPU), ("gpu", GPU)):
        folder, count = tmp_path_factory.mktemp(name), _CountBatches()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = train_into(folder, easy["train"], easy["val"], extra_callbacks=[count], **PARAMS, **device)
        out[name] = folder, summary, count.steps, [str(w.message) for w in caught]
    return out


def test_the_gpu_path_trains_in_mixed_precision_on_two_replicas(both_paths):
    _, summary, _, _ = both_paths["gpu"]
    assert summary["device"] == {"gpus": 0, "simulated_gpus": 2, "replicas": 2, "precision": "mixed_float16",
                                 "global_batch": 16, "saved_model_computes_in": "float32"}  # fmt: skip
    assert both_paths["cpu"][1]["device"]["precision"] == "float32"


def test_both_paths_learn_the_same_within_noise(both_paths):
    cpu, gpu = (both_paths[p][1]["best_val_mean_auroc"] for p in ("cpu", "gpu"))
    assert cpu > 0.95 and gpu > 0.95 and abs(cpu - gpu) < 0.03


def test_every_epoch_sees_the_whole_train_split_on_both_paths(both_paths):
    """168 images in global batches of 16: 10 steps (160 images) every epoch, the last partial batch
    dropped; the epoch's length is known from the start, so Keras never runs out of data."""
    for path in ("cpu", "gpu"):
        _, summary, steps, caught = both_paths[path]
        assert steps == {epoch: 10 for epoch in range(4)}
        assert summary["train_images_per_epoch"] == 160 and summary["train_images"] == 168
        assert not [m for m in caught if "ran out of data" in m]


def test_a_model_trained_in_mixed_precision_is_saved_computing_in_float32(both_paths, easy):
    from cxr14.data import Shards, dataset

    folder, _, _, _ = both_paths["gpu"]
    saved = keras.saving.load_model(folder / "model.keras")
    policies = {layer.dtype_policy.name for layer in saved.get_layer("backbone").layers}
    assert policies == {"float32"} and models.precision(saved) == "float32"
    x = next(iter(dataset(Shards.from_manifest(easy["val"]), 16)))[0].numpy()
    in_mixed = models.with_precision(saved, "mixed_float16")
    assert models.precision(in_mixed) == "mixed_float16"
    assert in_mixed.get_layer("findings").dtype_policy.name == "float32"
    # the same weights: mixed precision only rounds the computation
    np.testing.assert_allclose(in_mixed.predict(x, verbose=0), saved.predict(x, verbose=0), atol=0.02)
    np.testing.assert_array_equal(models.with_precision(in_mixed, "float32").predict(x, verbose=0),
                                  saved.predict(x, verbose=0))  # fmt: skip


def test_a_model_saved_computing_in_mixed_precision_loads_for_inference_in_float32(tmp_path):
    """Models trained on a GPU before this version were saved computing in float16: scoring, predict, the
    app and the export load them in float32 all the same (`models.load`)."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        models.build("small_cnn", 32, "none", 0.0).save(tmp_path / "old.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert models.precision(keras.saving.load_model(tmp_path / "old.keras")) == "mixed_float16"
    assert models.precision(models.load(tmp_path / "old.keras")) == "float32"


@pytest.fixture(scope="module")
def gpu_exported(both_paths, tmp_path_factory):
    """The GPU-trained model's serving model (with TTA) in the three formats: (Keras model, {format: path})."""
    folder = tmp_path_factory.mktemp("gpu_export")
    net = models.load(both_paths["gpu"][0] / "model.keras")
    paths = {"saved_model": folder / "saved_model", "onnx": folder / "model.onnx", "tflite": folder / "m.tflite"}
    serving = conversion.serving_model(net, tta=True)
    conversion.write_onnx(serving, 32, folder / "converted.onnx")
    export.write_formats(serving, 32, paths, folder / "converted.onnx")
    return net, paths


def test_a_gpu_trained_model_exports_to_every_format_with_parity(gpu_exported, easy):
    """The serving formats are written from the float32 model: TFLite converts (a float16 graph needs
    Flex ops it lacks) and every format gives the Keras model's scores."""
    net, paths = gpu_exported
    batches = list(export.first_test_images(easy["val"], 16, None))
    logits = models.logits_model(net)
    reference = {n: s for names, x in batches for n, s in zip(names, engines.forward(logits, x, tta=True))}
    limits = {"saved_model": 1e-5, "onnx": 1e-5, "tflite": 1e-5}
    identity = {"findings": {f: {"method": "none"} for f in FINDINGS}}
    checked = export.check_parity(paths, reference, batches, {"nih": identity}, limits)
    assert all(c["images"] == 64 for c in checked.values())


@needs_shared
def test_on_real_nih_radiographs_predict_and_every_export_agree_for_a_gpu_trained_model(both_paths, gpu_exported):
    """The real full-size NIH PNGs through `predict`'s and the app's Predictor (the saved model, read and
    resized as the shards are) and through each exported format: the same logits."""
    from cxr14.images import read_gray

    _, paths = gpu_exported
    predictor = inference.Predictor(both_paths["gpu"][0] / "model.keras")
    predictor.engine.tta = True  # as the exports hold it
    x = np.stack([predictor.prepare(read_gray(p.read_bytes())) for p in sorted(NIH_SAMPLE.glob("*.png"))])
    assert x.shape == (3, 32, 32, 1)
    want = predictor.scores(x)
    for fmt, path in paths.items():
        np.testing.assert_allclose(export.LOADERS[fmt](path)(x)["logits"], want, atol=1e-5, err_msg=fmt)


def test_a_fine_tune_on_the_gpu_path_trains_the_head_then_everything_and_converges(both_paths, site, tmp_path):
    """cnn_site's case: a GPU-trained model fine-tuned on the GPU path, one head-only epoch first."""
    start = models.load(both_paths["gpu"][0] / "model.keras")
    record = RecordWeights()
    params = {**PARAMS, **GPU, "epochs": 4, "freeze_epochs": 1, "learning_rate": 0.0005, "data": "site"}
    summary = train_into(tmp_path, site["train"], site["val"], init=both_paths["gpu"][0] / "model.keras",
                         extra_callbacks=[record], **params)  # fmt: skip
    for a, b in zip(record.backbone[0], start.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)  # the head-only epoch left the backbone as it was
    assert any(not np.array_equal(a, b) for a, b in zip(record.backbone[3], record.backbone[0]))
    history = pd.read_csv(tmp_path / "history.csv")
    assert np.isfinite(history[["loss", "val_loss", "val_mean_auroc"]].to_numpy()).all()
    assert summary["best_val_mean_auroc"] > 0.9 and summary["device"]["precision"] == "mixed_float16"


def test_a_run_killed_on_the_gpu_path_resumes_after_its_last_epoch(easy, tmp_path):
    params = {**PARAMS, **GPU, "epochs": 3}
    with pytest.raises(Killed):
        train_into(tmp_path, easy["train"], easy["val"], extra_callbacks=[KillAfterFirstEpoch()], **params)
    record = RecordEpochs()
    summary = train_into(tmp_path, easy["train"], easy["val"], extra_callbacks=[record], **params)
    assert record.epochs == [1, 2] and summary["epochs_run"] == 3 and summary["epochs_this_run"] == 2


class _PoisonInEpoch(keras.callbacks.Callback):
    """Makes the head's weights NaN during epoch `epoch` (0-based), as a diverging update would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            head = self.model.get_layer("findings")
            head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])


@pytest.mark.parametrize("device", [CPU, GPU], ids=["cpu", "gpu"])
def test_a_diverging_run_stops_naming_the_run_epoch_and_causes_and_keeps_the_last_good_epoch(easy, tmp_path, device):
    out = tmp_path / "cnn_site"
    params = {**PARAMS, **device, "epochs": 4}
    with pytest.raises(TrainingDiverged) as error:
        train_into(out, easy["train"], easy["val"], extra_callbacks=[_PoisonInEpoch(1)], **params)
    message = str(error.value)
    assert message.startswith("run cnn_site diverged in epoch 2: the training loss is nan")
    assert "the 1 finished epochs are kept" in message and "no model was written" in message
    assert "train.learning_rate" in message
    assert ("train.precision: float32" in message) == (device is GPU)
    assert not (out / "model.keras").exists() and not (out / "training_summary.json").exists()
    assert list(pd.read_csv(out / "resume/history.csv").epoch) == [0]  # the NaN epoch left no row
    assert (out / "resume/best.keras").exists()


def test_nan_scores_on_val_are_named_not_left_to_scikit_learn(easy):
    """Validation scores that are NaN after a finite training loss (the fine-tune's case: scikit-learn's
    'Input contains NaN' before) stop training with the reason."""
    from cxr14.data import Shards, dataset
    from cxr14.training import validation_callback

    net = models.build("small_cnn", 32, "none", 0.0)
    head = net.get_layer("findings")
    head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])
    validation = validation_callback(dataset(Shards.from_manifest(easy["val"]), 16), models.make_loss("bce", None, 0),
                                      lambda epoch, what: TrainingDiverged(f"epoch {epoch}: {what}"))  # fmt: skip
    validation.set_model(net)
    with pytest.raises(TrainingDiverged, match=r"^epoch 3: 64 of 64 validation images score NaN or infinity$"):
        validation.on_epoch_end(2, {"loss": 0.1})


def test_serving_json_says_the_exports_compute_in_float32(both_paths):
    info = export.serving_info(run="cnn", model=both_paths["gpu"][0] / "model.keras", info={"image_size": 32},
                               tta=False, sites={"nih": {}}, files={}, trained=both_paths["gpu"][1])  # fmt: skip
    assert info["compute"] == {"dtype": "float32", "trained_in": "mixed_float16", "trained_on_replicas": 2}
    assert json.dumps(info)


@pytest.mark.parametrize("overflows_on", [0, 1])
def test_a_step_that_overflows_on_any_replica_is_skipped_on_every_replica(overflows_on):
    """The cause of the fine-tune's NaNs: Keras's LossScaleOptimizer looks for overflow in the first
    replica's gradients only (they are summed later), so an inf on the second replica reached the weights.
    cxr14's optimizer skips the step on both and halves the loss scale (Keras's own fails the second case)."""
    import tensorflow as tf

    from cxr14.devices import logical_cpus, mirrored_strategy

    strategy = mirrored_strategy(tuple(logical_cpus(2)))
    with strategy.scope():
        weights = keras.Variable(np.ones(3, np.float32))
        optimizer = models.optimizer(0.1, "mixed_float16")
        optimizer.build([weights])

    @tf.function
    def step(bad_replica):
        def on_replica():
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            gradient = tf.where(replica == bad_replica, tf.constant([1.0, np.inf, 1.0]), tf.ones(3))
            optimizer.apply([gradient], [weights])

        strategy.run(on_replica)

    scale = float(optimizer.dynamic_scale.numpy())
    step(tf.constant(overflows_on))
    np.testing.assert_array_equal(weights.numpy(), np.ones(3))  # skipped, not NaN
    assert float(optimizer.dynamic_scale.numpy()) == scale / 2
    step(tf.constant(-1))  # no replica overflows: the step is taken
    assert np.isfinite(weights.numpy()).all() and (weights.numpy() < 1).all()
