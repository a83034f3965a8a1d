"""The app under load on loopback: concurrent clients upload real-sized chest X-rays (1024 and 3,000 px
PNGs, a 16-bit DICOM at 2,048 px) the way the page does, alone and with as many hostile clients sending
bombs and junk at the same time; p50/p95 seconds per good upload, good uploads answered per second,
the refusals' p50/p95, and the server's peak memory. A fresh server per line, so each peak is its own.

    .venv/bin/python bench/bench_app.py     # --clients 4 --rounds 2 --concurrency 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the load driver

MODELS = (("small_cnn", 64), ("densenet121", 224))
NIH_SAMPLE = Path(__file__).resolve().parents[2] / "shared/nih-sample/00000001_000.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="times each client sends its files")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2])
    parser.add_argument("--max-mb", type=float, default=16)
    parser.add_argument("--models", nargs="+", default=[f"{b}:{s}" for b, s in MODELS], help="backbone:px ...")
    args = parser.parse_args()

    import loadtest  # tests/loadtest.py: the load driver the tests use too
    from cxr14 import models

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        radiograph = NIH_SAMPLE if NIH_SAMPLE.exists() else None
        files = loadtest.upload_files(tmp / "uploads", args.max_mb, radiograph)
        print(
            f"{args.clients} clients x {args.rounds} rounds of {', '.join(loadtest.GOOD)} "
            f"({'a real NIH image' if radiograph else 'a phantom'} resized); hostile: as many clients sending "
            f"{', '.join(loadtest.BAD)}; uncalibrated model (no TTA), Grad-CAM of the top finding included"
        )
        print("| model | px | concurrency | hostile clients | good p50 s | good p95 s | good/s | refusal p50 s "
              "| refusal p95 s | peak memory MiB | all good answered, all bad refused |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for backbone, size in ((name, int(px)) for name, px in (m.split(":") for m in args.models)):
            model = tmp / f"{backbone}.keras"
            models.build(backbone, size, "none", dropout=0.0).save(model)
            for concurrency in args.concurrency:
                for hostile in (0, args.clients):
                    port = loadtest.free_port()
                    command = [sys.executable, "-m", "cxr14.cli", "app", "--model", str(model), "--port", str(port),
                               "--max-mb", str(args.max_mb), "--concurrency", str(concurrency)]  # fmt: skip
                    plan = loadtest.mixed_plan(files, args.clients, args.rounds, hostile)
                    with loadtest.running_app(command, port, env={"PYTHONPATH": str(Path(__file__).parents[1])}) as app:
                        url = f"http://127.0.0.1:{port}/"
                        loadtest.drive(url, [[("png_1024", files["png_1024"])]], "model", 120)  # load the model
                        start = time.perf_counter()
                        outcomes = loadtest.drive(url, plan, "model", deadline_s=600)
                        wall = time.perf_counter() - start
                        peak = loadtest.peak_memory_mb(app.pid)
                        alive = loadtest.answers(url)
                    s = loadtest.summary(outcomes, wall)
                    wrong = [o for o in outcomes if o.answered != (o.kind in loadtest.GOOD)]
                    for o in wrong:
                        print(f"unexpected: {o}", file=sys.stderr)
                    right = not wrong and len(outcomes) == sum(map(len, plan)) and alive
                    print(
                        f"| {backbone} | {size} | {concurrency} | {hostile} | {s['good_p50_s']:.2f} | "
                        f"{s['good_p95_s']:.2f} | {s['good_per_s']:.2f} | {s['refusal_p50_s']:.2f} | "
                        f"{s['refusal_p95_s']:.2f} | {peak:.0f} | {'yes' if right else 'NO'} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
