"""External collections: ingest and shard throughput per core, and indexing a MIMIC-sized table.

1. A generated collection of `--images` JPEGs at CheXpert-v1.0-small's size (320x390) in the `csv`
   layout: `ingest` (read, harmonise, check every file exists), then its `shard` step at 224 px, one
   process, one core. Side by side in the same run: the NIH shard writer on PNG copies of the first
   `--compare` images, and the collection's `shard` on the same PNGs (the ratio is the cost of the external
   path over the NIH one on the same pixels: none expected, it is the same reader).
2. The releases' label tables at their real size and shape (tests/releases.py): CheXpert's train.csv
   (223,414 rows), MIMIC-CXR-JPG's three tables and MIMIC-IV's patients (377k images, 227,827
   studies), PadChest's 160K table (160,861 rows), VinBigData's train.csv (about 68k box rows over
   15,000 images), an empty file at every image path: each `ingest` (read, harmonise, check every file
   exists, write) in a fresh process, its time and peak resident memory.
3. Reading sex and age from the headers of full-size DICOMs (what VinDr's first ingest does per image).
4. `--padchest-images DIR`: how real PadChest PNGs use their 16 bits (the evidence for mapping them
   to 8), for whoever has the images.

    .venv/bin/python bench/bench_ingest.py                     # --images 20000 --compare 2000
    .venv/bin/python bench/bench_ingest.py --padchest-images /data/padchest --limit 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the releases' tables as published
import releases  # noqa: E402

from cxr14 import formats, paths, settings, shard_io  # noqa: E402
from cxr14.constants import FINDINGS  # noqa: E402
from cxr14.shard_io import UNSPLIT  # noqa: E402
from cxr14.steps import ingest, shards  # noqa: E402
from cxr14.steps.demo import site_image  # noqa: E402
from cxr14.workflow import collections, config  # noqa: E402

SCHEMA = settings.schema()["properties"]["datasets"]["additionalProperties"]


def settings(**dataset):
    return settings.DatasetSettings.of(collections.dataset_param(config.check(dict(dataset), SCHEMA, "datasets.bench")))


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
        stem = out / paths.shard_stem(UNSPLIT, i, n_shards)
        shards.shard(
            plan=plan,
            images=None,
            tfrecord=f"{stem}.tfrecord",
            info=f"{stem}.json",
            group=UNSPLIT,
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
        groups=[UNSPLIT],
        images_per_shard=1000,
        seed=0,
    )
    n_shards = planned[UNSPLIT]
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
    png_plan = shard_io.plan_group(table.assign(split=UNSPLIT), compare, 0)
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


# One ingest in a fresh interpreter that imports only the ingest step (no TensorFlow): its seconds,
# its peak resident memory and the report's image count, as JSON on stdout.
INGEST_ONCE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from cxr14.steps.ingest import ingest
from cxr14 import settings
from cxr14.workflow import collections, config
kwargs = json.loads(sys.argv[2])
schema = settings.schema()["properties"]["datasets"]["additionalProperties"]
checked = config.check(kwargs["settings"], schema, "bench")
kwargs["settings"] = settings.DatasetSettings.of(collections.dataset_param(checked))
start = time.perf_counter()
summary = ingest(**kwargs)
seconds = time.perf_counter() - start
# The peak of this process's own memory since its exec (getrusage's maxrss would carry the parent's).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps([seconds, peak, summary["images"]]))
"""


def release(work: Path, name: str, rng) -> tuple[dict, dict]:
    """A release's label tables at full size as published (tests/releases.py), an empty file at every
    image path, and the settings and tables `ingest` takes for it."""
    root = work / name
    if name == "CheXpert train.csv":
        table = releases.chexpert_train(223_414, rng)
        releases.write_table(table, root / "train.csv")
        releases.touch(root, table.Path.str.split("/", n=1).str[1])
        return dict(format="chexpert", root=str(root), files=["train.csv"]), {}
    if name == "MIMIC-CXR-JPG":
        tables = releases.mimic_tables(227_827, rng)  # 377k images
        names = {"labels": "mimic-cxr-2.0.0-chexpert.csv.gz", "metadata": "mimic-cxr-2.0.0-metadata.csv.gz",
                 "split": "mimic-cxr-2.0.0-split.csv.gz", "patients": "patients.csv.gz"}  # fmt: skip
        for key, file in names.items():
            releases.write_table(tables[key], root / file)
        meta = tables["metadata"]
        releases.touch(root, [f"files/p{str(s)[:2]}/p{s}/s{t}/{d}.jpg" for s, t, d in
                              zip(meta.subject_id, meta.study_id, meta.dicom_id)])  # fmt: skip
        given = {"metadata": str(root / names["metadata"]), "split_file": str(root / names["split"]),
                 "patients": str(root / names["patients"])}  # fmt: skip
        return dict(format="mimic", root=str(root), patients=names["patients"]), given
    if name == "PadChest":
        table = releases.padchest_table(160_861, rng)
        file = releases.write_table(table, root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
        known = set(formats.padchest.KNOWN_FAULTS)
        releases.touch(root, [f"{d}/{i}" for d, i in zip(table.ImageDir, table.ImageID) if i not in known])
        return dict(format="padchest", root=str(root), files=[file.name]), {}
    boxes = releases.vinbigdata_train(15_000, rng)
    releases.write_table(boxes, root / "train.csv")
    releases.touch(root, [f"train/{i}.dicom" for i in boxes.image_id.unique()])
    return dict(format="vindr", root=str(root), files=["train.csv"], readers="majority"), {}


def releases_bench(work: Path) -> None:
    """Each release's tables at full size, ingested in a fresh process: seconds and peak memory."""
    rng = np.random.default_rng(0)
    print("\n2. The releases' tables at full size, each `ingest` in a fresh process (1 core):")
    print("| release | table rows | images kept | ingest | peak memory |\n|---|---:|---:|---:|---:|")
    for name in ("CheXpert train.csv", "MIMIC-CXR-JPG", "PadChest", "VinBigData train.csv"):
        dataset, given = release(work, name, rng)
        s = settings(**dataset)
        first = given.get("metadata") or Path(s.root) / s.files[0]  # one row per image (MIMIC's metadata)
        rows = len(pd.read_csv(first, usecols=[0]))
        out = work / "out" / name.split()[0]
        kwargs = dict(labels=[str(Path(s.root) / f) for f in s.files], metadata=given.get("metadata"),
                      split_file=given.get("split_file"), patients=given.get("patients"),
                      images=str(out / "images.parquet"), report=str(out / "report.json"), root=s.root,
                      name="bench", settings=dataset, header_cache=str(out / "dicom_headers.parquet"))  # fmt: skip
        repo = str(Path(__file__).resolve().parents[1])
        done = subprocess.run([sys.executable, "-c", INGEST_ONCE, repo, json.dumps(kwargs)], check=True,
                              capture_output=True, text=True)  # fmt: skip
        seconds, peak, kept = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {name} | {rows:,} | {kept:,} | {seconds:.1f} s | {peak:,.0f} MB |")
        shutil.rmtree(s.root)


def header_bench(work: Path, n: int = 300) -> None:
    """Reading sex and age from full-size DICOMs (2048x2048, 12 bits: 8 MB each), the tags only."""
    from cxr14.formats.headers import header_tags
    from cxr14.images import write_dicom

    pixels = np.random.default_rng(0).integers(0, 4096, (2048, 2048), dtype=np.uint16)
    files = [write_dicom(work / f"{k}.dicom", pixels, PatientSex="MF"[k % 2], PatientAge=f"{30 + k % 50:03d}Y")
             for k in range(n)]  # fmt: skip
    seconds, _ = timed(lambda: [header_tags(Path(f)) for f in files])
    print(f"\n3. DICOM headers (PatientSex, PatientAge) of {n} 8 MB DICOMs: {seconds / n * 1000:.2f} ms each")


def padchest_bit_depth(folder: Path, limit: int) -> None:
    """How PadChest's 16-bit PNGs use their bit depth (the evidence for how to map them to 8 bits): per
    image, the highest value, the bits it needs and the share of the 16-bit range the middle 98 % of
    its pixels span; the distribution over `limit` images."""
    files = sorted(folder.rglob("*.png"))[:limit]
    rows = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.dtype != np.uint16:
            continue
        lo, hi = np.percentile(img, [1, 99])
        top = int(img.max())
        rows.append({"max": top, "bits": int(np.ceil(np.log2(top + 1))), "middle_98": (hi - lo) / 65535})
    table = pd.DataFrame(rows)
    print(f"\n{len(table)} 16-bit PNGs of {len(files)} under {folder}:")
    print(table.bits.value_counts().sort_index().rename("images by the bits their highest value needs").to_string())
    print(table[["max", "middle_98"]].describe(percentiles=[0.05, 0.5, 0.95]).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--compare", type=int, default=2_000)
    parser.add_argument("--padchest-images", type=Path, help="only report how these PadChest PNGs use 16 bits")
    parser.add_argument("--limit", type=int, default=2_000, help="with --padchest-images: at most this many")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.padchest_images:
        return padchest_bit_depth(args.padchest_images, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        collection_bench(Path(tmp), args.images, min(args.compare, args.images))
        releases_bench(Path(tmp))
        header_bench(Path(tmp))


if __name__ == "__main__":
    main()
