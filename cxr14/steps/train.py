"""Train a cxr14 model on the train/val shards: GPU-ready (mixed precision, MirroredStrategy),
resumable (BackupAndRestore), with class-imbalance handling and per-finding validation AUROC."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import FINDINGS
from ..files import atomic, sha256_file, write_json
from ..settings import TrainSettings, as_param, sources

log = logging.getLogger(__name__)


def label_counts(shards) -> tuple[np.ndarray, np.ndarray, int]:
    """Positives and labelled images per finding, and the number of images, of a split's shards (a
    collection's -1 labels are counted as neither)."""
    import tensorflow as tf

    spec = {"labels": tf.io.FixedLenFeature([len(FINDINGS)], tf.int64)}
    ds = tf.data.TFRecordDataset(shards.files).batch(4096).map(lambda r: tf.io.parse_example(r, spec)["labels"])
    pos, labelled, total = np.zeros(len(FINDINGS), np.int64), np.zeros(len(FINDINGS), np.int64), 0
    for labels in ds:
        labels = labels.numpy()
        pos += (labels == 1).sum(axis=0)
        labelled += (labels >= 0).sum(axis=0)
        total += int(labels.shape[0])
    return pos, labelled, total


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


def _validation_callback(val_ds, loss_fn, diverged):
    import keras

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


def _best_model_callback(path: Path, best_so_far: float | None):
    import keras

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


@dataclass(frozen=True)
class Devices:
    """Where a run trains: the distribution strategy, its devices and the dtype policy."""

    strategy: object
    gpus: int  # physical GPUs in use
    simulated_gpus: int  # logical CPU devices standing in for GPUs (settings.simulate_gpus)
    precision: str

    def describe(self) -> dict:
        return {"gpus": self.gpus, "simulated_gpus": self.simulated_gpus,
                "replicas": self.strategy.num_replicas_in_sync, "precision": self.precision}  # fmt: skip


def _logical_cpus(n: int) -> list[str]:
    """`n` logical CPU devices for a MirroredStrategy to mirror over, as it would over n GPUs."""
    import tensorflow as tf

    try:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # the runtime has started (training in a process that already ran TensorFlow)
        pass
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(cpus) < n:
        raise RuntimeError(
            f"train.simulate_gpus: {n} needs {n} logical CPU devices, but TensorFlow started in this process "
            f"with {len(cpus)}; set them up before TensorFlow runs (tf.config.set_logical_device_configuration)"
        )
    return cpus[:n]


def _devices(settings: TrainSettings) -> Devices:
    """The GPU path (a MirroredStrategy over every GPU, mixed precision unless `settings.precision` says
    otherwise) where there are GPUs or `settings.simulate_gpus` asks for it on the CPU; else the CPU's
    default strategy in float32. Sets Keras's global dtype policy (`train` restores it)."""
    import keras
    import tensorflow as tf

    if settings.simulate_gpus:
        gpus, mirrored = [], _logical_cpus(settings.simulate_gpus)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        mirrored = [d.name for d in gpus]
    precision = settings.precision
    if precision == "auto":
        precision = "mixed_float16" if mirrored else "float32"
    keras.mixed_precision.set_global_policy(precision)
    strategy = _mirrored(tuple(mirrored)) if mirrored else tf.distribute.get_strategy()
    return Devices(strategy, len(gpus), settings.simulate_gpus, precision)


@functools.cache
def _mirrored(devices: tuple[str, ...]):
    """One MirroredStrategy per device set and process: a second one numbers its collective ops afresh,
    and its first all-reduce then meets the first one's (a shape-mismatch abort, training twice in a process)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


def _read_history(path):
    import pandas as pd

    return pd.read_csv(path).drop_duplicates("epoch", keep="last").reset_index(drop=True)


def _backed_up_epochs(backup: Path) -> int:
    """How many epochs the BackupAndRestore state in `backup` holds."""
    state = backup / "training_metadata.json"
    return json.loads(state.read_text())["epoch"] if state.exists() else 0


def _trainable(net):
    """A loaded model with every layer trainable again (a model saved while its backbone was frozen
    for head-only epochs remembers that)."""
    import keras

    net.trainable = True
    for layer in net.layers:  # (a Functional model's setter does not reach its layers; a plain layer's does)
        if isinstance(layer, keras.Model):
            _trainable(layer)
        else:
            layer.trainable = True
    return net


def _starting_model(init, image_size: int, policy: str):
    """A fine-tune's starting model, checked against the shards it will train on, computing in `policy`."""
    from .. import models

    net = _trainable(models.load(init, policy))
    info = models.info(net)
    if info["image_size"] != image_size or list(info["labels"]) != list(FINDINGS):
        raise ValueError(
            f"{init} takes {info['image_size']} px images and labels {info['labels']}, but the training shards "
            f"are {image_size} px with labels {list(FINDINGS)}: a fine-tune keeps its starting model's input"
        )
    return net


def train(
    *,
    train_manifests: list,
    val_manifests: list,
    init,
    model,
    summary,
    history,
    class_weights,
    tensorboard,
    resume_dir,
    run: str,
    settings: TrainSettings,
    threads: int | None = None,
    extra_callbacks=(),
) -> dict:
    """Step `train`: fit run `run` on the train shards of every source of `train.data` (`train_manifests`,
    pooled), pick the best epoch by mean AUROC on their val shards, and write `model` (.keras, computing
    in float32 whatever it trained in), `summary` (JSON), `history` (CSV), `class_weights` (JSON) and
    `tensorboard/`. `init`: a fine-tune's starting model (None: a new one from `settings.backbone` and
    `weights`); its first `freeze_epochs` train the head only.

    A killed run resumes from its last finished epoch: that state lives in `resume_dir`, which is not
    a Snakemake output, so Snakemake does not delete it before the rerun. A run that diverges stops
    with TrainingDiverged, its last good state kept there.
    """
    import keras

    from ..data import use_threads

    use_threads(threads)
    policy = keras.mixed_precision.global_policy()
    try:
        return _train(train_manifests, val_manifests, init, model, summary, history, class_weights, tensorboard,
                      Path(resume_dir), run, settings, extra_callbacks)  # fmt: skip
    finally:
        keras.mixed_precision.set_global_policy(policy)  # (a process that goes on to score, as tests do)


def _train(train_manifests, val_manifests, init, model, summary, history, class_weights, tensorboard, resume_dir,
           run, settings, extra_callbacks) -> dict:  # fmt: skip
    import keras
    import tensorflow as tf

    from .. import models
    from ..data import Shards, dataset

    devices = _devices(settings)  # first: simulated devices must be made before TensorFlow starts
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
            net = _starting_model(init, train_src.image_size, devices.precision)

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
        log.info("resuming from %s (the epochs finished so far: %d)", resume_dir, len(_read_history(history_path)))
    else:
        if resume_dir.exists():
            log.info("%s holds a run with other settings or data: starting afresh", resume_dir)
        shutil.rmtree(resume_dir, ignore_errors=True)
        resume_dir.mkdir(parents=True)
        write_json(run_key, key_path)

    def diverged(epoch: int, what: str) -> TrainingDiverged:
        done = _read_history(history_path) if history_path.exists() else None
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
        best_so_far = float(_read_history(history_path).val_mean_auroc.max()) if history_path.exists() else None
        if backup.exists():
            log.info(
                "resuming after epoch %d, the last finished one, from %s (best val mean AUROC so far %s)",
                _backed_up_epochs(backup),
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
            _validation_callback(val_ds, loss_fn, diverged),
            _best_model_callback(best_path, best_so_far),
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
            net = _trainable(models.load(frozen_path, devices.precision))
    if settings.epochs > frozen:
        epochs_this_run += fit(frozen, settings.epochs, resume_dir / "backup")
    seconds = time.perf_counter() - start

    # (A best epoch of the head-only ones was saved with the backbone frozen; a model is saved trainable.)
    best = _trainable(models.load(best_path)) if best_path.exists() else models.with_precision(net, "float32")
    with atomic(model) as staged:
        best.save(staged)
    hist = _read_history(history_path)
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
