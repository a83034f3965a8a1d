"""Training throughput on this machine, reading real shards vs the same batches from memory.

    .venv/bin/python bench/bench_train.py [--steps 60] [--batch 16]

For each model (the small CNN and MobileNetV3Small at 224 px, the small CNN at the demo's 96 px),
one run times fit() on the same batches held in memory, on the tf.data reader over real TFRecord
shards, and on the reader with training augmentation, and prints images/s and the input pipeline's
cost (1 - reader/memory). On a CPU the reader shares the cores with the model. On a GPU machine the
same command measures the GPU (mixed precision is switched on as in training).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxr14 import demo, models, shards  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.data import Augment, Shards, dataset  # noqa: E402


def make_shards(root: Path, n: int, size: int) -> Shards:
    import cv2

    rng = np.random.default_rng(0)
    folder = root / "images_01"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        labels = demo.draw_labels(rng)
        img, _ = demo.render(labels, rng, 256)
        name = f"{k + 1:08d}_000.png"
        cv2.imwrite(str(folder / name), img)
        rows.append({"image_index": name, "patient_id": k + 1, "follow_up": 0, "age_years": 50.0, "sex": "F",
                     "view": "PA", "archive": 1, "split": "train", **{f: int(f in labels) for f in FINDINGS}})
    plan = shards.plan(pd.DataFrame(rows), max(1, n // 4), 0)
    files = []
    for s in range(int(plan.num_shards.iloc[0])):
        out = root / f"s{size}" / shards.shard_name("train", s, 4)
        shards.write_shard(plan[plan.shard == s], root, out, size)
        files.append(str(out))
    return Shards(files, size, "raw", n)


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def throughput(model_name, ds, steps, batch, size):
    keras.utils.set_random_seed(0)
    model = models.build(model_name, size, "none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    timer = EpochTimer()
    model.fit(ds, steps_per_epoch=steps, epochs=2, callbacks=[timer], verbose=0)  # epoch 1 = graph warm-up
    return steps * batch / timer.seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU, {os.cpu_count()} cores"
    print(f"device: {device}; batch {args.batch}; {args.steps} timed steps after a warm-up epoch\n")
    print(f"  {'model':<18}{'px':>5}{'memory':>10}{'shards':>10}{'cost':>8}{'shards+aug':>12}{'cost':>8}   (img/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, size in (("small_cnn", 96), ("small_cnn", 224), ("mobilenetv3small", 224)):
            src = make_shards(Path(tmp), args.images, size)
            plain = dataset(src, args.batch, training=True, repeat=True)
            augmented = dataset(src, args.batch, training=True, augment=Augment(), repeat=True)
            batches = list(dataset(src, args.batch, training=True, augment=Augment()).take(args.images // args.batch))
            xs = tf.concat([b[0] for b in batches], 0)
            ys = tf.concat([b[1] for b in batches], 0)
            from_memory = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(args.batch).repeat().prefetch(2)
            memory = throughput(model_name, from_memory, args.steps, args.batch, size)
            shard = throughput(model_name, plain, args.steps, args.batch, size)
            aug = throughput(model_name, augmented, args.steps, args.batch, size)
            print(f"  {model_name:<18}{size:>5}{memory:>10.1f}{shard:>10.1f}{1 - shard / memory:>8.1%}"
                  f"{aug:>12.1f}{1 - aug / memory:>8.1%}", flush=True)


if __name__ == "__main__":
    main()
