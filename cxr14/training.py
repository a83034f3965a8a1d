"""The trainer: a run fitted on its train shards, the best epoch picked by mean AUROC on its val shards,
resumable after a kill (Keras's BackupAndRestore, with a key of the settings and data the state belongs
to), stopped with a clear message when it diverges. The train step (`steps.train`) wires a run's
settings and files to `fit_run`.

The model selection's AUROC is scikit-learn's, here rather than `metrics`: a change to the statistics
the evaluation reports then retrains nothing (docs/rerunning.md)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import models
from .constants import FINDINGS
from .data import Shards, dataset, label_counts
from .devices import devices_for
from .files import atomic, sha256_file, write_json
from .settings import TrainSettings, as_param, sources

log = logging.getLogger(__name__)


def per_class_auroc(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float | None]:
    """AUROC per finding over the images labelled for it; None where those have only one class."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k, name in enumerate(FINDINGS):
        known = y_true[:, k] >= 0
        col = y_true[known, k]
        out[name] = float(roc_auc_score(col, y_score[known, k])) if 0 < col.sum() < len(col) else None
    return out


def mean_auroc(aurocs: dict) -> float:
    values = [v for v in aurocs.values() if v is not None]
    return float(np.mean(values)) if values else float("nan")


class TrainingDiverged(RuntimeError):
    """Training gave a non-finite loss or scores; the message names the run, the epoch and what to try."""


def divergence_message(run: str, epoch: int, what: str, settings: TrainSettings, precision: str, kept: str) -> str:
    """Why a run stopped: what went non-finite in which epoch (1-based), what was kept, the likely causes."""
    causes = [
        f"the learning rate ({settings.learning_rate:g}): try a lower train.learning_rate"
        + (
            f" (from epoch {settings.freeze_epochs + 1} on the whole network trains at it, not only the head)"
            if settings.freeze_epochs and epoch > settings.freeze_epochs
            else ""
        )
    ]
    if precision != "float32":
        causes.append(f"mixed precision ({precision}): train.precision: float32 rules it out")
    if settings.init:
        causes.append(f"a starting model ({settings.init}) far from this data: more train.freeze_epochs")
    return (
        f"run {run} diverged in epoch {epoch}: {what}. Training stopped; {kept}, and no model was written. "
        "Likely causes: " + "; ".join(causes) + "."
    )


def validation_callback(val_ds, loss_fn, diverged):
    class Validation(keras.callbacks.Callback):
        """One pass over val per epoch: val_loss, val_mean_auroc and val_auroc_<finding> into the logs
        (it runs before the callbacks that monitor them). A non-finite training loss or val score stops
        training here, before the epoch's model, history row or backup is written: `diverged(epoch,
        what)` gives the error."""

        def on_epoch_end(self, epoch, logs=None):
            if not np.isfinite(logs.get("loss", 0.0)):
                raise diverged(epoch + 1, f"the training loss is {logs['loss']}")
            ys, ps = [], []
            for x, y in val_ds:
                ps.append(keras.ops.convert_to_numpy(self.model(x, training=False)).astype(np.float32))
                ys.append(y.numpy())
            y, p = np.concatenate(ys), np.concatenate(ps)
            bad = ~np.isfinite(p)
            if bad.any():
                images = f"{bad.any(axis=1).sum()} of {len(p)} validation images"
                raise diverged(epoch + 1, f"{images} score NaN or infinity")
            aurocs = per_class_auroc(y, p)
            logs["val_loss"] = float(np.mean(np.asarray(loss_fn(y, p))))
            logs["val_mean_auroc"] = mean_auroc(aurocs)
            for name, value in aurocs.items():
                logs[f"val_auroc_{name}"] = float("nan") if value is None else value
            log.info("epoch %d: val_loss %.4f val_mean_auroc %.4f", epoch + 1, logs["val_loss"], logs["val_mean_auroc"])

    return Validation()


def best_model_callback(path: Path, best_so_far: float | None):
    class BestModel(keras.callbacks.Callback):
        """Keep the model of the best val mean AUROC at `path`, written atomically: a kill while
        saving leaves the previous best intact (Keras's ModelCheckpoint writes in place)."""

        def __init__(self):
            super().__init__()
            self.best = -np.inf if best_so_far is None else best_so_far

        def on_epoch_end(self, epoch, logs=None):
            score = logs["val_mean_auroc"]
            if score > self.best:
                self.best = score
                with atomic(path) as staged:
                    self.model.save(staged)

    return BestModel()


def read_history(path):
    import pandas as pd

    return pd.read_csv(path).drop_duplicates("epoch", keep="last").reset_index(drop=True)


def backed_up_epochs(backup: Path) -> int:
    """How many epochs the BackupAndRestore state in `backup` holds."""
    state = backup / "training_metadata.json"
    return json.loads(state.read_text())["epoch"] if state.exists() else 0


def trainable(net):
    """A loaded model with every layer trainable again (a model saved while its backbone was frozen
    for head-only epochs remembers that)."""
    net.trainable = True
    for layer in net.layers:  # (a Functional model's setter does not reach its layers; a plain layer's does)
        if isinstance(layer, keras.Model):
            trainable(layer)
        else:
            layer.trainable = True
    return net


def starting_model(init, image_size: int, policy: str):
    """A fine-tune's starting model, checked against the shards it will train on, computing in `policy`."""
    net = trainable(models.load(init, policy))
    info = models.info(net)
    if info["image_size"] != image_size or list(info["labels"]) != list(FINDINGS):
        raise ValueError(
            f"{init} takes {info['image_size']} px images and labels {info['labels']}, but the training shards "
            f"are {image_size} px with labels {list(FINDINGS)}: a fine-tune keeps its starting model's input"
        )
    return net


def fit_run(train_manifests, val_manifests, init, model, summary, history, class_weights, tensorboard,
            resume_dir: Path, run: str, settings: TrainSettings, extra_callbacks=()) -> dict:  # fmt: skip
    """Fit run `run` as the train step describes (`steps.train.train`): devices, data, model, the
    resumable epochs, then the best model, its history and summary written."""
    devices = devices_for(settings)  # first: simulated devices must be made before TensorFlow starts
    strategy = devices.strategy
    keras.utils.set_random_seed(settings.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    train_src, val_src = Shards.pooled(train_manifests, verify=True), Shards.pooled(val_manifests, verify=True)
    if train_src.image_size != val_src.image_size:
        raise ValueError(f"train shards are {train_src.image_size} px but val shards {val_src.image_size} px")
    replicas = strategy.num_replicas_in_sync
    batch = settings.batch_size * replicas

    positives, labelled, total = label_counts(train_src)
    steps = total // batch  # every epoch: the whole train split, its last partial batch dropped
    if not steps:
        raise ValueError(f"the train split has {total} images, fewer than one batch of {batch} "
                         f"(train.batch_size {settings.batch_size} x {replicas} replicas)")  # fmt: skip
    weights = models.class_weights(positives, total, labelled)
    write_json(weights, class_weights)
    loss_fn = models.make_loss(settings.loss, weights, settings.focal_gamma)

    # The cardinality stated, so Keras runs every epoch to the end of the split on every path (it
    # otherwise learns an epoch's length by running out of data), and tf.data checks it. One machine's
    # MirroredStrategy splits each batch between its replicas: no file sharding (whose rewrite would drop
    # the check).
    unsharded = tf.data.Options()
    unsharded.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    train_ds = (
        dataset(train_src, batch, training=True, augment=settings.augment, seed=settings.seed, cache=settings.cache)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .with_options(unsharded)
    )
    val_ds = dataset(val_src, batch, cache=settings.cache)
    with strategy.scope():
        if init is None:
            net = models.build(settings.backbone, train_src.image_size, settings.weights, settings.dropout)
        else:
            net = starting_model(init, train_src.image_size, devices.precision)

    # State that survives a killed run (not a Snakemake output, so Snakemake leaves it alone). It is
    # only resumed for the same settings, data and starting model: a changed learning rate starts afresh.
    best_path, history_path = resume_dir / "best.keras", resume_dir / "history.csv"
    frozen_path = resume_dir / "frozen.keras"  # the model once its head-only epochs are done
    data = {
        split: [s["sha256"] for s in src.manifest["shards"]] for split, src in (("train", train_src), ("val", val_src))
    }
    run_key = {"settings": as_param(settings), **data, "init": init and sha256_file(init)}
    key_path = resume_dir / "run.json"
    if key_path.exists() and json.loads(key_path.read_text()) == run_key and history_path.exists():
        log.info("resuming from %s (the epochs finished so far: %d)", resume_dir, len(read_history(history_path)))
    else:
        if resume_dir.exists():
            log.info("%s holds a run with other settings or data: starting afresh", resume_dir)
        shutil.rmtree(resume_dir, ignore_errors=True)
        resume_dir.mkdir(parents=True)
        write_json(run_key, key_path)

    def diverged(epoch: int, what: str) -> TrainingDiverged:
        done = read_history(history_path) if history_path.exists() else None
        if done is None or done.empty:
            kept = "no epoch had finished"
        else:
            best = done.loc[done.val_mean_auroc.idxmax()]
            kept = (f"the {len(done)} finished epochs are kept in {resume_dir} (the best, epoch {int(best.epoch) + 1}, "
                    f"val mean AUROC {best.val_mean_auroc:.4f})")  # fmt: skip
        error = TrainingDiverged(divergence_message(run, epoch, what, settings, devices.precision, kept))
        log.error("%s", error)
        return error

    def fit(first_epoch: int, last_epoch: int, backup: Path):
        """Epochs first..last (0-based, last excluded)."""
        best_so_far = float(read_history(history_path).val_mean_auroc.max()) if history_path.exists() else None
        if backup.exists():
            log.info(
                "resuming after epoch %d, the last finished one, from %s (best val mean AUROC so far %s)",
                backed_up_epochs(backup),
                backup,
                best_so_far,
            )
        with strategy.scope():
            net.compile(
                optimizer=models.optimizer(settings.learning_rate, devices.precision),
                loss=loss_fn,
                metrics=[models.FindingsAUC(positives, labelled, name="auroc")],
            )
        # The backup comes last: an epoch is only marked done once its history row and best model are
        # written, so a kill in between redoes that epoch (its row is replaced) rather than losing it.
        callbacks = [
            validation_callback(val_ds, loss_fn, diverged),
            best_model_callback(best_path, best_so_far),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=settings.lr_factor,
                patience=settings.lr_patience,
                min_lr=settings.learning_rate * 1e-3,
            ),
            keras.callbacks.EarlyStopping(
                monitor="val_mean_auroc", mode="max", patience=settings.early_stopping_patience
            ),
            keras.callbacks.CSVLogger(str(history_path), append=True),
            keras.callbacks.TensorBoard(str(tensorboard), write_graph=False, profile_batch=0),
            *extra_callbacks,
            keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True),
        ]
        return net.fit(train_ds, initial_epoch=first_epoch, epochs=last_epoch, callbacks=callbacks, verbose=2).epoch

    start = time.perf_counter()
    frozen = min(settings.freeze_epochs, settings.epochs)
    epochs_this_run = []
    if frozen and not frozen_path.exists():
        net.get_layer("backbone").trainable = False
        epochs_this_run += fit(0, frozen, resume_dir / "backup_frozen")
        with atomic(frozen_path) as staged:
            net.save(staged)
    if frozen:  # the whole network trains on from the saved model: a fresh one, which keeps no start epoch
        with strategy.scope():  # that BackupAndRestore gave the first phase's fit
            net = trainable(models.load(frozen_path, devices.precision))
    if settings.epochs > frozen:
        epochs_this_run += fit(frozen, settings.epochs, resume_dir / "backup")
    seconds = time.perf_counter() - start

    # (A best epoch of the head-only ones was saved with the backbone frozen; a model is saved trainable.)
    best = trainable(models.load(best_path)) if best_path.exists() else models.with_precision(net, "float32")
    with atomic(model) as staged:
        best.save(staged)
    hist = read_history(history_path)
    with atomic(history) as staged:
        hist.to_csv(staged, index=False)

    best_row = hist.loc[hist.val_mean_auroc.idxmax()]
    result = {
        "backbone": settings.backbone,
        "image_size": train_src.image_size,
        "init": init and {"model": str(init), "model_sha256": sha256_file(init)},
        "trained_on": sources(settings.data),
        "epochs_run": int(len(hist)),
        "best_epoch": int(best_row.epoch) + 1,
        "best_val_mean_auroc": float(best_row.val_mean_auroc),
        "best_val_auroc": {
            f: (None if np.isnan(best_row[f"val_auroc_{f}"]) else float(best_row[f"val_auroc_{f}"])) for f in FINDINGS
        },
        "train_images": total,
        "train_images_per_epoch": steps * batch,
        "val_images": val_src.images,
        "class_weights": weights,
        "config": as_param(settings),
        "data": data,
        "device": {**devices.describe(), "global_batch": batch, "saved_model_computes_in": "float32"},
        "seconds_this_run": round(seconds, 1),
        "epochs_this_run": len(epochs_this_run),
        "model_sha256": sha256_file(model),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    write_json(result, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)
    log.info("best val mean AUROC %.4f at epoch %d", result["best_val_mean_auroc"], result["best_epoch"])
    return result
