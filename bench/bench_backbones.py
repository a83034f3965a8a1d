"""Every backbone side by side on this machine: parameters, training and inference images/s at 224 px,
and each as a ratio to the default, DenseNet121 (as CheXNet).

    .venv/bin/python bench/bench_backbones.py          # --steps 4 --batch 16 --size 224

Each model is built from scratch (`weights: none`), compiled as training compiles it (Adam, binary
cross-entropy), warmed up with one step, then timed over `--steps` training steps and `--steps`
inference batches on the same in-memory batch (the reader's cost is bench_train.py's subject).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxr14 import models  # noqa: E402

DEFAULT = "densenet121"


def rates(name: str, size: int, batch: int, steps: int) -> tuple[int, float, float]:
    """(parameters, training images/s, inference images/s)."""
    keras.utils.set_random_seed(0)
    model = models.build(name, size, "none", dropout=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 1)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (batch, 14)).astype(np.float32))
    model.train_on_batch(x, y)  # trace
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train = steps * batch / (time.perf_counter() - start)
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(steps):
        model.predict_on_batch(x)
    infer = steps * batch / (time.perf_counter() - start)
    return model.count_params(), train, infer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU, {os.cpu_count()} cores"
    print(f"device: {device}; {args.size} px, batch {args.batch}, {args.steps} timed steps each\n")
    print("| backbone | parameters | train img/s | vs DenseNet121 | inference img/s | vs DenseNet121 |")
    print("|---|---:|---:|---:|---:|---:|")
    names = [DEFAULT] + [n for n in models.BACKBONES if n != DEFAULT]
    base = None
    for name in names:
        params, train, infer = rates(name, args.size, args.batch, args.steps)
        base = base or (train, infer)
        ratios = f"{train / base[0]:.2f}x | {infer:.1f} | {infer / base[1]:.2f}x"
        print(f"| {name} | {params / 1e6:.1f} M | {train:.1f} | {ratios} |", flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
