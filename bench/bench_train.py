"""Training throughput on whatever device is present, in float32 and in mixed precision, and whether the
input pipeline keeps up.

    .venv/bin/python bench/bench_train.py                 # DenseNet121 at 224 px, the real default
    .venv/bin/python bench/bench_train.py --models small_cnn:96,small_cnn:224,mobilenetv3small:224

For each model and precision (float32, mixed_float16; mixed_bfloat16 too with --bf16), one model, built
and compiled as `train` builds it (the run's loss, Adam with the loss scaling `train` uses), is fed in
turn, round after round, the same batches held in memory ("compute": what the device does when never
kept waiting), the tf.data reader over real TFRecord shards, and the reader with the training
augmentation ("train": what a run gets). For the reader it times how long each step waited for its
batch ("waiting"). "reader alone" is the reader with augmentation and no model: the most it can feed.
The pipeline keeps up when "reader alone" is well above "compute" and "waiting" is near 0.

On a GPU machine it measures the first GPU (a run mirrors over every GPU with a per-GPU batch, so its
throughput is about this times the GPUs); on a CPU it measures the CPU, where float16 is emulated.
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

from cxr14 import (
    models,  # noqa: E402
    paths,
    phantom,
    shard_io,
)
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.data import Shards, dataset  # noqa: E402
from cxr14.settings import (
    AugmentSettings,  # noqa: E402
    defaults,  # noqa: E402
)

TRAIN = defaults("train")
AUGMENT = AugmentSettings.of(TRAIN["augment"])  # the training default


def make_shards(root: Path, n: int, size: int) -> Shards:
    """`n` phantom radiographs (the demo's renderer, 256 px) written as raw training shards at `size`."""
    import cv2

    rng = np.random.default_rng(0)
    folder = root / "images_01"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        labels = phantom.draw_labels(rng)
        img, _ = phantom.render(labels, rng, 256)
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
    plan = shard_io.plan_table(pd.DataFrame(rows), max(1, n // 4), 0)
    located = plan.assign(file=[str(folder / name) for name in plan.image_index])
    files = []
    for s in range(int(plan.num_shards.iloc[0])):
        out = root / f"s{size}" / f"{paths.shard_stem('train', s, 4)}.tfrecord"
        shard_io.write_shard(located[located.shard == s], out, size, "raw", max_bad_images=0)
        files.append(str(out))
    return Shards(files, size, "raw", n)


def compiled(model_name: str, size: int, policy: str, counts) -> keras.Model:
    """The model as `train` compiles it, computing in `policy`."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = models.build(model_name, size, "none", dropout=TRAIN["dropout"])
    weights = models.class_weights(*counts)
    model.compile(optimizer=models.optimizer(1e-4, policy), loss=models.make_loss(TRAIN["loss"], weights, 2.0))
    return model


def interleaved(model, feeds: dict, steps: int, batch: int, rounds: int) -> dict:
    """{feed: (images/s, share of the time spent waiting for batches)}, medians over `rounds`: one
    model fed each input in turn each round, so drift and noise hit all inputs alike."""
    iterators = {name: iter(ds) for name, ds in feeds.items()}  # each keeps prefetching between rounds

    def run(it, n):
        waited = 0.0
        for _ in range(n):
            start = time.perf_counter()
            x, y = next(it)
            waited += time.perf_counter() - start
            model.train_on_batch(x, y)  # returns the loss: the step has finished on the device
        return waited

    for it in iterators.values():  # warm-up: trace the train step, fill the shuffle buffers
        run(it, min(3, steps))
    rates, waits = {name: [] for name in feeds}, {name: [] for name in feeds}
    for _ in range(rounds):
        for name, it in iterators.items():
            start = time.perf_counter()
            waited = run(it, steps)
            seconds = time.perf_counter() - start
            rates[name].append(steps * batch / seconds)
            waits[name].append(waited / seconds)
    return {name: (float(np.median(rates[name])), float(np.median(waits[name]))) for name in feeds}


def reader_alone(src: Shards, batch: int, steps: int) -> float:
    """Images/s of the training reader with augmentation, nothing consuming but the loop."""
    it = iter(dataset(src, batch, training=True, augment=AUGMENT, repeat=True))
    for _ in range(5):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)[0].numpy()
    return steps * batch / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="densenet121:224", help="backbone:px, comma-separated")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per feed and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--batch", type=int, default=TRAIN["batch_size"], help="per device, as train.batch_size")
    parser.add_argument("--images", type=int, default=512, help="phantom images in the shards")
    parser.add_argument("--bf16", action="store_true", help="mixed_bfloat16 too (A100/H100-class GPUs)")
    args = parser.parse_args(argv)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name")
        device = f"{len(gpus)} GPU(s), measured on the first: {name}"
    else:
        device = f"CPU, {os.cpu_count()} cores"
    policies = ["float32", "mixed_float16"] + (["mixed_bfloat16"] if args.bf16 else [])
    print(f"device: {device}; batch {args.batch}; median of {args.rounds} interleaved rounds of {args.steps} steps")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}\n")
    print(f"  {'model':<18}{'px':>5}  {'precision':<16}{'compute':>9}{'shards':>9}{'train':>9}{'waiting':>9}"
          f"{'vs fp32':>9}{'reader alone':>14}   (img/s)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models.split(","):
            model_name, size = spec.split(":")[0], int(spec.split(":")[1])
            src = make_shards(Path(tmp), args.images, size)
            take = max(1, min(args.images // args.batch, args.steps))
            batches = list(dataset(src, args.batch, training=True, augment=AUGMENT).take(take))
            xs, ys = tf.concat([b[0] for b in batches], 0), tf.concat([b[1] for b in batches], 0)
            counts = (ys.numpy().sum(axis=0), len(ys))
            feeds = {
                "compute": tf.data.Dataset.from_tensor_slices((xs, ys)).batch(args.batch, drop_remainder=True)
                .repeat().prefetch(2),
                "shards": dataset(src, args.batch, training=True, repeat=True),
                "train": dataset(src, args.batch, training=True, augment=AUGMENT, repeat=True),
            }  # fmt: skip
            alone = reader_alone(src, args.batch, max(args.steps, 10))
            float32 = None
            for policy in policies:
                rates = interleaved(compiled(model_name, size, policy, counts), feeds, args.steps, args.batch,
                                    args.rounds)  # fmt: skip
                compute, (shard, _), (train, waiting) = rates["compute"][0], rates["shards"], rates["train"]
                float32 = float32 or train
                print(f"  {model_name:<18}{size:>5}  {policy:<16}{compute:>9.1f}{shard:>9.1f}{train:>9.1f}"
                      f"{waiting:>9.1%}{train / float32:>8.2f}x{alone:>14.1f}", flush=True)  # fmt: skip
    keras.mixed_precision.set_global_policy("float32")


if __name__ == "__main__":
    main()
