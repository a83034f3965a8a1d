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
from .runs import TrainSettings, as_param

log = logging.getLogger(__name__)


def label_counts(shards) -> tuple[np.ndarray, int]:
    """Positives per finding and the number of images in a split, read from its shards."""
    import tensorflow as tf

    spec = {"labels": tf.io.FixedLenFeature([len(FINDINGS)], tf.int64)}
    ds = tf.data.TFRecordDataset(shards.files).batch(4096).map(lambda r: tf.io.parse_example(r, spec)["labels"])
    pos, total = np.zeros(len(FINDINGS), np.int64), 0
    for labels in ds:
        pos += labels.numpy().sum(axis=0)
        total += int(labels.shape[0])
    return pos, total


def per_class_auroc(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float | None]:
    """AUROC per finding; None where the split has only one class for it."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k, name in enumerate(FINDINGS):
        col = y_true[:, k]
        out[name] = float(roc_auc_score(col, y_score[:, k])) if 0 < col.sum() < len(col) else None
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


def train(
    *,
    train_manifest,
    val_manifest,
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
    """Step `train`: fit on the train shards, pick the best epoch by val mean AUROC, and write
    `model` (.keras), `summary` (JSON), `history` (CSV), `class_weights` (JSON) and `tensorboard/`.

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
    train_src, val_src = (
        Shards.from_manifest(train_manifest, verify=True),
        Shards.from_manifest(val_manifest, verify=True),
    )
    if train_src.image_size != val_src.image_size:
        raise ValueError(f"train shards are {train_src.image_size} px but val shards {val_src.image_size} px")
    strategy, n_gpus = _strategy()
    replicas = strategy.num_replicas_in_sync
    batch = settings.batch_size * replicas

    positives, total = label_counts(train_src)
    weights = models.class_weights(positives, total)
    write_json(weights, class_weights)
    loss_fn = models.make_loss(settings.loss, weights, settings.focal_gamma)

    train_ds = dataset(
        train_src, batch, training=True, augment=settings.augment, seed=settings.seed, cache=settings.cache
    )
    val_ds = dataset(val_src, batch, cache=settings.cache)
    with strategy.scope():
        net = models.build(settings.backbone, train_src.image_size, settings.weights, settings.dropout)
        net.compile(
            optimizer=keras.optimizers.Adam(settings.learning_rate),
            loss=loss_fn,
            metrics=[keras.metrics.AUC(multi_label=True, num_labels=len(FINDINGS), name="auroc")],
        )

    # State that survives a killed run (not a Snakemake output, so Snakemake leaves it alone). It is
    # only resumed for the same settings and data: a changed learning rate starts afresh.
    best_path, history_path, backup = resume_dir / "best.keras", resume_dir / "history.csv", resume_dir / "backup"
    data = {
        split: [s["sha256"] for s in src.manifest["shards"]] for split, src in (("train", train_src), ("val", val_src))
    }
    run_key = {"settings": as_param(settings), **data}
    key_path = resume_dir / "run.json"
    best_so_far = None
    if backup.exists() and history_path.exists() and key_path.exists() and json.loads(key_path.read_text()) == run_key:
        best_so_far = float(_read_history(history_path).val_mean_auroc.max())
        log.info(
            "resuming after epoch %d, the last finished one, from %s (best val mean AUROC so far %.4f)",
            _backed_up_epochs(backup),
            backup,
            best_so_far,
        )
    else:
        if backup.exists():
            log.info("%s holds a run with other settings or data: starting afresh", resume_dir)
        shutil.rmtree(resume_dir, ignore_errors=True)
        resume_dir.mkdir(parents=True)
        write_json(run_key, key_path)
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
        keras.callbacks.EarlyStopping(monitor="val_mean_auroc", mode="max", patience=settings.early_stopping_patience),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.TensorBoard(str(tensorboard), write_graph=False, profile_batch=0),
        *extra_callbacks,
        keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True),
    ]
    start = time.perf_counter()
    fitted = net.fit(train_ds, epochs=settings.epochs, callbacks=callbacks, verbose=2)
    seconds = time.perf_counter() - start

    best = models.load(best_path) if best_path.exists() else net
    with atomic(model) as staged:
        best.save(staged)
    hist = _read_history(history_path)
    with atomic(history) as staged:
        hist.to_csv(staged, index=False)

    best_row = hist.loc[hist.val_mean_auroc.idxmax()]
    result = {
        "backbone": settings.backbone,
        "image_size": train_src.image_size,
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
        "epochs_this_run": len(fitted.epoch),
        "model_sha256": sha256_file(model),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    write_json(result, summary)
    shutil.rmtree(resume_dir, ignore_errors=True)
    log.info("best val mean AUROC %.4f at epoch %d", result["best_val_mean_auroc"], result["best_epoch"])
    return result
