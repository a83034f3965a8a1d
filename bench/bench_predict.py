"""What test-time augmentation costs `cxr14 predict`: the same model and the same image files, scored
with and without TTA in interleaved rounds (median of each), decode and resize included.

    .venv/bin/python bench/bench_predict.py          # --images 64 --rounds 3 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = (("small_cnn", 64), ("mobilenetv3small", 224), ("densenet121", 224))


def phantom_files(folder: Path, n: int) -> list[Path]:
    """`n` full-size (1024 px) phantom radiographs as PNG files, like the NIH ones."""
    import cv2
    import numpy as np

    from cxr14.phantom import render

    rng = np.random.default_rng(0)
    files = []
    for k in range(n):
        path = folder / f"phantom_{k:03d}.png"
        cv2.imwrite(str(path), render({"Nodule"} if k % 2 else set(), rng, 1024)[0])
        files.append(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    from cxr14 import models
    from cxr14.engines import TTA_VIEWS
    from cxr14.inference import Predictor
    from cxr14.predict import predict_files

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = phantom_files(tmp, args.images)
        print(
            f"{args.images} phantom PNGs at 1024 px, batch {args.batch}, {len(TTA_VIEWS)} TTA views, "
            f"median of {args.rounds} interleaved rounds; images/s"
        )
        print("| model | px | no TTA | TTA | TTA time / no-TTA time |")
        print("|---|---:|---:|---:|---:|")
        for backbone, size in MODELS:
            path = tmp / f"{backbone}.keras"
            models.build(backbone, size, "none", dropout=0.0).save(path)
            predictor = Predictor(path)
            seconds = {False: [], True: []}
            for round_ in range(args.rounds + 1):  # round 0 warms up both graphs
                for tta in (False, True):
                    predictor.tta = tta
                    start = time.perf_counter()
                    predict_files(predictor, files, tmp / "out.csv", batch_size=args.batch, progress=False)
                    if round_:
                        seconds[tta].append(time.perf_counter() - start)
            plain, tta = statistics.median(seconds[False]), statistics.median(seconds[True])
            print(
                f"| {backbone} | {size} | {args.images / plain:.1f} | {args.images / tta:.1f} | {tta / plain:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
