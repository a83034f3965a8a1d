"""Train a cxr14 model on the train/val shards: GPU-ready (mixed precision, MirroredStrategy),
resumable (BackupAndRestore), with class-imbalance handling and per-finding validation AUROC."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .constants import FINDINGS
from .files import atomic, sha256_file, write_json
from .runs import TrainSettings, as_param, sources

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


def _validation_callback(val_ds, loss_fn):
    import keras

    class Validation(keras.callbacks.Callback):
        """One pass over val per epoch: val_loss, val_mean_auroc and val_auroc_<finding> into the logs
        (it runs before the callbacks that monitor them)."""

        def on_epoch_end(self, epoch, logs=None):
            ys, ps = [], []
            for x, y in val_ds:
                ps.append(keras.ops.convert_to_numpy(self.model(x, training=False)).astype(np.float32))
                ys.append(y.numpy())
            y, p = np.concatenate(ys), np.concatenate(ps)
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


def _strategy():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
        return tf.distribute.MirroredStrategy(), len(gpus)
    return tf.distribute.get_strategy(), 0


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
    net.trainable = True
    for layer in net._flatten_layers():
        layer.trainable = True
    return net


def _starting_model(init, image_size: int):
    """A fine-tune's starting model, checked against the shards it will train on."""
    from . import models

    net = _trainable(models.load(init))
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
    settings: TrainSettings,
    threads: int | None = None,
    extra_callbacks=(),
) -> dict:
    """Step `train`: fit on the train shards of every source of `train.data` (`train_manifests`, pooled),
    pick the best epoch by mean AUROC on their val shards, and write `model` (.keras), `summary` (JSON),
    `history` (CSV), `class_weights` (JSON) and `tensorboard/`. `init`: a fine-tune's starting model
    (None: a new one from `settings.backbone` and `weights`); its first `freeze_epochs` train the head only.

    A killed run resumes from its last finished epoch: that state lives in `resume_dir`, which is not
    a Snakemake output, so Snakemake does not delete it before the rerun.
    """
    import keras
    import tensorflow as tf

    from . import models
    from .data import Shards, dataset, use_threads

    use_threads(threads)
    resume_dir = Path(resume_dir)
    keras.utils.set_random_seed(settings.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    train_src, val_src = Shards.pooled(train_manifests, verify=True), Shards.pooled(val_manifests, verify=True)
    if train_src.image_size != val_src.image_size:
        raise ValueError(f"train shards are {train_src.image_size} px but val shards {val_src.image_size} px")
    strategy, n_gpus = _strategy()
    replicas = strategy.num_replicas_in_sync
    batch = settings.batch_size * replicas

    positives, labelled, total = label_counts(train_src)
    weights = models.class_weights(positives, total, labelled)
    write_json(weights, class_weights)
    loss_fn = models.make_loss(settings.loss, weights, settings.focal_gamma)

    train_ds = dataset(
        train_src, batch, training=True, augment=settings.augment, seed=settings.seed, cache=settings.cache
    )
    val_ds = dataset(val_src, batch, cache=settings.cache)
    with strategy.scope():
        if init is None:
            net = models.build(settings.backbone, train_src.image_size, settings.weights, settings.dropout)
        else:
            net = _starting_model(init, train_src.image_size)

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

    def fit(first_epoch: int, last_epoch: int, backup: Path):
        """Epochs first..last (0-based, last excluded); the backbone frozen when `frozen`."""
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
                optimizer=keras.optimizers.Adam(settings.learning_rate),
                loss=loss_fn,
                metrics=[models.FindingsAUC(positives, labelled, name="auroc")],
            )
        # The backup comes last: an epoch is only marked done once its history row and best model are
        # written, so a kill in between redoes that epoch (its row is replaced) rather than losing it.
        callbacks = [
            _validation_callback(val_ds, loss_fn),
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
        net._initial_epoch = None  # (Keras keeps a restored start epoch on the model across fits)
        return net.fit(train_ds, initial_epoch=first_epoch, epochs=last_epoch, callbacks=callbacks, verbose=2).epoch

    start = time.perf_counter()
    frozen = min(settings.freeze_epochs, settings.epochs)
    epochs_this_run = []
    if frozen and frozen_path.exists():
        with strategy.scope():
            net = _trainable(models.load(frozen_path))
    elif frozen:
        net.get_layer("backbone").trainable = False
        epochs_this_run += fit(0, frozen, resume_dir / "backup_frozen")
        net.get_layer("backbone").trainable = True
        with atomic(frozen_path) as staged:
            net.save(staged)
    if settings.epochs > frozen:
        epochs_this_run += fit(frozen, settings.epochs, resume_dir / "backup")
    seconds = time.perf_counter() - start

    # (A best epoch of the head-only ones was saved with the backbone frozen; a model is saved trainable.)
    best = _trainable(models.load(best_path)) if best_path.exists() else net
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
        "val_images": val_src.images,
        "class_weights": weights,
        "config": as_param(settings),
        "data": data,
        "device": {
            "gpus": n_gpus,
            "replicas": replicas,
            "global_batch": batch,
            "mixed_precision": keras.mixed_precision.global_policy().name,
        },
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
