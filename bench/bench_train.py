"""Training throughput on this machine, reading real shards vs the same batches from memory.

    .venv/bin/python bench/bench_train.py [--steps 30] [--rounds 5] [--batch 16]

For each model (the small CNN and MobileNetV3Small at 224 px, the small CNN at the demo's 96 px),
one model is fed in turn, round after round, the same batches held in memory, the tf.data reader
over real TFRecord shards, and the reader with training augmentation, and prints images/s and the input pipeline's
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
from cxr14.config import defaults  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.data import Shards, dataset
from cxr14.runs import AugmentSettings  # noqa: E402

AUGMENT = AugmentSettings.of(defaults("train")["augment"])  # the training default


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
        rows.append(
            {
                "image_index": name,
                "patient_id": k + 1,
                "follow_up": 0,
                "age_years": 50.0,
                "sex": "F",
                "view": "PA",
                "archive": 1,
                "split": "train",
                **{f: int(f in labels) for f in FINDINGS},
            }
        )
    plan = shards.plan_table(pd.DataFrame(rows), max(1, n // 4), 0)
    located = plan.assign(file=[str(folder / name) for name in plan.image_index])
    files = []
    for s in range(int(plan.num_shards.iloc[0])):
        out = root / f"s{size}" / f"{shards.shard_stem('train', s, 4)}.tfrecord"
        shards.write_shard(located[located.shard == s], out, size, "raw", max_bad_images=0)
        files.append(str(out))
    return Shards(files, size, "raw", n)


def interleaved_rates(model_name, datasets: dict, steps, batch, size, rounds) -> dict:
    """Images/s per input, median over `rounds`: one model, compiled once, fed each input in turn
    each round, so drift and noise hit all inputs alike."""
    keras.utils.set_random_seed(0)
    model = models.build(model_name, size, "none", dropout=0.2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    iterators = {name: iter(ds) for name, ds in datasets.items()}  # each keeps prefetching between rounds

    def run(it, n):
        for _ in range(n):
            model.train_on_batch(*next(it))

    for it in iterators.values():  # warm-up: trace the train step, fill the shuffle buffers
        run(it, 5)
    times = {name: [] for name in datasets}
    for _ in range(rounds):
        for name, it in iterators.items():
            start = time.perf_counter()
            run(it, steps)
            times[name].append(time.perf_counter() - start)
    return {name: steps * batch / float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    device = f"{len(gpus)} GPU(s)" if gpus else f"CPU, {os.cpu_count()} cores"
    print(f"device: {device}; batch {args.batch}; median of {args.rounds} interleaved rounds of {args.steps} steps\n")
    print(f"  {'model':<18}{'px':>5}{'memory':>10}{'shards':>10}{'cost':>8}{'shards+aug':>12}{'cost':>8}   (img/s)")
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, size in (("small_cnn", 96), ("small_cnn", 224), ("mobilenetv3small", 224)):
            src = make_shards(Path(tmp), args.images, size)
            batches = list(dataset(src, args.batch, training=True, augment=AUGMENT).take(args.images // args.batch))
            xs = tf.concat([b[0] for b in batches], 0)
            ys = tf.concat([b[1] for b in batches], 0)
            rates = interleaved_rates(
                model_name,
                {
                    "memory": tf.data.Dataset.from_tensor_slices((xs, ys))
                    .batch(args.batch, drop_remainder=True)
                    .repeat()
                    .prefetch(2),
                    "shards": dataset(src, args.batch, training=True, repeat=True),
                    "aug": dataset(src, args.batch, training=True, augment=AUGMENT, repeat=True),
                },
                args.steps,
                args.batch,
                size,
                args.rounds,
            )
            memory, shard, aug = rates["memory"], rates["shards"], rates["aug"]
            print(
                f"  {model_name:<18}{size:>5}{memory:>10.1f}{shard:>10.1f}{1 - shard / memory:>8.1%}"
                f"{aug:>12.1f}{1 - aug / memory:>8.1%}",
                flush=True,
            )


if __name__ == "__main__":
    main()
