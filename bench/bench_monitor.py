"""The monitor step's statistics at full scale, each timed on its own: a run with DenseNet121's 1024-wide
embeddings, its NIH reference (2000 train images), NIH val (11,212) and test (25,596) against a site of
25,596 images; the schema's defaults for the samples (1000 a side), dimensions (32), permutations (1000),
folds (5) and bootstrap (1000). Random embeddings: the time does not depend on their values.

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
    probabilities = rng.uniform(size=(25596, 14))
    timed = {}

    def clock(name, work):
        start = time.perf_counter()
        result = work()
        timed[name] = time.perf_counter() - start
        return result

    reference = clock("OOD reference (Ledoit-Wolf on 2000 x 1024, NIH val's 99th percentile)",
                      lambda: ood.fit_reference(train, val, 0.99))  # fmt: skip
    clock("distances of 25,596 site + 25,596 NIH test images",
          lambda: (ood.mahalanobis(reference, site), ood.mahalanobis(reference, test)))  # fmt: skip
    project = clock("PCA to 32 components (fitted on the reference)", lambda: shift.projection(train, 32))
    a, b = project(test[:sample]), project(site[:sample])
    clock("MMD, 1000 permutations, 1000 a side (x2: site and NIH val)",
          lambda: [shift.mmd_test(a, b, 1000, 0) for _ in range(2)])  # fmt: skip
    clock("domain classifier, 5 folds + 1000 bootstrap (x2)",
          lambda: [shift.domain_classifier(a, b, 5, 0, 1000) for _ in range(2)])  # fmt: skip
    clock("label-free AUROC estimate, 14 findings x 25,596 images (x2: site and NIH test)",
          lambda: [metrics.expected_auroc(probabilities[:, j]) for j in range(14) for _ in range(2)])  # fmt: skip
    print("| statistic | seconds |")
    print("|---|---:|")
    for name, seconds in timed.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"| total | {sum(timed.values()):.1f} |")


if __name__ == "__main__":
    main()
