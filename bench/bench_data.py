"""Benchmark of the shard stage and the reader against the usual notebook approaches.

    .venv/bin/python bench/bench_data.py [--images 400] [--size 224]

On the same 1024x1024 8-bit PNGs (phantoms made here, ~170-200 KB each like the real ones), in one
run, prints images/s and ratios for: the OpenCV decode bound; the shard stage (decode + resize +
encode + write) for raw and PNG shards; the tf.data reader; Keras ImageDataGenerator.flow_from_dataframe
and a plain PIL-per-file generator; and the projected time for all 112,120 images.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr14 import phantom, shard_io  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402

ALL_IMAGES = 112_120


def make_pngs(folder: Path, n: int) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        img, _ = phantom.render(phantom.draw_labels(rng), rng, 1024)
        name = f"{k + 1:08d}_000.png"
        # Level 3 makes them weigh what the real ones do (~170-200 KB).
        cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        rows.append(
            {
                "image_index": name,
                "patient_id": k + 1,
                "follow_up": 0,
                "age_years": 50.0,
                "sex": "M",
                "view": "PA",
                "archive": 1,
                "split": "train",
                **{f: int(rng.random() < 0.1) for f in FINDINGS},
            }
        )
    return pd.DataFrame(rows)


def _decode_file(path):
    cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)


def rate(n, seconds):
    return n / seconds


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def decode_bound(paths, workers):
    cv2.setNumThreads(1)
    if workers == 1:
        return rate(len(paths), timed(lambda: [_decode_file(p) for p in paths]))
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(_decode_file, paths[:workers])  # warm up
        return rate(len(paths), timed(pool.map, _decode_file, paths, max(1, len(paths) // (4 * workers))))


def _shard_job(args):
    rows, image_dir, out, size, encoding = args
    cv2.setNumThreads(1)
    shard_io.write_shard(
        rows.assign(file=[str(image_dir / n) for n in rows.image_index]), out, size, encoding, max_bad_images=0
    )


def shard_stage(table, image_dir, out_dir, size, encoding, workers):
    plan = shard_io.plan_table(table, images_per_shard=max(1, len(table) // (2 * workers)), seed=0)
    jobs = [
        (plan[plan.shard == s], image_dir, out_dir / f"{encoding}-{workers}-{s:05d}.tfrecord", size, encoding)
        for s in sorted(plan.shard.unique())
    ]
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_shard_job, [(j[0].head(1), *j[1:3], size, encoding) for j in jobs[:workers]])  # warm up imports
        seconds = timed(pool.map, _shard_job, jobs, 1)
    files = [str(j[2]) for j in jobs]
    return rate(len(table), seconds), files


def reader(files, size, encoding, n_images, threads):
    import tensorflow as tf

    from cxr14.data import Shards, dataset

    src = Shards(files, size, encoding, n_images)
    ds = dataset(src, 64, repeat=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    ds = ds.with_options(options)
    total = max(4 * n_images, 5000)
    it = iter(ds)
    next(it)
    start, seen = time.perf_counter(), 0
    while seen < total:
        x, _ = next(it)
        seen += int(x.shape[0])
    return rate(seen, time.perf_counter() - start)


def image_data_generator(table, image_dir, size):
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    df = table.assign(filename=table.image_index, **{f: table[f].astype(str) for f in FINDINGS})
    gen = ImageDataGenerator(rescale=1 / 255.0).flow_from_dataframe(
        df,
        directory=str(image_dir),
        x_col="filename",
        y_col=list(FINDINGS),
        class_mode="raw",
        target_size=(size, size),
        color_mode="grayscale",
        batch_size=32,
        shuffle=False,
    )
    n = min(len(table), 320)
    start = time.perf_counter()
    for k in range(n // 32):
        gen[k]
    return rate(n // 32 * 32, time.perf_counter() - start)


def pil_generator(table, image_dir, size):
    from PIL import Image

    n = min(len(table), 320)
    start = time.perf_counter()
    for name in table.image_index[:n]:
        with Image.open(image_dir / name) as im:
            np.asarray(im.convert("L").resize((size, size), Image.BILINEAR), np.float32)
    return rate(n, time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    cores = args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_dir = tmp / "images_01"
        table = make_pngs(image_dir, args.images)
        paths = [str(image_dir / n) for n in table.image_index]
        kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        print(
            f"{args.images} phantom PNGs, 1024x1024 8-bit, mean {kb:.0f} KB; {cores} cores; resize to {args.size} px\n"
        )
        res = {}
        res["decode_1"] = decode_bound(paths, 1)
        res["decode_n"] = decode_bound(paths, cores)
        files = {}
        for enc in ("raw", "png"):
            res[f"shard_{enc}_1"], _ = shard_stage(table, image_dir, tmp / "s1", args.size, enc, 1)
            res[f"shard_{enc}_n"], files[enc] = shard_stage(table, image_dir, tmp / "sn", args.size, enc, cores)
        shard_bytes = {enc: sum(os.path.getsize(f) for f in fs) / args.images for enc, fs in files.items()}
        for enc in ("raw", "png"):
            res[f"read_{enc}_1"] = reader(files[enc], args.size, enc, args.images, 1)
            res[f"read_{enc}_n"] = reader(files[enc], args.size, enc, args.images, cores)
        res["idg"] = image_data_generator(table, image_dir, args.size)
        res["pil"] = pil_generator(table, image_dir, args.size)

    def line(name, value, ref=None, label=""):
        extra = f"   {value / ref:6.2f}x {label}" if ref else ""
        print(f"  {name:<52} {value:9.0f} img/s{extra}")

    print("1. decode bound (OpenCV imdecode of the source PNGs)")
    line("1 core", res["decode_1"])
    line(f"{cores} cores", res["decode_n"])
    print("2. shard stage (decode + resize + encode + write), as a fraction of the bound")
    for enc in ("raw", "png"):
        line(f"{enc} shards, 1 core", res[f"shard_{enc}_1"], res["decode_1"], "of bound")
        line(f"{enc} shards, {cores} cores", res[f"shard_{enc}_n"], res["decode_n"], "of bound")
    print(f"   bytes per image: raw {shard_bytes['raw'] / 1024:.1f} KB, png {shard_bytes['png'] / 1024:.1f} KB")
    print(f"3. reader at {args.size} px (tf.data, batch 64, to a consumer that does nothing)")
    for enc in ("raw", "png"):
        line(f"{enc} shards, 1 thread", res[f"read_{enc}_1"], res["idg"], "ImageDataGenerator")
        line(
            f"{enc} shards, {cores} threads ({res[f'read_{enc}_n'] / cores:.0f}/core)",
            res[f"read_{enc}_n"],
            res["idg"],
            "ImageDataGenerator",
        )
    print("4. the usual notebook approaches, on the full-size PNGs")
    line("ImageDataGenerator.flow_from_dataframe, batch 32", res["idg"])
    line("PIL open + convert + resize, one file at a time", res["pil"])
    print(f"5. projected shard stage for all {ALL_IMAGES:,} images (raw; per-core rate x cores)")
    per_core = res["shard_raw_n"] / cores
    for n in (2, 16):
        print(f"  {n:>2} cores: {ALL_IMAGES / (per_core * n) / 60:6.1f} min")


if __name__ == "__main__":
    main()
