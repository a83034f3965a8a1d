"""The monitor step's statistics at full scale, each timed on its own: a run with DenseNet121's 1024-wide
embeddings, its NIH reference (2000 train images), NIH val (11,212) and test (25,596) against a site of
25,596 images, 9 images per patient; the schema's defaults for the samples (1000 a side, whole patients),
dimensions (32), permutations (1000), folds (2) and bootstrap (1000). Random embeddings: the time does
not depend on their values.

    .venv/bin/python bench/bench_monitor.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import numpy as np

    from cxr14 import metrics, ood, shift

    rng = np.random.default_rng(0)
    width, sample = 1024, 1000
    train, val, test, site = (rng.normal(size=(n, width)).astype(np.float32) for n in (2000, 11212, 25596, 25596))
    patients = {name: np.arange(len(x)) // 9 for name, x in (("val", val), ("test", test), ("site", site))}
    probabilities = {name: rng.uniform(size=(len(patients[name]), 14)) for name in patients}
    timed = {}

    def clock(name, work):
        start = time.perf_counter()
        result = work()
        timed[name] = time.perf_counter() - start
        return result

    reference = clock("OOD reference (Ledoit-Wolf on 2000 x 1024, a patient half of NIH val's 99th percentile)",
                      lambda: ood.fit_reference(train, val, 0.99, val_patients=patients["val"], seed=0))  # fmt: skip
    clock("distances of 25,596 site + 25,596 NIH test images",
          lambda: (ood.mahalanobis(reference, site), ood.mahalanobis(reference, test)))  # fmt: skip
    project = clock("PCA to 32 components (fitted on the reference)", lambda: shift.projection(train, 32))
    projected = {"val": project(val), "test": project(test), "site": project(site)}
    half = shift.patient_halves(patients["val"], 0)

    def against(x: str, y: str, x_rows=slice(None), y_rows=slice(None)) -> dict:
        return shift.compare(
            projected[x][x_rows], projected[y][y_rows], patients[x][x_rows], patients[y][y_rows],
            p_x=probabilities[x][x_rows], p_y=probabilities[y][y_rows], sample_images=sample, permutations=1000,
            folds=2, n_boot=1000, seed=0, alpha=0.01,
        )  # fmt: skip

    clock("two-sample tests (MMD, domain classifier, 14 KS), NIH val against the site, its own half and NIH test",
          lambda: [against("val", "site"), against("val", "val", half, ~half), against("val", "test")])  # fmt: skip
    clock("label-free AUROC estimate, 14 findings x 25,596 images (x2: site and NIH test)",
          lambda: [metrics.expected_auroc(probabilities[k][:, j]) for j in range(14)
                   for k in ("site", "test")])  # fmt: skip
    print("| statistic | seconds |")
    print("|---|---:|")
    for name, seconds in timed.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"| total | {sum(timed.values()):.1f} |")


if __name__ == "__main__":
    main()
