"""Step `train`: a run's settings and files handed to the trainer (`cxr14.training`): GPU-ready (mixed
precision, MirroredStrategy: `cxr14.devices`), resumable (BackupAndRestore), with class-imbalance
handling and per-finding validation AUROC."""

from __future__ import annotations

from pathlib import Path

from ..settings import TrainSettings


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
    from ..training import fit_run

    use_threads(threads)
    policy = keras.mixed_precision.global_policy()
    try:
        return fit_run(train_manifests, val_manifests, init, model, summary, history, class_weights, tensorboard,
                       Path(resume_dir), run, settings, extra_callbacks)  # fmt: skip
    finally:
        keras.mixed_precision.set_global_policy(policy)  # (a process that goes on to score, as tests do)
