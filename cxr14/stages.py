"""One function per workflow step, taking the config and paths: what the Snakemake scripts and the CLI call."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

from . import config as cfg
from .constants import BBOX_LIST, METADATA_HELP, TEST_LIST, TRAIN_VAL_LIST
from .files import write_json

log = logging.getLogger("cxr14")


@contextlib.contextmanager
def logged(path: str | Path | None):
    """Send logging, stdout and stderr (tqdm bars) of a step to its log file."""
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "w", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        # Point the file descriptors there too, so TensorFlow's C++ messages land in the log.
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except Exception:
            log.exception("step failed")
            raise
        finally:
            root.removeHandler(handler)
            fh.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def metadata_files(config: dict) -> list[str]:
    extra = [config["expert_labels"]] if config.get("expert_labels") else []
    return [config["data_entry"], TRAIN_VAL_LIST, TEST_LIST, BBOX_LIST, *extra]


def download_archive(config: dict, index: int, out: str | Path, checksum: str | Path) -> dict:
    from . import download

    entry = cfg.catalog_entry(config, index)
    info = download.fetch_first(
        download.archive_candidates(index, entry, config.get("mirror")),
        Path(out),
        settings=download.Settings.from_config(config),
        expected_bytes=entry.get("bytes"),
        sha256=entry.get("sha256"),
        progress=True,
    )
    download.write_checksum(info, Path(checksum))
    log.info("archive %d: %s bytes from %s, sha256 %s", index, info["bytes"], info["source"], info["sha256"])
    return info


def download_metadata(config: dict, name: str, out: str | Path) -> dict:
    from . import download

    help_text = METADATA_HELP.format(names=", ".join(metadata_files(config)), folder=config["metadata_dir"])
    info = download.fetch_metadata(
        download.metadata_candidates(name, config.get("mirror"), config["metadata_dir"]),
        Path(out), help_text, settings=download.Settings.from_config(config), progress=False,
    )
    log.info("%s from %s", name, info["source"])
    return info


def extract(config: dict, index: int, archive: str | Path, out_dir: str | Path, manifest: str | Path) -> dict:
    from .extract import extract_archive

    result = extract_archive(
        Path(archive), Path(out_dir), Path(manifest),
        expected_images=cfg.catalog_entry(config, index)["images"],
        tolerance=config["extract"]["count_tolerance"],
    )
    log.info("archive %d: %s", index, result)
    return result


def clean(config: dict, data_entry, train_val_list, test_list, manifests: dict, out, report_path) -> dict:
    from . import metadata

    params = config["clean"]
    table, report = metadata.clean(
        data_entry, train_val_list, test_list, manifests,
        val_fraction=params["val_fraction"], seed=params["seed"], max_age=params["max_age"],
    )
    metadata.write_parquet(table, out)
    write_json(report, report_path)
    log.info("cleaned %d of %d rows; images per split %s", report["rows_out"], report["rows_in"], report["images"])
    return report


def plan_shards(config: dict, table_path, out) -> dict:
    import pandas as pd

    from .metadata import write_parquet
    from .shards import plan, shard_counts

    params = config["shards"]
    table = plan(pd.read_parquet(table_path), params["images_per_shard"], params["seed"])
    write_parquet(table, out)
    counts = shard_counts(table)
    log.info("shards per split: %s", counts)
    return counts


def write_shard(config: dict, plan_path, split: str, shard: int, image_dir, out, info_out) -> dict:
    import pandas as pd

    from .shards import write_shard as write

    params = config["shards"]
    rows = pd.read_parquet(plan_path, filters=[("split", "==", split), ("shard", "==", shard)])
    info = write(rows, image_dir, out, params["image_size"], params["encoding"], params["max_bad_images"])
    write_json(info, info_out)
    log.info("%s: %d images, %d bad, %d bytes", info["file"], info["images"], len(info["bad_images"]), info["bytes"])
    return info


def shard_manifest(config: dict, split: str, info_paths, out, bad_out) -> dict:
    import json

    from .shards import write_manifest

    params = config["shards"]
    infos = [json.loads(Path(p).read_text()) for p in sorted(info_paths)]
    manifest = write_manifest(split, infos, params["image_size"], params["encoding"], out, bad_out,
                              params["max_bad_images"])
    log.info("%s: %d images in %d shards, %d bad", split, manifest["images"], len(infos), manifest["bad_images"])
    return manifest


def train(config: dict, train_manifest, val_manifest, out_dir) -> dict:
    from .train import train as run

    return run(train_manifest, val_manifest, out_dir, config["train"])


def evaluate(config: dict, model, val_manifest, test_manifest, table, cleaning_report, boxes, expert,
             out_dir) -> dict:
    import json

    import pandas as pd

    from .evaluate import evaluate as run
    from .report import render

    params = config["evaluate"]
    out_dir = Path(out_dir)
    result = run(model, val_manifest, test_manifest, out_dir, boxes_csv=boxes, expert_csv=expert,
                 n_boot=params["n_boot"], seed=params["seed"], gallery_k=params["gallery_k"],
                 batch_size=params["batch_size"])
    render(result, pd.read_parquet(table), json.loads(Path(cleaning_report).read_text()),
           out_dir / "report.html", out_dir / "figures")
    return result["metrics"]


def demo_mirror(config: dict, out_dir: str | Path) -> dict:
    from .demo import make_mirror

    counts = {i: cfg.catalog_entry(config, i)["images"] for i in range(1, 13)}
    result = make_mirror(out_dir, counts, size=config["demo"]["size"], seed=config["demo"]["seed"])
    log.info("phantom mirror in %s: %s", out_dir, result)
    return result


def run_snakemake_script(snakemake, step) -> None:
    """Entry point of the thin scripts/: validate the config, log to the rule's log, run `step`."""
    config = cfg.validate(dict(snakemake.config))
    with logged(snakemake.log[0] if snakemake.log else None):
        step(config, snakemake)
