"""The `cxr14` command: `predict` (batch) and `app` (web) for a trained model, `verify` for the shards.

The workflow's steps run through Snakemake, each alone as a target too:
`snakemake results/shards/val/manifest.json`.
"""

from __future__ import annotations

import argparse
import sys

from .constants import DISCLAIMER


def parser() -> argparse.ArgumentParser:
    from .paths import DATASETS, RUN
    from .settings import defaults

    app_defaults, predict_defaults = defaults("app"), defaults("predict")
    top = argparse.ArgumentParser(
        prog="cxr14", description=f"NIH ChestX-ray14 models: batch prediction and a web app. {DISCLAIMER}"
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        help="predict the 14 findings for image files, folders or globs into a CSV",
        description="Predict the 14 findings for PNG, JPEG or DICOM files into a CSV, one row per "
        f"image; bad files are reported and skipped. {DISCLAIMER}",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="NAME", help="a trained run of the workflow (its model and operating points)")
    which.add_argument(
        "--model",
        metavar="MODEL",
        help="a model file instead of a run: a model.keras, or the export step's model.onnx (its calibration and "
        "operating points come from the serving.json beside it)",
    )
    p.add_argument(
        "--out",
        default=predict_defaults["out"],
        metavar="CSV",
        help="where to write the predictions (default: %(default)s)",
    )
    p.add_argument(
        "--thresholds",
        metavar="JSON",
        help="operating points chosen on val by the calibrate step (default: the run's; 0.5 without)",
    )
    p.add_argument(
        "--site",
        metavar="NAME",
        help="whose calibration and operating points to use: nih (the default) or a collection the run was "
        "calibrated on (fitted on its val split); an unknown name lists the known ones",
    )
    p.add_argument(
        "--calibration",
        metavar="JSON",
        help="the calibrate step's calibration.json for --model (default: the run's; without one the "
        "model's raw scores are reported)",
    )
    p.add_argument(
        "--gradcam-dir", metavar="DIR", help="also write a Grad-CAM overlay of each image's top finding here"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=predict_defaults["batch_size"],
        metavar="N",
        help="images per forward pass (default: %(default)s)",
    )
    _limits(p, "skip files")
    p.set_defaults(main=lambda a: __import__("cxr14.predict", fromlist=["main"]).main(a))

    a = sub.add_parser(
        "app",
        help="start the web app (127.0.0.1 unless --share-on-network)",
        description=f"A Gradio app: upload a chest X-ray, see the model's findings and Grad-CAM. {DISCLAIMER}",
    )
    which = a.add_mutually_exclusive_group()
    which.add_argument(
        "--run",
        metavar="NAME",
        help="the trained run shown first; the page offers every trained run "
        f"under {RUN.format(run='*')} (default: the first)",
    )
    which.add_argument("--model", metavar="MODEL.keras", help="serve this one model file instead of the runs")
    a.add_argument("--thresholds", metavar="JSON", help="operating points for --model (default: the run's own)")
    a.add_argument("--calibration", metavar="JSON", help="calibration.json for --model (default: the run's own)")
    a.add_argument("--site", metavar="NAME", help="the site whose calibration is shown first (default: nih)")
    a.add_argument("--port", type=int, default=app_defaults["port"], help="port to listen on (default: %(default)s)")
    a.add_argument(
        "--share-on-network",
        action="store_true",
        default=app_defaults["share_on_network"],
        help="listen on all interfaces, not only 127.0.0.1",
    )
    a.add_argument(
        "--concurrency",
        type=int,
        default=app_defaults["concurrency"],
        metavar="N",
        help="uploads worked on at once; each run's model takes one at a time (default: %(default)s)",
    )
    a.add_argument(
        "--queue-size",
        type=int,
        default=app_defaults["queue_size"],
        metavar="N",
        help="uploads that may wait; past that the page says the queue is full (default: %(default)s)",
    )
    _limits(a, "refuse uploads")
    a.set_defaults(main=lambda a: __import__("cxr14.app", fromlist=["main"]).main(a))

    v = sub.add_parser(
        "verify",
        help="check shards against their manifests' sizes and sha256",
        description="Check every shard under the given folders (or the given manifest.json files) "
        "against the size and sha256 its manifest recorded; exit 1 naming each damaged "
        "or missing shard. Training and scoring run the same check before they start.",
    )
    v.add_argument(
        "paths",
        nargs="*",
        default=[DATASETS],
        metavar="PATH",
        help="manifest.json files or folders searched for them (default: %(default)s)",
    )
    v.set_defaults(main=verify)
    return top


def _limits(command: argparse.ArgumentParser, what: str) -> None:
    from .settings import defaults

    limits = defaults("images")
    command.add_argument(
        "--max-mb",
        type=float,
        default=limits["max_mb"],
        metavar="MB",
        help=f"{what} larger than this (default: %(default)s)",
    )
    command.add_argument(
        "--max-megapixels",
        type=float,
        default=limits["max_megapixels"],
        metavar="MP",
        help=f"{what} whose header promises more decoded pixels (x frames x samples) than this many million, "
        "before decoding them (default: %(default)s; the largest chest radiographs have about 18.5)",
    )


def verify(args) -> int:
    from pathlib import Path

    from .shard_io import CorruptShard, verify_shards

    manifests = sorted({m for p in map(Path, args.paths) for m in ([p] if p.is_file() else p.rglob("manifest.json"))})
    if not manifests:
        print(f"cxr14 verify: no manifest.json under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    damaged = 0
    for manifest in manifests:
        try:
            files = verify_shards(manifest)
        except (CorruptShard, OSError, ValueError, KeyError) as exc:
            damaged += 1
            print(f"DAMAGED {manifest.parent}: {exc}")
        else:
            print(f"ok      {manifest.parent}: {len(files)} shards")
    return 1 if damaged else 0


def main(argv=None) -> int:
    from .inference import NoTrainedRun

    args = parser().parse_args(argv)
    try:
        return args.main(args)
    except NoTrainedRun as exc:
        print(f"cxr14 {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
