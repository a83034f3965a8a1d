"""The `cxr14` command: `predict` (batch) and `app` (web) for a trained model.

The workflow's steps run through Snakemake, each alone as a target too:
`snakemake results/shards/val/manifest.json`.
"""

from __future__ import annotations

import argparse
import sys

from .constants import DISCLAIMER


def parser() -> argparse.ArgumentParser:
    from .config import defaults
    from .inference import DEFAULT_MAX_MB
    from .runs import RUN

    app_defaults = defaults("app")
    top = argparse.ArgumentParser(prog="cxr14", description=f"NIH ChestX-ray14 models: batch prediction and a web app. {DISCLAIMER}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("predict", help="predict the 14 findings for image files, folders or globs into a CSV",
                       description="Predict the 14 findings for PNG, JPEG or DICOM files into a CSV, one row per "
                                   f"image; bad files are reported and skipped. {DISCLAIMER}")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="NAME", help="a trained run of the workflow (its model and operating points)")
    which.add_argument("--model", metavar="MODEL.keras", help="a model file instead of a run")
    p.add_argument("--out", default="predictions.csv", metavar="CSV", help="where to write the predictions (default: %(default)s)")
    p.add_argument("--thresholds", metavar="JSON",
                   help="operating points chosen on val by the evaluate step (default: the run's; 0.5 without)")
    p.add_argument("--gradcam-dir", metavar="DIR", help="also write a Grad-CAM overlay of each image's top finding here")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per forward pass (default: %(default)s)")
    p.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, metavar="MB",
                   help="skip files larger than this (default: %(default)s)")
    p.set_defaults(main=lambda a: __import__("cxr14.predict", fromlist=["main"]).main(a))

    a = sub.add_parser("app", help="start the web app (127.0.0.1 unless --share-on-network)",
                       description=f"A Gradio app: upload a chest X-ray, see the model's findings and Grad-CAM. {DISCLAIMER}")
    which = a.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="NAME", help="the trained run shown first; the page offers every trained run "
                                                     f"under {RUN.format(run='*')} (default: the first)")
    which.add_argument("--model", metavar="MODEL.keras", help="serve this one model file instead of the runs")
    a.add_argument("--thresholds", metavar="JSON", help="operating points for --model (default: the run's own)")
    a.add_argument("--port", type=int, default=app_defaults["port"], help="port to listen on (default: %(default)s)")
    a.add_argument("--share-on-network", action="store_true", default=app_defaults["share_on_network"],
                   help="listen on all interfaces, not only 127.0.0.1")
    a.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB, metavar="MB",
                   help="refuse uploads larger than this (default: %(default)s)")
    a.set_defaults(main=lambda a: __import__("cxr14.app", fromlist=["main"]).main(a))
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
