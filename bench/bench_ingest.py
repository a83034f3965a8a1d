"""External collections: ingest and shard throughput per core, and indexing a MIMIC-sized table.

1. A generated collection of `--images` JPEGs at CheXpert-v1.0-small's size (320x390) in the `csv`
   layout: `ingest` (read, harmonise, check every file exists), then its `shard` step at 224 px, one
   process, one core. Side by side in the same run: the NIH shard writer on PNG copies of the first
   `--compare` images, and the collection's `shard` on the same PNGs (the ratio is the cost of the external
   path over the NIH one on the same pixels: none expected, it is the same reader).
2. MIMIC-CXR-JPG's tables at full size (377,110 images, 227,835 studies, 65,379 patients):
   reading the three gzipped tables, joining studies to images and building the paths; the
   existence check (one stat per image, here of files that are not there) timed apart.

    .venv/bin/python bench/bench_ingest.py                     # --images 20000 --compare 2000
"""

from __future__ import annotations

import argparse
import gzip
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cxr14 import formats, paths, shard_io  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.steps import ingest, shards  # noqa: E402
from cxr14.steps.demo import CHEXPERT_HEADER, site_image  # noqa: E402
from cxr14.workflow import config, runs  # noqa: E402

SCHEMA = config.schema()["properties"]["datasets"]["additionalProperties"]


def settings(**dataset):
    return runs.DatasetSettings.of(runs.dataset_param(config.check(dict(dataset), SCHEMA, "datasets.bench")))


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def make_collection(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        name = f"img/{k // 1000:03d}/{k:06d}.jpg"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        findings = {f for f in FINDINGS if rng.random() < 0.1}
        cv2.imwrite(str(root / name), site_image(findings, rng, (390, 320)), [cv2.IMWRITE_JPEG_QUALITY, 92])
        rows.append({"path": name, "patient_id": k // 3, **{f: int(f in findings) for f in FINDINGS}})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


def shard_all(plan: Path, root: Path, out: Path, n_shards: int) -> None:
    for i in range(n_shards):
        stem = out / paths.shard_stem(runs.UNSPLIT, i, n_shards)
        shards.shard(
            plan=plan,
            images=None,
            tfrecord=f"{stem}.tfrecord",
            info=f"{stem}.json",
            group=runs.UNSPLIT,
            index=i,
            root=str(root),
            image_size=224,
            encoding="raw",
            max_bad_images=0,
            max_megapixels=40,
        )


def collection_bench(work: Path, n: int, compare: int) -> None:
    root = work / "site"
    t_make, _ = timed(make_collection, root, n)
    print(f"generated {n} JPEGs (320x390) in {t_make:.1f} s")
    s = settings(format="csv", root=str(root), files=["labels.csv"], images_per_shard=1000)
    out = work / "out"
    t_ingest, _ = timed(ingest.ingest, labels=[str(root / "labels.csv")], metadata=None, split_file=None,
                        patients=None, images=out / "images.parquet", report=out / "report.json", root=str(root),
                        name="bench", settings=s)  # fmt: skip
    plan = out / "plan.parquet"
    planned = shards.plan_shards(
        table=out / "images.parquet",
        report=out / "report.json",
        plan=plan,
        groups=[runs.UNSPLIT],
        images_per_shard=1000,
        seed=0,
    )
    n_shards = planned[runs.UNSPLIT]
    t_shard, _ = timed(shard_all, plan, root, out / "shards", n_shards)

    # The same pixels (PNG copies of the first `compare`), through the NIH writer and the external one.
    table = pd.read_parquet(out / "images.parquet").head(compare)
    png_root = work / "png"
    for path in table.path:
        (png_root / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(png_root / path).replace(".jpg", ".png"), cv2.imread(str(root / path), cv2.IMREAD_GRAYSCALE))
    table = table.assign(
        path=table.path.str.replace(".jpg", ".png"), image_index=table.path.str.replace(".jpg", ".png")
    )
    png_plan = shard_io.plan_group(table.assign(split=runs.UNSPLIT), compare, 0)
    png_plan.to_parquet(work / "png_plan.parquet")
    nih_rows = png_plan.assign(file=[str(png_root / p) for p in png_plan.path], archive=1)
    t_nih, _ = timed(shard_io.write_shard, nih_rows, work / "nih.tfrecord", 224, "raw", 0)
    t_ext, _ = timed(shard_all, work / "png_plan.parquet", png_root, work / "png_shards", 1)

    print(f"\n1. collection of {n} JPEGs, 1 core:")
    print("| what | images/s |\n|---|---:|")
    print(f"| ingest (read, harmonise, check files) | {n / t_ingest:,.0f} |")
    print(f"| shard of a collection, JPEG 320x390 -> 224 px raw | {n / t_shard:,.0f} |")
    print(f"| NIH shard writer, same pixels as PNG ({compare}) | {compare / t_nih:,.0f} |")
    ratio = t_nih / t_ext
    print(f"| shard of a collection, same PNGs ({compare}) | {compare / t_ext:,.0f} ({ratio:.2f}x the NIH writer) |")


def write_gz(path: Path, frame: pd.DataFrame) -> None:
    with gzip.open(path, "wt", compresslevel=1, newline="") as fh:
        frame.to_csv(fh, index=False)


def mimic_bench(work: Path) -> None:
    rng = np.random.default_rng(0)
    images, studies, patients = 377_110, 227_835, 65_379
    subject = np.sort(rng.integers(10_000_000, 20_000_000, patients))
    study_subject = subject[np.sort(rng.integers(0, patients, studies))]
    study_id = rng.permutation(np.arange(50_000_000, 50_000_000 + studies))
    image_study = np.sort(np.r_[np.arange(studies), rng.integers(0, studies, images - studies)])
    root = work / "mimic"
    root.mkdir()
    meta = pd.DataFrame({
        "dicom_id": [f"{k:08x}-{k * 7 % 99991:05x}" for k in range(images)],
        "subject_id": study_subject[image_study], "study_id": study_id[image_study],
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
        "ViewPosition": rng.choice(["PA", "AP", "LATERAL", "LL", ""], images, p=[0.25, 0.4, 0.25, 0.05, 0.05]),
        "Rows": 3056, "Columns": 2544, "StudyDate": 21800506, "StudyTime": 213014.531,
    })  # fmt: skip
    labels = pd.DataFrame({"subject_id": study_subject, "study_id": study_id})
    for c in sorted(set(CHEXPERT_HEADER[5:])):
        labels[c] = rng.choice([1.0, 0.0, -1.0, np.nan], studies, p=[0.1, 0.1, 0.05, 0.75])
    split = meta[["dicom_id", "study_id", "subject_id"]].assign(split="train")
    t_write = time.perf_counter()
    write_gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", meta)
    write_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", labels)
    write_gz(root / "mimic-cxr-2.0.0-split.csv.gz", split)
    print(f"\nwrote MIMIC-sized tables in {time.perf_counter() - t_write:.1f} s")
    s = settings(format="mimic", root=str(root), max_missing=images)
    t_read, raw = timed(formats.mimic.read, [str(root / s.files[0])], metadata=str(root / s.metadata),
                        split_file=str(root / s.split_file), patients=None, settings=s)  # fmt: skip
    t_stat, _ = timed(lambda: [formats.file_stat(root / p) for p in raw.image])
    real = formats.file_stat
    formats.file_stat = lambda _: (0, 0)  # the rest of harmonise, as if every file were there
    try:
        t_harmonise, (frame, _, _) = timed(formats.harmonise, raw, root, s)
    finally:
        formats.file_stat = real
    print(f"\n2. MIMIC-CXR-JPG-sized tables ({images:,} images, {studies:,} studies):")
    print("| what | seconds |\n|---|---:|")
    print(f"| read the 3 tables, join, build paths | {t_read:.1f} |")
    print(f"| harmonise (views, checks, patient ids, sort), {len(frame):,} frontal kept | {t_harmonise:.1f} |")
    print(f"| existence check, {images:,} stats (local disk, files absent) | {t_stat:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--compare", type=int, default=2_000)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        collection_bench(Path(tmp), args.images, min(args.compare, args.images))
        mimic_bench(Path(tmp))


if __name__ == "__main__":
    main()
