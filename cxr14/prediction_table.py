"""The predictions table (`predictions.parquet`): one row per scored image, written by `score`,
`score` and `ensemble` steps, read by `calibrate`, `evaluate` and `leaderboard`.
Its columns are spelt here only.

Columns: `split` (train/val/test, or `external` for a collection's images), the image's metadata
(`image_index`, `patient_id`, `age_years`, `sex`, `view`), `y_<finding>` (0/1 labels; -1 where an
external collection does not label the finding), `z_<finding>` (the model's logits, what every
calibration maps), `p_<finding>` (their sigmoid, the model's own probabilities) and, for a test-time
augmented run, the plain image's from the same pass as `z_notta_<finding>` and `p_notta_<finding>`.
An ensemble's logits are the mean of its members' calibrated logits. A table written before the
logits were kept (no `z_` columns) is read with the logits of its probabilities.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .constants import FINDINGS
from .files import atomic
from .logistic import logit, sigmoid

LABELS = [f"y_{f}" for f in FINDINGS]
SCORES = [f"p_{f}" for f in FINDINGS]
PLAIN_SCORES = [f"p_notta_{f}" for f in FINDINGS]
LOGITS = [f"z_{f}" for f in FINDINGS]
PLAIN_LOGITS = [f"z_notta_{f}" for f in FINDINGS]
PLAIN_COLUMNS = PLAIN_SCORES + PLAIN_LOGITS
KEY = ["split", "image_index"]
EXTERNAL = "external"  # the split of an external collection's rows


def label(finding: str) -> str:
    return f"y_{finding}"


def score(finding: str) -> str:
    return f"p_{finding}"


def read(path, split: str | None = None) -> pd.DataFrame:
    """The table at `path`, or its rows of one split sorted by image (so two runs' rows align)."""
    table = pd.read_parquet(path)
    if split is None:
        return table
    return table[table.split == split].sort_values("image_index", ignore_index=True)


def write(table: pd.DataFrame, path) -> None:
    with atomic(path) as staged:
        table.to_parquet(staged, index=False)


def frame(meta: dict, labels: np.ndarray, logits: np.ndarray, plain: np.ndarray | None = None) -> pd.DataFrame:
    """A batch's rows: its metadata columns, labels (n, 14), logits (n, 14) with their probabilities,
    and the plain image's logits (n, 14) when the scores are test-time augmented."""
    out = pd.DataFrame(meta)
    for k, finding in enumerate(FINDINGS):
        out[label(finding)] = labels[:, k].astype(np.int8)
        out[LOGITS[k]] = np.asarray(logits[:, k], np.float32)
        out[score(finding)] = sigmoid(logits[:, k]).astype(np.float32)
    if plain is not None:
        for k in range(len(FINDINGS)):
            out[PLAIN_LOGITS[k]] = np.asarray(plain[:, k], np.float32)
            out[PLAIN_SCORES[k]] = sigmoid(plain[:, k]).astype(np.float32)
    return out


def with_tta(table: pd.DataFrame) -> bool:
    """Whether the scores are test-time augmented (the plain image's are then beside them)."""
    return PLAIN_SCORES[0] in table.columns


def check_tta(table: pd.DataFrame, tta: bool, path) -> None:
    """Refuse predictions scored otherwise than the run's `evaluate.tta` says."""
    if with_tta(table) != tta:
        raise ValueError(
            f"{path} was scored {'without' if tta else 'with'} test-time augmentation but this run's evaluate.tta "
            f"is {tta}: rerun its score step (for an ensemble: its members')"
        )


def arrays(table: pd.DataFrame, findings=FINDINGS) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of `findings` (the 14 by default; an external collection's labelled ones),
    (n, len(findings)) each."""
    return table[[label(f) for f in findings]].to_numpy(), table[[score(f) for f in findings]].to_numpy(np.float64)


def _logits_of(table: pd.DataFrame, logits: list[str], probabilities: list[str]) -> np.ndarray:
    if logits[0] in table.columns:
        return table[logits].to_numpy(np.float64)
    return logit(table[probabilities].to_numpy(np.float64))


def logits(table: pd.DataFrame) -> np.ndarray:
    """The (n, 14) logits (float64): what calibrations map and ensembles average."""
    return _logits_of(table, LOGITS, SCORES)


def plain_logits(table: pd.DataFrame) -> np.ndarray:
    """The plain image's (n, 14) logits of a test-time augmented table."""
    return _logits_of(table, PLAIN_LOGITS, PLAIN_SCORES)
