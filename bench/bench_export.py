"""CPU latency of the export step's formats beside the Keras model they came from: the same model
(untrained weights; speed does not depend on them), the same inputs, each format loaded the way its
users load it, timed in interleaved rounds (median), with each format's largest difference from Keras.

    .venv/bin/python bench/bench_export.py                      # small_cnn 64, mobilenetv3small and densenet121 at 224
    .venv/bin/python bench/bench_export.py --all-backbones 64   # every backbone converts, with parity (no timing)
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
FORMATS = ("keras", "saved_model", "onnx", "tflite")


def exported(backbone: str, size: int, folder: Path, tta: bool) -> tuple[dict, float]:
    """{format: predict function} for one model, and the seconds the three exports took."""
    import numpy as np

    from cxr14 import conversion, models
    from cxr14.steps import export

    net = conversion.serving_model(models.build(backbone, size, "none", dropout=0.0), tta)
    paths = {"saved_model": folder / "saved_model", "onnx": folder / "model.onnx", "tflite": folder / "model.tflite"}
    start = time.perf_counter()
    conversion.write_onnx(net, size, folder / "converted.onnx")
    export.write_formats(net, size, paths, folder / "converted.onnx")
    took = time.perf_counter() - start
    loaded = {fmt: export.LOADERS[fmt](path) for fmt, path in paths.items()}
    return {
        "keras": lambda x: np.asarray(net.predict_on_batch(x)["logits"]),
        **{f: _logits(r) for f, r in loaded.items()},
    }, took


def _logits(run):
    """A format's scorer, giving its logits (what the evaluation scores)."""
    return lambda x: run(x)["logits"]


def largest_differences(predict: dict, x) -> dict:
    want = predict["keras"](x)
    return {fmt: float(abs(predict[fmt](x) - want).max()) for fmt in FORMATS[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tta", action="store_true", help="export with the TTA views inside (5x the work)")
    parser.add_argument("--all-backbones", type=int, metavar="PX", help="convert every backbone at PX px, no timing")
    args = parser.parse_args()

    import numpy as np

    from cxr14.models import BACKBONES

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.all_backbones:
            print(f"every backbone at {args.all_backbones} px, {args.batch} random images: largest |format - Keras|")
            print("| backbone | export s | SavedModel | ONNX | TFLite |")
            print("|---|---:|---:|---:|---:|")
            x = rng.uniform(0, 255, (args.batch, args.all_backbones, args.all_backbones, 1)).astype(np.float32)
            for backbone in BACKBONES:
                (folder := Path(tmp) / backbone).mkdir()
                predict, took = exported(backbone, args.all_backbones, folder, args.tta)
                diffs = largest_differences(predict, x)
                print(f"| {backbone} | {took:.0f} | " + " | ".join(f"{diffs[f]:.1e}" for f in FORMATS[1:]) + " |")
            return
        print(
            f"CPU, {'with' if args.tta else 'without'} TTA; median of {args.rounds} interleaved rounds; "
            f"ms per image at batch 1 / images per second at batch {args.batch}; x: speed against Keras"
        )
        print("| model | px | " + " | ".join(FORMATS) + " | largest |format - Keras| |")
        print("|---|---:|" + "---:|" * len(FORMATS) + "---|")
        for backbone, size in MODELS:
            (folder := Path(tmp) / backbone).mkdir()
            predict, _ = exported(backbone, size, folder, args.tta)
            one = rng.uniform(0, 255, (1, size, size, 1)).astype(np.float32)
            batch = rng.uniform(0, 255, (args.batch, size, size, 1)).astype(np.float32)
            seconds = {(fmt, n): [] for fmt in FORMATS for n in (1, args.batch)}
            for round_ in range(args.rounds + 1):  # round 0 warms every format up
                for fmt in FORMATS:
                    for x in (one, batch):
                        start = time.perf_counter()
                        predict[fmt](x)
                        if round_:
                            seconds[fmt, len(x)].append(time.perf_counter() - start)
            median = {key: statistics.median(times) for key, times in seconds.items()}
            n = args.batch
            cells = [
                f"{1000 * median[fmt, 1]:.1f} ms ({median['keras', 1] / median[fmt, 1]:.2f}x) / "
                f"{n / median[fmt, n]:.0f} ({median['keras', n] / median[fmt, n]:.2f}x)"
                for fmt in FORMATS
            ]
            diffs = largest_differences(predict, batch)
            print(f"| {backbone} | {size} | " + " | ".join(cells) + " | "
                  + ", ".join(f"{f} {d:.0e}" for f, d in diffs.items()) + " |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
