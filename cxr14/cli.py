"""The `cxr14` command: every workflow stage without Snakemake, plus `predict` and `app`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import config as cfg


def _config(args) -> dict:
    return cfg.load(*(args.config or [Path(__file__).resolve().parents[1] / "config.yaml"]))


def _stage(name):
    """Run a cxr14.stages function with the config and the remaining arguments."""
    def run(args):
        from . import stages

        with stages.logged(None):
            getattr(stages, name)(_config(args), *args.args)
        return 0
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cxr14", description="NIH ChestX-ray14 workflow (research use only, not medical advice).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="predict findings for image files, folders or globs into a CSV")
    p.add_argument("paths", nargs="+")
    p.add_argument("--model", required=True)
    p.add_argument("--out", default="predictions.csv")
    p.add_argument("--thresholds", default="results/eval/thresholds.json",
                   help="operating points from the evaluation stage (0.5 where missing)")
    p.add_argument("--gradcam-dir", help="also write a Grad-CAM overlay of the top finding per image here")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-mb", type=float, default=64)
    p.set_defaults(run=lambda a: __import__("cxr14.predict", fromlist=["main"]).main(a))

    a = sub.add_parser("app", help="start the web app on 127.0.0.1")
    a.add_argument("--model", default="results/model/model.keras")
    a.add_argument("--thresholds", default="results/eval/thresholds.json")
    a.add_argument("--port", type=int, default=7860)
    a.add_argument("--share-on-network", action="store_true", help="listen on all interfaces, not only 127.0.0.1")
    a.add_argument("--max-mb", type=float, default=64, help="refuse uploads larger than this")
    a.set_defaults(run=lambda a: __import__("cxr14.app", fromlist=["main"]).main(a))

    stage_help = {
        "download_archive": "INDEX OUT CHECKSUM", "download_metadata": "NAME OUT",
        "extract": "INDEX ARCHIVE OUT_DIR MANIFEST", "plan_shards": "TABLE OUT",
        "write_shard": "PLAN SPLIT SHARD IMAGE_DIR OUT INFO_OUT", "train": "TRAIN_MANIFEST VAL_MANIFEST OUT_DIR",
        "demo_mirror": "OUT_DIR",
    }
    for name, usage in stage_help.items():
        s = sub.add_parser(name.replace("_", "-"), help=f"run the {name} step: {usage}")
        s.add_argument("args", nargs="*", metavar="ARG", help=usage)
        s.add_argument("--config", action="append", help="config files, merged in order (default: config.yaml)")
        s.set_defaults(run=_stage(name))
    args = parser.parse_args(argv)
    if getattr(args, "args", None) is not None:
        args.args = [int(v) if v.isdigit() else v for v in args.args]
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
