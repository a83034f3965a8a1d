"""Data shaped like NIH ChestX-ray14, drawn to check the statistics the reports print (docs/statistics.md).

The patients are the real ones: each drawn patient brings its real images (how many, their 14 labels,
view, sex and age) from the NIH metadata, so the clustering (9.15 images a patient on the official test
split, up to 184), the test split's enrichment against train_val and the rare findings (Hernia ~0.2 %)
are NIH's own. What is drawn is what a model would make of them: per image a logit per finding and an
embedding, each with a per-patient random effect (one patient's images look alike, and a model scores
them alike). The logits' law is known, so the population AUROC, sensitivity and specificity are exact
(`Model`); anything else is measured on a very large draw. Seeded and vectorised; nothing in the
workflow imports this module (bench/bench_statistics.py and tests/test_statistics.py do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

from . import prediction_table
from .constants import FINDINGS

TEST, TRAIN_VAL = "test", "train_val"  # the official split lists
# Population AUROCs of the simulated model: CheXNet's published per-finding figures less 0.04 (0.69-0.90,
# mean 0.80), a realistic DenseNet on NIH's official split.
REALISTIC_AUROC = (0.77, 0.88, 0.82, 0.69, 0.83, 0.74, 0.73, 0.85, 0.75, 0.85, 0.90, 0.76, 0.77, 0.88)


def read_metadata(folder) -> pd.DataFrame:
    """One row per NIH image: image_index, patient_id (its first 8 characters), split (test or
    train_val, from the official lists), view, sex, age_years, follow_up and the 14 label columns
    (`prediction_table.label`), sorted by patient."""
    folder = Path(folder)
    entry = pd.read_csv(folder / "Data_Entry_2017_v2020.csv.gz")
    test = set(pd.read_csv(folder / "test_list.txt.gz", header=None)[0])
    found = entry["Finding Labels"].str.split("|")
    out = pd.DataFrame(
        {
            "image_index": entry["Image Index"],
            "patient_id": entry["Image Index"].str[:8],
            "split": np.where(entry["Image Index"].isin(test), TEST, TRAIN_VAL),
            "view": entry["View Position"],
            "sex": entry["Patient Gender"],
            "age_years": entry["Patient Age"].astype(float),
            "follow_up": entry["Follow-up #"],
        }
    )
    for f in FINDINGS:
        out[prediction_table.label(f)] = found.map(lambda labels, f=f: f in labels).astype(np.int8)
    return out.sort_values(["patient_id", "image_index"], ignore_index=True)


@dataclass
class Cohort:
    """The real patients of one split, arranged so that a draw of patients is a few array operations."""

    rows: pd.DataFrame  # the split's metadata rows, grouped by patient
    starts: np.ndarray = field(init=False)  # each patient's first row
    counts: np.ndarray = field(init=False)  # and its number of images
    labels: np.ndarray = field(init=False)  # (n, 14) int8

    def __post_init__(self):
        self.rows = self.rows.reset_index(drop=True)
        codes = self.rows.patient_id.to_numpy()
        self.starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        self.counts = np.diff(np.r_[self.starts, len(codes)])
        self.labels = self.rows[[prediction_table.label(f) for f in FINDINGS]].to_numpy()

    @property
    def patients(self) -> int:
        return len(self.starts)

    def prevalence(self) -> np.ndarray:
        return self.labels.mean(axis=0)

    def rows_of(self, chosen: np.ndarray) -> np.ndarray:
        """The row positions of the patients `chosen` (positions into starts), patient by patient."""
        counts = self.counts[chosen]
        first = np.repeat(self.starts[chosen] - np.r_[0, np.cumsum(counts)[:-1]], counts)
        return first + np.arange(counts.sum())


def cohorts(metadata: pd.DataFrame) -> dict[str, Cohort]:
    """{"test": the official test split's patients, "train_val": the others'}."""
    return {split: Cohort(metadata[metadata.split == split]) for split in (TEST, TRAIN_VAL)}


@dataclass(frozen=True)
class Model:
    """The law of the simulated model's outputs. Per image i of patient p and finding j, a latent score
    z = delta_j y_ij + u_p + v_pr + e_i + w_ir (u, e shared by every run r; v, w a run's own), normal
    with total SD `sd`, so the population AUROC is Phi(delta / (sqrt 2 sd)) exactly. The logit a run
    reports is z mapped by the calibration that is exact where the prevalence is `calibrated_on`'s
    (the logistic map of a normal location model). The embedding: a per-patient vector, the sum of the
    image's findings' directions, its view's (AP) direction and image noise."""

    auroc: tuple = REALISTIC_AUROC
    patient_sd: float = 0.6  # the logit's per-patient offset, shared by the runs
    image_sd: float = 0.6
    run_patient_sd: float = 0.35  # a run's own per-patient and per-image parts (runs disagree)
    run_image_sd: float = 0.35
    calibrated_on: tuple | None = None  # the prevalences its map is exact for (None: 0.05 each)
    dims: int = 32
    embedding_patient_sd: float = 1.0
    embedding_image_sd: float = 1.0
    finding_effect: float = 0.5
    view_effect: float = 0.5
    seed: int = 0  # of the finding and view directions

    @property
    def sd(self) -> float:
        return float(np.sqrt(self.patient_sd**2 + self.image_sd**2 + self.run_patient_sd**2 + self.run_image_sd**2))

    def delta(self, auroc=None) -> np.ndarray:
        return np.sqrt(2) * self.sd * norm.ppf(np.asarray(self.auroc if auroc is None else auroc, np.float64))

    def base_logit(self) -> np.ndarray:
        return logit(np.full(len(FINDINGS), 0.05) if self.calibrated_on is None else np.asarray(self.calibrated_on))

    def to_logit(self, z: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The reported logit of latent z: log of the likelihood ratio plus the calibration prevalence."""
        return self.base_logit() + delta / self.sd**2 * (z - delta / 2)

    def latent_threshold(self, threshold: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return (logit(threshold) - self.base_logit()) * self.sd**2 / delta + delta / 2

    def sensitivity(self, threshold: np.ndarray, auroc=None) -> np.ndarray:
        """Per finding, the population share of positive images with a probability >= `threshold`."""
        delta = self.delta(auroc)
        return norm.sf((self.latent_threshold(threshold, delta) - delta) / self.sd)

    def specificity(self, threshold: np.ndarray, auroc=None) -> np.ndarray:
        delta = self.delta(auroc)
        return norm.cdf(self.latent_threshold(threshold, delta) / self.sd)

    def directions(self) -> tuple[np.ndarray, np.ndarray]:
        """The unit directions of the 14 findings (14, dims) and of the AP view (dims,) in the embedding."""
        raw = np.random.default_rng(self.seed).normal(size=(len(FINDINGS) + 1, self.dims))
        raw /= np.linalg.norm(raw, axis=1, keepdims=True)
        return raw[:-1], raw[-1]


@dataclass
class Sample:
    """A drawn collection: the real rows of its patients and, per run, the simulated logits (runs, n, 14)."""

    rows: pd.DataFrame
    labels: np.ndarray  # (n, 14): 1, 0, or -1 where the collection does not label the finding
    logits: np.ndarray
    embedding: np.ndarray

    @property
    def patients(self) -> np.ndarray:
        return self.rows.patient_id.to_numpy()

    @property
    def probabilities(self) -> np.ndarray:
        return expit(self.logits)

    def table(self, run: int = 0) -> pd.DataFrame:
        """Run `run`'s predictions table (`prediction_table.frame`), with the metadata columns."""
        meta = {c: self.rows[c].to_numpy() for c in ("image_index", "patient_id", "view", "sex", "age_years")}
        return prediction_table.frame(meta, self.labels, self.logits[run])


def draw(
    cohort: Cohort,
    rng: np.random.Generator,
    model: Model = Model(),
    patients: int | None = None,
    images: int | None = None,
    chosen: np.ndarray | None = None,
    aurocs=None,
    logit_shift=0.0,
    embedding_shift=None,
    unlabelled=(),
) -> Sample:
    """A collection of real patients of `cohort` (`chosen` positions, or `patients` of them, or as many
    as reach `images`; drawn without replacement), with one run's outputs per row of `aurocs` (runs, 14
    population AUROCs; default the model's, one run). `logit_shift`: added to every logit (a site the
    calibration does not transfer to); `embedding_shift` (dims,): added to every embedding (a shifted
    site); `unlabelled`: findings the collection does not label (label -1)."""
    if chosen is None:
        order = rng.permutation(cohort.patients)
        if images is not None:
            patients = int(np.searchsorted(np.cumsum(cohort.counts[order]), images) + 1)
        chosen = order[:patients]
    at = cohort.rows_of(np.asarray(chosen))
    rows = cohort.rows.iloc[at].reset_index(drop=True)
    labels = cohort.labels[at].copy()
    patient = np.repeat(np.arange(len(chosen)), cohort.counts[chosen])
    n, k = labels.shape
    aurocs = np.atleast_2d(model.auroc if aurocs is None else aurocs)
    shared = rng.normal(0, model.patient_sd, (len(chosen), 1))[patient] + rng.normal(0, model.image_sd, (n, k))
    logits = np.empty((len(aurocs), n, k))
    for r, auroc in enumerate(aurocs):
        delta = model.delta(auroc)
        own = rng.normal(0, model.run_patient_sd, (len(chosen), 1))[patient] + rng.normal(0, model.run_image_sd, (n, k))
        logits[r] = model.to_logit(delta * labels + shared + own, delta) + logit_shift
    findings, ap = model.directions()
    embedding = (
        rng.normal(0, model.embedding_patient_sd, (len(chosen), model.dims))[patient]
        + model.finding_effect * labels @ findings
        + model.view_effect * (rows.view.to_numpy() == "AP")[:, None] * ap
        + rng.normal(0, model.embedding_image_sd, (n, model.dims))
    )
    if embedding_shift is not None:
        embedding += embedding_shift
    for f in unlabelled:
        labels[:, FINDINGS.index(f)] = -1
    return Sample(rows, labels, logits, embedding)


def halves(cohort: Cohort, rng: np.random.Generator, patients: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two patient-disjoint random sets of `patients` each (default: half the cohort each), as positions."""
    order = rng.permutation(cohort.patients)
    size = cohort.patients // 2 if patients is None else patients
    return order[:size], order[size : 2 * size]


def rare_findings(cohort: Cohort, below: float = 0.01) -> list[str]:
    """The findings with a prevalence under `below` in `cohort`: a small site often does not label them."""
    return [f for f, p in zip(FINDINGS, cohort.prevalence()) if p < below]
