"""The score step's throughput on a CPU with each engine (`evaluate.engine`): the Keras model, and the
convert step's ONNX model of it in ONNX Runtime. The same model (untrained weights; speed does not
depend on them), the same shards of real-sized images, the step function itself (shards read and
decoded, scores, embeddings and pixel statistics written), interleaved rounds, median; with the largest
difference between the two engines' logits.

    .venv/bin/python bench/bench_score.py                   # small_cnn 64 and densenet121 224, 64 images
    .venv/bin/python bench/bench_score.py --images 128 --tta
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = (("small_cnn", 64), ("densenet121", 224))
ENGINES = ("keras", "onnx")


def shards(folder: Path, size: int, images: int) -> Path:
    """One shard of `images` random 1024x1024 PNGs at `size` px; its manifest."""
    import cv2
    import numpy as np
    import pandas as pd

    from cxr14 import shard_io
    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(0)
    names = [f"{k:08d}_000.png" for k in range(images)]
    for name in names:
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (1024, 1024), np.uint8))
    table = pd.DataFrame({"image_index": names, "patient_id": range(images), "age_years": 50.0, "sex": "F",
                          "view": "PA", "split": "test", **{f: 0 for f in FINDINGS}})  # fmt: skip
    planned = shard_io.plan_table(table, images, 0, groups=("test",))
    planned["file"] = [str(folder / name) for name in planned.image_index]
    out = folder / f"{size}px"
    info = shard_io.write_shard(planned, out / "test-00000-of-00001.tfrecord", size, "raw", 0)
    shard_io.write_manifest("test", [info], size, "raw", out / "manifest.json", out / "bad.tsv", 0)
    return out / "manifest.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="evaluate.batch_size (the schema's default)")
    parser.add_argument("--tta", action="store_true", help="score with the five test-time views")
    parser.add_argument("--models", nargs="+", default=[f"{b}:{s}" for b, s in MODELS], help="backbone:px ...")
    args = parser.parse_args()

    import numpy as np

    from cxr14 import models, prediction_table
    from cxr14.steps.convert import convert
    from cxr14.steps.score import score

    print(f"CPU, {args.images} images a round, batch {args.batch}, {'with' if args.tta else 'without'} TTA; "
          f"median of {args.rounds} interleaved rounds of the score step")  # fmt: skip
    print("| model | px | Keras img/s | ONNX Runtime img/s | ONNX / Keras | largest |logit difference| |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for backbone, size in (m.split(":") for m in args.models):
            size = int(size)
            manifest = shards(folder, size, args.images)
            model = folder / f"{backbone}.keras"
            models.build(backbone, size, "none", dropout=0.0).save(model)
            convert(model=model, onnx=folder / f"{backbone}.onnx", tta=args.tta)
            seconds = {engine: [] for engine in ENGINES}
            for round_ in range(args.rounds + 1):  # round 0 warms both up
                for engine in ENGINES:
                    start = time.perf_counter()
                    score(model=model, onnx=folder / f"{backbone}.onnx", manifests=[manifest], splits=["test"],
                          predictions=folder / f"{engine}.parquet", features=folder / f"{engine}.npz",
                          batch_size=args.batch, tta=args.tta, engine=engine)  # fmt: skip
                    if round_:
                        seconds[engine].append(time.perf_counter() - start)
            rate = {engine: args.images / statistics.median(s) for engine, s in seconds.items()}
            logits = [prediction_table.logits(prediction_table.read(folder / f"{e}.parquet")) for e in ENGINES]
            print(f"| {backbone} | {size} | {rate['keras']:.1f} | {rate['onnx']:.1f} | "
                  f"{rate['onnx'] / rate['keras']:.2f}x | {np.abs(logits[0] - logits[1]).max():.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
