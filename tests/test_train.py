import dataclasses
import json
import urllib.error

import keras
import numpy as np
import pandas as pd
import pytest

from conftest import TRAIN_PARAMS as PARAMS
from conftest import KillAfterFirstEpoch, Killed, RecordEpochs, RecordWeights, train_into, write_easy_shards
from cxr14 import models
from cxr14.constants import FINDINGS
from cxr14.data import Shards, dataset
from cxr14.files import sha256_file


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    return write_easy_shards(tmp_path_factory.mktemp("easy"))


class _BestScores(keras.callbacks.Callback):
    """The trained network's own scores on `x` at each epoch that beats the best val mean AUROC so
    far: the network the train step saves as its model."""

    def __init__(self, x):
        super().__init__()
        self.x, self.best, self.scores = x, -np.inf, None

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_mean_auroc"] > self.best:
            self.best, self.scores = logs["val_mean_auroc"], self.model.predict(self.x, verbose=0)


@pytest.fixture(scope="module")
def val_batch(easy):
    return next(iter(dataset(Shards.from_manifest(easy["val"]), 8)))[0]


@pytest.fixture(scope="module")
def trained(easy, val_batch, tmp_path_factory):
    """A trained model's folder, its summary, and the in-memory network's scores on `val_batch`."""
    out = tmp_path_factory.mktemp("model")
    best = _BestScores(val_batch)
    return out, train_into(out, easy["train"], easy["val"], extra_callbacks=[best], **PARAMS), best.scores


def test_loss_falls_and_val_auroc_rises_above_chance(trained):
    out, summary, _ = trained
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 4 and list(hist.epoch) == [0, 1, 2, 3]
    assert hist.loss.iloc[-1] < hist.loss.iloc[0]
    assert summary["best_val_mean_auroc"] > 0.8
    assert set(summary["best_val_auroc"]) == set(FINDINGS)
    for name in ("model.keras", "class_weights.json", "training_summary.json"):
        assert (out / name).exists()
    assert not (out / "resume").exists()


def test_saved_model_reloads_and_predicts_as_the_trained_network(trained, val_batch):
    out, _, trained_scores = trained
    model = models.load(out / "model.keras")
    info = models.info(model)
    assert info["labels"] == list(FINDINGS) and info["image_size"] == 32 and info["backbone"] == "small_cnn"
    np.testing.assert_allclose(model.predict(val_batch, verbose=0), trained_scores, rtol=0, atol=1e-6)
    assert np.ptp(trained_scores) > 0.01  # a network that learnt something, not a constant


def test_summary_records_data_weights_and_config(trained, easy):
    _, summary, _ = trained
    manifest = json.loads(easy["train"].read_text())
    assert summary["data"]["train"] == [s["sha256"] for s in manifest["shards"]]
    assert summary["config"] == PARAMS | {"init": None, "data": "nih", "freeze_epochs": 0, "precision": "auto",
                                          "simulate_gpus": 0}  # fmt: skip
    assert summary["train_images"] == 160 and summary["trained_on"] == ["nih"]
    assert summary["class_weights"]["total"] == 160
    assert summary["epochs_run"] == 4 and summary["device"]["gpus"] == 0


def test_weighted_bce_matches_a_hand_computation():
    y = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    p = np.array([[0.8, 0.3], [0.4, 0.1]], np.float32)
    pos_w, neg_w = [0.9, 0.7], [0.1, 0.3]
    by_hand = np.mean(
        [
            -(0.9 * np.log(0.8) + 0.3 * np.log(1 - 0.3)) / 2,
            -(0.1 * np.log(1 - 0.4) + 0.3 * np.log(1 - 0.1)) / 2,
        ]
    )
    assert float(models.FindingsLoss(pos_w, neg_w)(y, p)) == pytest.approx(by_hand, rel=1e-5)


def test_the_loss_masks_findings_a_collection_does_not_label():
    """-1 (not labelled) is left out of the loss, not taken as negative: whatever the model says
    there changes nothing, and an image's loss is the mean over its labelled findings."""
    y = np.array([[1.0, -1.0, 0.0], [-1.0, 0.0, -1.0]], np.float32)
    p = np.array([[0.8, 0.3, 0.2], [0.4, 0.1, 0.9]], np.float32)
    loss = models.FindingsLoss([0.9, 0.7, 0.6], [0.1, 0.3, 0.4])
    by_hand = np.mean([-(0.9 * np.log(0.8) + 0.4 * np.log(0.8)) / 2, -(0.3 * np.log(0.9)) / 1])
    assert float(loss(y, p)) == pytest.approx(by_hand, rel=1e-5)
    moved = p.copy()
    moved[y < 0] = 0.99
    assert float(loss(y, moved)) == pytest.approx(float(loss(y, p)), rel=1e-6)


@pytest.mark.parametrize(
    ("name", "keras_loss"),
    [("bce", keras.losses.BinaryCrossentropy()), ("focal", keras.losses.BinaryFocalCrossentropy(gamma=2.0))],
)
def test_unweighted_losses_match_keras_on_fully_labelled_data(name, keras_loss):
    rng = np.random.default_rng(0)
    y = (rng.random((32, len(FINDINGS))) < 0.3).astype(np.float32)
    p = rng.uniform(0.02, 0.98, (32, len(FINDINGS))).astype(np.float32)
    ours = models.make_loss(name, None, 2.0)
    assert float(ours(y, p)) == pytest.approx(float(keras_loss(y, p)), rel=1e-4)


def test_class_weights_count_only_labelled_images():
    w = models.class_weights([10, 0] + [0] * 12, 100, [40, 0] + [100] * 12)
    assert w["pos_weights"]["Atelectasis"] == pytest.approx(0.75) and w["neg_weights"]["Atelectasis"] == 0.25
    assert w["pos_weights"]["Cardiomegaly"] == 0.0 == w["neg_weights"]["Cardiomegaly"]  # never labelled


def test_class_weights_from_counts():
    w = models.class_weights([10] + [0] * 13, 100)
    assert w["pos_weights"]["Atelectasis"] == pytest.approx(0.9) and w["neg_weights"]["Atelectasis"] == pytest.approx(
        0.1
    )
    assert w["pos_weights"]["Hernia"] == 1.0 and w["neg_weights"]["Hernia"] == 0.0


def test_a_run_killed_after_epoch_1_resumes_at_epoch_2(easy, tmp_path):
    params = {**PARAMS, "epochs": 3}
    with pytest.raises(Killed):
        train_into(tmp_path, easy["train"], easy["val"], **params, extra_callbacks=[KillAfterFirstEpoch()])
    assert (tmp_path / "resume/backup").exists() and not (tmp_path / "model.keras").exists()
    record = RecordEpochs()
    summary = train_into(tmp_path, easy["train"], easy["val"], **params, extra_callbacks=[record])
    assert record.epochs == [1, 2]
    assert list(pd.read_csv(tmp_path / "history.csv").epoch) == [0, 1, 2]
    assert summary["epochs_run"] == 3 and summary["epochs_this_run"] == 2


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A collection's shards: other images, and two findings it does not label (-1)."""
    return write_easy_shards(tmp_path_factory.mktemp("site"), seed=5, unlabelled=("Mass", "Nodule"))


def test_a_fine_tune_starts_from_the_run_trains_the_head_first_and_masks_what_the_site_does_not_label(
    trained, site, tmp_path
):
    out, _, _ = trained
    start = models.load(out / "model.keras")
    weights = RecordWeights()
    params = {**PARAMS, "epochs": 3, "freeze_epochs": 1, "learning_rate": 0.001, "data": "site"}
    summary = train_into(tmp_path, site["train"], site["val"], extra_callbacks=[weights], init=out / "model.keras",
                         **params)  # fmt: skip
    # epoch 1: only the head moved; then the backbone too
    for a, b in zip(weights.backbone[0], start.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(weights.head[0], start.get_layer("findings").get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(weights.backbone[2], weights.backbone[0]))
    assert summary["init"]["model_sha256"] == sha256_file(out / "model.keras") and summary["trained_on"] == ["site"]
    assert summary["class_weights"]["labelled"]["Mass"] == 0 and summary["class_weights"]["pos_weights"]["Mass"] == 0
    assert summary["class_weights"]["labelled"]["Atelectasis"] == 160 and summary["best_val_auroc"]["Mass"] is None
    assert list(pd.read_csv(tmp_path / "history.csv").epoch) == [0, 1, 2]
    tuned = models.load(tmp_path / "model.keras")
    layers = [*tuned.layers, *tuned.get_layer("backbone").layers]
    assert all(layer.trainable for layer in layers)  # saved ready to be fine-tuned again
    assert models.info(tuned) == models.info(start)


def test_a_fine_tune_killed_in_its_second_phase_resumes_there(trained, site, tmp_path):
    out, _, _ = trained
    params = {**PARAMS, "epochs": 3, "freeze_epochs": 1, "learning_rate": 0.001}
    with pytest.raises(Killed):  # killed as epoch 2 (the first with the backbone) begins
        train_into(tmp_path, site["train"], site["val"], init=out / "model.keras", **params,
                   extra_callbacks=[KillAfterFirstEpoch()])  # fmt: skip
    assert (tmp_path / "resume/frozen.keras").exists()
    record = RecordEpochs()
    summary = train_into(tmp_path, site["train"], site["val"], init=out / "model.keras", **params,
                         extra_callbacks=[record])  # fmt: skip
    assert record.epochs == [1, 2] and summary["epochs_run"] == 3
    assert list(pd.read_csv(tmp_path / "history.csv").epoch) == [0, 1, 2]


def test_nih_and_a_collection_train_together(easy, site, tmp_path):
    """`data: [nih, site]`: the train splits pooled, the val splits pooled; a finding the collection
    does not label is weighted by the images that do."""
    params = {**PARAMS, "epochs": 1, "data": ["nih", "site"]}
    summary = train_into(tmp_path, [easy["train"], site["train"]], [easy["val"], site["val"]], **params)
    assert summary["train_images"] == 320 and summary["val_images"] == 128 and summary["trained_on"] == ["nih", "site"]
    weights = summary["class_weights"]
    assert weights["labelled"]["Mass"] == 160 and weights["labelled"]["Atelectasis"] == 320
    assert len(summary["data"]["train"]) == len(json.loads(easy["train"].read_text())["shards"]) * 2


def test_sources_of_other_layouts_are_not_pooled(easy, tmp_path):
    other = write_easy_shards(tmp_path, splits=(("train", 8),), size=48)
    with pytest.raises(ValueError, match=r"different shard layouts: .*\(32 px, raw\), .*\(48 px, raw\)"):
        Shards.pooled([easy["train"], other["train"]])


def test_a_starting_model_of_another_size_is_refused(trained, tmp_path):
    out, _, _ = trained
    other = write_easy_shards(tmp_path / "48", splits=(("train", 16), ("val", 16)), size=48)
    with pytest.raises(ValueError, match=r"takes 32 px images .* the training shards are 48 px"):
        train_into(tmp_path / "run", other["train"], other["val"], init=out / "model.keras", **PARAMS)


def test_imagenet_weights_offline_fail_with_a_clear_message(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(models.WeightsUnavailable, match=r"weights: none.*weights file|weights: none"):
        models.build("mobilenetv3small", 64, "imagenet", dropout=0.2)


def test_local_weights_file_is_used(tmp_path):
    net = models.BACKBONES["small_cnn"][0](32, None)
    net.save_weights(tmp_path / "w.weights.h5")
    model = models.build("small_cnn", 32, str(tmp_path / "w.weights.h5"), dropout=0.2)
    for a, b in zip(model.get_layer("backbone").get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(models.WeightsUnavailable, match="missing.h5"):
        models.build("small_cnn", 32, str(tmp_path / "missing.h5"), dropout=0.2)


@pytest.mark.parametrize("backbone", ["mobilenetv3small", "densenet121"])
def test_imagenet_backbones_take_grayscale(backbone):
    model = models.build(backbone, 64 if backbone == "mobilenetv3small" else 32, "none", dropout=0.2)
    size = model.input_shape[1]
    out = model.predict(np.full((2, size, size, 1), 128.0, np.float32), verbose=0)
    assert out.shape == (2, 14) and out.dtype == np.float32 and np.all((out > 0) & (out < 1))
    assert len(model.get_layer("backbone").output.shape) == 4


def test_a_killed_run_is_not_resumed_with_other_settings(easy, tmp_path):
    with pytest.raises(Killed):
        train_into(
            tmp_path, easy["train"], easy["val"], **{**PARAMS, "epochs": 2}, extra_callbacks=[KillAfterFirstEpoch()]
        )
    record = RecordEpochs()
    train_into(
        tmp_path,
        easy["train"],
        easy["val"],
        **{**PARAMS, "epochs": 2, "learning_rate": 0.001},
        extra_callbacks=[record],
    )
    assert record.epochs == [0, 1]
    assert list(pd.read_csv(tmp_path / "history.csv").epoch) == [0, 1]


def test_train_settings_are_the_schemas_train_section():
    from cxr14.settings import TrainSettings, defaults

    assert [f.name for f in dataclasses.fields(TrainSettings)] == list(defaults("train"))
    with pytest.raises(TypeError, match="epoch"):
        TrainSettings.of({**PARAMS, "epoch": 3})
    with pytest.raises(TypeError, match="seed"):
        TrainSettings.of({k: v for k, v in PARAMS.items() if k != "seed"})


def test_a_damaged_shard_is_named_before_training_starts(tmp_path):
    from cxr14.shard_io import CorruptShard

    manifests = write_easy_shards(tmp_path, (("train", 32), ("val", 16)), size=16, per_shard=16)
    shard = sorted((tmp_path / "shards/train").glob("*.tfrecord"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, another sha256
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShard, match=rf"{shard.name}: damaged .*delete the shard\(s\) and run Snakemake again"):
        train_into(tmp_path / "model", manifests["train"], manifests["val"], **PARAMS)
    assert not (tmp_path / "model/model.keras").exists()
    shard.unlink()
    with pytest.raises(CorruptShard, match=rf"{shard.name}: missing"):
        train_into(tmp_path / "model", manifests["train"], manifests["val"], **PARAMS)


def test_cxr14_verify_names_each_damaged_shard(tmp_path, capsys):
    from cxr14.cli import main

    write_easy_shards(tmp_path, (("train", 32), ("val", 16)), size=16, per_shard=16)
    assert main(["verify", str(tmp_path / "shards")]) == 0
    assert capsys.readouterr().out.count("ok ") == 2
    shard = sorted((tmp_path / "shards/val").glob("*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes()[:-1])  # cut short
    assert main(["verify", str(tmp_path / "shards")]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED {shard.parent}: {shard}: damaged" in out and "ok      " in out
    assert main(["verify", str(tmp_path / "nowhere")]) == 1


@pytest.mark.parametrize("backbone", ["convnext_tiny", "efficientnetv2b0", "densenet169", "densenet201"])
def test_the_newer_backbones_build_train_a_step_save_and_reload(backbone, tmp_path):
    """Each backbone researchers now compare against takes the same grayscale input, trains, and comes
    back from its .keras file the way users load it, with the same outputs."""
    import keras

    import cxr14  # noqa: F401  (registers cxr14's layer and loss, as users import it)

    model = models.build(backbone, 32, "none", dropout=0.2)
    # Eager: tracing the train step of a 200-layer network costs minutes on a CPU, and proves nothing more.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy(), run_eagerly=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    before = model(x, training=False).numpy()
    loss = model.train_on_batch(x, rng.integers(0, 2, (2, 14)).astype(np.float32))
    after = model(x, training=False).numpy()
    assert np.isfinite(loss) and not np.allclose(before, after) and models.info(model)["backbone"] == backbone
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(again(x, training=False).numpy(), after, atol=1e-6)
    assert len(again.get_layer("backbone").output.shape) == 4  # Grad-CAM's feature map
