"""Benchmark of the evaluation's numbers at full scale: the official NIH test split's shape.

    .venv/bin/python bench/bench_evaluate.py [--n-boot 1000] [--variants loop vectorised]

The real metadata (../shared/nih-metadata: Data_Entry_2017_v2020.csv.gz and the split lists; the
official test split's 25,596 images of 2,797 patients, their ages, sexes, views and labels) with
synthetic logits, judged by `assess` (every number of the NIH report: AUROC CIs, operating points,
calibration before and after, subgroups) and drawn by `report.render` (the evaluate step less
Grad-CAM), once with the bootstrap as it was (tests/reference_metrics.py) and once as it is, each in
a process of its own, one after the other: seconds, peak memory and the ratio, and the largest
difference between their numbers (nothing but float rounding is allowed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
METADATA = REPO.parent / "shared" / "nih-metadata"


def nih_table():
    """NIH's table as the clean step makes it from the real metadata (every image, its split)."""
    from cxr14.constants import FINDINGS
    from cxr14.steps.clean import assign_splits, label_matrix, parse_ages, read_data_entry, read_list

    raw = read_data_entry(METADATA / "Data_Entry_2017_v2020.csv.gz")
    labels, _ = label_matrix(raw.labels, "bench")
    table = raw[["image_index"]].assign(
        patient_id=raw.patient_id.astype("int64"), age_years=parse_ages(raw.age, 120, "bench")[0], sex=raw.sex,
        view=raw.view,
    )  # fmt: skip
    table = table.join(labels[list(FINDINGS)])
    lists = [read_list(METADATA / name) for name in ("train_val_list.txt.gz", "test_list.txt.gz")]
    table["split"] = assign_splits(table, *lists, 0.1, 0).astype(str)
    return table


def test_split(table):
    """The official test split's rows with synthetic logits: each finding's logit sees its label
    through noise, as a run with AUROC about 0.8 would."""
    import pandas as pd

    from cxr14 import prediction_table
    from cxr14.constants import FINDINGS

    test = table[table.split == "test"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    y = test[list(FINDINGS)].to_numpy()
    meta = test[["split", "image_index", "patient_id", "age_years", "sex", "view"]]
    return pd.concat([meta, prediction_table.frame({}, y, 1.3 * y + rng.normal(-2.5, 1.0, y.shape))], axis=1)


def judged(variant: str, n_boot: int) -> dict:
    """The NIH report of the test split with `variant`'s bootstrap: its numbers (`assess.judge`), then its
    figures and page (`report.render`), timed apart; Grad-CAM is left out (it needs a model)."""
    import tempfile

    from cxr14 import assess, metrics
    from cxr14.constants import FINDINGS
    from cxr14.report import render
    from cxr14.steps.clean import summary

    if variant == "loop":
        import reference_metrics

        metrics.bootstrap_calibration = reference_metrics.bootstrap_calibration_loop
        metrics._SortedScores = reference_metrics.SortedScoresLoop
    table = nih_table()
    test = test_split(table)
    fitted = {"method": "temperature", "offset": 1.0, "temperature": 1.2}
    calibration = {"method": "temperature", "shared": [], "shared_temperature": 1.0, "min_positives": 10,
                   "findings": dict.fromkeys(FINDINGS, fitted)}  # fmt: skip
    points = {rule: dict.fromkeys(FINDINGS, 0.2) for rule in metrics.OPERATING_RULES}
    start = time.perf_counter()
    result, drawn = assess.judge(test.reset_index(drop=True), run="bench", dataset="nih", collection={},
                                 split="official test split", findings=list(FINDINGS), calibration=calibration,
                                 thresholds=points, n_boot=n_boot, seed=0)  # fmt: skip
    numbers = time.perf_counter() - start
    cleaning = {"data_entry": "Data_Entry_2017_v2020.csv.gz", "rows_in": len(table), "rows_out": len(table),
                "changed": {}, "dropped": {}, "leakage_patients": 0, **summary(table)}  # fmt: skip
    result = {**result, "collection": cleaning}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        render(result, drawn, table, f"{folder}/report.html", f"{folder}/figures", title="cxr14 evaluation",
               metric_labels=assess.METRIC_LABELS)  # fmt: skip
        drawing = time.perf_counter() - start
    judged_numbers = {k: v for k, v in result.items() if k != "collection"}
    return {"seconds": numbers, "drawing": drawing, "images": len(test), "patients": int(test.patient_id.nunique()),
            "metrics": json.loads(json.dumps(judged_numbers, default=float))}  # fmt: skip


def child(variant: str, n_boot: int) -> None:
    out = judged(variant, n_boot)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def largest_difference(a, b) -> float:
    """The largest absolute difference between two JSON trees of numbers (NaN equals NaN)."""
    if isinstance(a, dict):
        return max((largest_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list):
        return max((largest_difference(x, z) for x, z in zip(a, b)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return 0.0 if (np.isnan(a) and np.isnan(b)) else abs(a - b)
    return 0.0 if a == b else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--variants", nargs="+", default=["loop", "vectorised"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.n_boot)
    if not METADATA.is_dir():
        sys.exit(f"needs the real NIH metadata in {METADATA}")
    results = {}
    for variant in args.variants:
        command = [sys.executable, __file__, "--child", variant, "--n-boot", str(args.n_boot)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    first = results[args.variants[0]]
    print(f"assess on the official test split's shape: {first['images']} images, {first['patients']} patients, "
          f"{args.n_boot} bootstrap replicates")  # fmt: skip
    for variant, r in results.items():
        print(f"  {variant:>10}: numbers {r['seconds']:6.1f} s + figures and page {r['drawing']:5.1f} s = "
              f"{r['seconds'] + r['drawing']:6.1f} s, peak {r['peak_mb']:6.0f} MB")  # fmt: skip
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        print(f"  {b} / {a}: numbers {ra['seconds'] / rb['seconds']:.1f}x faster, the report "
              f"{(ra['seconds'] + ra['drawing']) / (rb['seconds'] + rb['drawing']):.1f}x")  # fmt: skip
        print(f"  largest difference between their numbers: {largest_difference(ra['metrics'], rb['metrics']):.1e}")


if __name__ == "__main__":
    main()
