"""The monitor's tests on data shaped like chest X-rays: patients with many images, whose images are
more alike than two patients'. Two samples of one population must not be flagged, a real shift must,
and the yardstick's halves and the out-of-distribution threshold's held-out half share no patient."""

import numpy as np
import pytest

from cxr14 import ood, shift
from cxr14.intensity import BINS

PATIENTS, IMAGES, DIMS, FINDINGS = 50, 10, 8, 3
SETTINGS = {"sample_images": 1000, "permutations": 200, "folds": 2, "n_boot": 200, "alpha": 0.01}


def _clustered(seed: int, moved: float = 0.0, side: str = "a"):
    """`PATIENTS` x `IMAGES` embeddings: a patient random effect (sd 1) plus each image's own noise
    (sd 0.5), the population's mean moved by `moved`; probabilities of `FINDINGS` findings from a
    fixed linear read-out of the embedding; each row's patient id."""
    rng = np.random.default_rng(seed)
    patient_effect = rng.normal(size=(PATIENTS, DIMS)) + moved
    embeddings = np.repeat(patient_effect, IMAGES, axis=0) + 0.5 * rng.normal(size=(PATIENTS * IMAGES, DIMS))
    readout = np.abs(np.random.default_rng(99).normal(size=(DIMS, FINDINGS))) / np.sqrt(DIMS)
    probabilities = 1 / (1 + np.exp(-(embeddings @ readout - 1.5)))
    patients = np.repeat([f"{side}{k:05d}" for k in range(PATIENTS)], IMAGES)
    return embeddings, probabilities, patients


def _compare(a, b, seed=0):
    (x, p_x, x_patients), (y, p_y, y_patients) = a, b
    return shift.compare(x, y, x_patients, y_patients, p_x=p_x, p_y=p_y, seed=seed, **SETTINGS)


@pytest.mark.parametrize("draw", range(4))
def test_two_samples_of_one_patient_clustered_population_are_not_flagged(draw):
    """50 patients x 10 images on each side, one population: no detector flags it. Counted by image
    (every row its own patient, as the monitor did), the same samples look shifted: the patient
    effect is what the tests must not mistake for a shift."""
    a, b = _clustered(2 * draw), _clustered(2 * draw + 1, side="b")
    got = _compare(a, b)
    assert got["mmd"]["p"] > 0.05 and got["domain"]["p"] > 0.05 and not got["flags"]["embeddings"], got
    assert got["ks"]["p_bonferroni"] > SETTINGS["alpha"] and not got["shifted"], got
    assert got["patients"] == [PATIENTS, PATIENTS] and got["images"] == [PATIENTS * IMAGES] * 2
    by_image = shift.mmd_test(a[0], b[0], SETTINGS["permutations"], seed=0)
    classified = shift.domain_classifier(a[0], b[0], 2, seed=0, n_boot=200)
    assert by_image["p"] < 0.01 or classified["ci"][0] > 0.5  # what ignoring the patients gives


def test_a_shift_of_the_patients_is_flagged_by_every_detector():
    got = _compare(_clustered(0), _clustered(1, moved=0.8, side="b"))
    assert got["shifted"] and got["flags"] == {"embeddings": True, "predictions": True}, got
    assert got["mmd"]["p"] < 0.01 and got["domain"]["p"] < 0.01 and got["domain"]["ci"][0] > 0.6
    assert got["ks"]["p_bonferroni"] < 0.01


def test_ks_compares_one_image_per_patient_and_is_scipys_there():
    from scipy.stats import ks_2samp

    (_, p_x, xp), (_, p_y, yp) = _clustered(3), _clustered(4, moved=0.3, side="b")
    got = shift.ks_test(p_x, p_y, seed=1, x_patients=xp, y_patients=yp)
    at_x, at_y = shift.one_per_patient(xp, 1), shift.one_per_patient(yp, 2)
    assert len(set(xp[at_x])) == len(at_x) == PATIENTS and got["images"] == [PATIENTS, PATIENTS]
    for j in range(FINDINGS):
        want = ks_2samp(p_x[at_x, j], p_y[at_y, j])
        assert (got["statistic"][j], got["p"][j]) == pytest.approx((want.statistic, want.pvalue), rel=1e-12)
    assert got["p_bonferroni"] == pytest.approx(min(1, FINDINGS * min(got["p"])))


def test_mmd_permutations_move_whole_patients():
    (_, _, xp), (_, _, yp) = _clustered(3), _clustered(4, side="b")
    labels = shift._patient_permutations(*shift._groups(xp, yp), 20, seed=0)
    for row in labels:  # every patient's images on one side, half the patients on each
        per_patient = row.reshape(2 * PATIENTS, IMAGES)
        assert (per_patient == per_patient[:, :1]).all() and per_patient[:, 0].sum() == PATIENTS


def test_patient_sample_spreads_over_as_many_patients_as_it_can_and_halves_share_none():
    """One image of every patient before a second of any: the evidence grows with the patients."""
    patients = np.repeat(np.arange(40), np.arange(1, 41))  # 1 to 40 images each
    picked = shift.sample(len(patients), 30, seed=3, patients=patients)
    assert len(picked) == 30 and len(set(patients[picked])) == 30 and (np.diff(picked) > 0).all()
    picked = shift.sample(len(patients), 200, seed=3, patients=patients)
    assert len(picked) == 200 and (np.diff(picked) > 0).all()
    counts = np.bincount(patients[picked], minlength=40)
    whole = np.arange(1, 41) <= counts.max() - 1  # patients with fewer images than the most drawn of one
    assert (counts[whole] == np.arange(1, 41)[whole]).all() and counts.max() - counts[~whole].min() <= 1
    np.testing.assert_array_equal(picked, shift.sample(len(patients), 200, seed=3, patients=patients))
    first = shift.patient_halves(patients, seed=0)
    assert not set(patients[first]) & set(patients[~first])
    assert abs(len(set(patients[first])) - 20) <= 1
    np.testing.assert_array_equal(first, shift.patient_halves(patients, seed=0))


def test_ood_threshold_is_fitted_on_one_half_of_val_and_checked_on_the_other():
    """The threshold's own images are past it by construction (1 - quantile of them); the yardstick
    share is that of the patients it was not fitted on, about 1 - quantile too, not 0."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(3000, 4))
    val, _, val_patients = _clustered(6)
    val = val[:, :4] / np.sqrt(1.25)
    reference = ood.fit_reference(train, val, 0.9, val_patients=val_patients, seed=0)
    fitted_on = shift.patient_halves(val_patients, seed=0)
    fitted = np.sort(ood.mahalanobis(reference, val[fitted_on]))
    rank = int(np.ceil((len(fitted) + 1) * 0.9))  # the conformal quantile: past it at most 10 % of the time
    assert reference["threshold"] == pytest.approx(fitted[rank - 1])
    held_out = np.mean(ood.mahalanobis(reference, val[~fitted_on]) > reference["threshold"])
    assert reference["heldout_share"] == pytest.approx(held_out)
    assert reference["threshold_images"] == fitted_on.sum() and reference["heldout_images"] == (~fitted_on).sum()
    assert 0.0 < reference["heldout_share"] < 0.3


# The monitor and ood_reference steps on files shaped like a run's: NIH train, val and test, and a site.
EMBED = 12


def _population(rng, patients: int, per_patient: int, prefix: str, moved: float = 0.0):
    """Images of `patients` patients (`per_patient` each): embeddings with a patient effect, logits and
    labels of the 14 findings from them (labels drawn as the logits say: calibrated at NIH)."""
    from cxr14.constants import FINDINGS

    effect = rng.normal(size=(patients, EMBED)) + moved
    embedding = np.repeat(effect, per_patient, axis=0) + 0.5 * rng.normal(size=(patients * per_patient, EMBED))
    readout = np.random.default_rng(7).normal(size=(EMBED, len(FINDINGS))) / np.sqrt(EMBED)
    logits = embedding @ readout - 2.0
    labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(int)
    patient = np.repeat([f"{prefix}{k:05d}" for k in range(patients)], per_patient)
    index = np.array([f"{p}_{k:03d}.png" for k, p in enumerate(patient)])
    return {"embedding": embedding, "logits": logits, "labels": labels, "patient": patient, "index": index}


def _write_run(tmp_path, rng, site_moved: float):
    """A run's NIH and site predictions and features, tables, ingest report and NIH calibration (the
    identity: NIH's labels are drawn from its logits). The site is split: scored on val and test
    (`external`), its first training images embedded (what a fine-tune learns from)."""
    import json

    import pandas as pd

    from cxr14 import prediction_table
    from cxr14.constants import FINDINGS
    from cxr14.steps.score import write_features

    def files(name: str, parts: dict[str, dict]):
        tables, found = [], {}
        for split, part in parts.items():
            n = len(part["index"])
            found[split] = {"image_index": part["index"], "embedding": part["embedding"].astype(np.float32),
                            "pixel_mean": rng.normal(120, 5, n), "pixel_std": rng.normal(50, 3, n),
                            "histogram": np.full((n, BINS), 1 / BINS)}  # fmt: skip
            if split != "train":
                meta = {"image_index": part["index"], "patient_id": part["patient"], "age_years": np.full(n, 50.0),
                        "sex": ["F"] * n, "view": ["PA"] * n}  # fmt: skip
                tables.append(prediction_table.frame(meta, part["labels"], part["logits"]).assign(split=split))
        prediction_table.write(pd.concat(tables, ignore_index=True), tmp_path / f"{name}_predictions.parquet")
        write_features(found, tmp_path / f"{name}_features.npz")
        every = np.concatenate([p["index"] for p in parts.values()])
        pd.DataFrame({"image_index": every, "path": every, "study_date": ""}).to_parquet(tmp_path / f"{name}.parquet")

    files("nih", {s: _population(rng, n, 5, s[:2]) for s, n in (("train", 80), ("val", 60), ("test", 60))})
    site = {
        s: _population(rng, n, 4, "site" + s[:2], site_moved) for s, n in (("train", 60), ("val", 40), ("external", 40))
    }
    files("site", site)
    identity = {"findings": {f: {"method": "temperature", "offset": 0.0, "temperature": 1.0} for f in FINDINGS}}
    (tmp_path / "nih_calibration.json").write_text(json.dumps(identity))
    (tmp_path / "ingest.json").write_text(json.dumps({"labelled_findings": list(FINDINGS)}))
    return tmp_path


def _reference(tmp_path, sources):
    from cxr14.steps.ood_reference import ood_reference

    out = tmp_path / f"reference_{'_'.join(sources)}.npz"
    ood_reference(features=[tmp_path / f"{s}_features.npz" for s in sources],
                  predictions=[tmp_path / f"{s}_predictions.parquet" for s in sources],
                  reference=out, quantile=0.9, seed=0, sources=sources)  # fmt: skip
    return out


def _monitor(tmp_path, reference, site_calibration=None):
    from cxr14.settings import MonitorSettings, defaults
    from cxr14.steps.monitor import monitor

    settings = MonitorSettings.of(defaults("monitor") | {"permutations": 200, "n_boot": 200, "dims": 8})
    return monitor(
        predictions=tmp_path / "site_predictions.parquet", nih_predictions=tmp_path / "nih_predictions.parquet",
        calibration=tmp_path / "nih_calibration.json", site_calibration=site_calibration,
        features=[tmp_path / "site_features.npz"], nih_features=[tmp_path / "nih_features.npz"],
        ood_reference=reference, table=tmp_path / "site.parquet", nih_table=tmp_path / "nih.parquet",
        ingest_report=tmp_path / "ingest.json", monitoring=tmp_path / "monitor.json",
        report=tmp_path / "monitor.html", settings=settings, run="cnn", dataset="site", root=str(tmp_path),
        nih_root=str(tmp_path),
    )  # fmt: skip


def test_monitor_holds_the_site_against_nih_val_beside_a_yardstick_of_two_patient_halves(tmp_path):
    """A shifted site is flagged and its label-free estimate is "not estimable" without a site
    calibration; the yardstick, two patient-disjoint halves of NIH val, is not flagged; NIH test is
    the known shift beside them; the OOD yardstick is the held-out half's share."""
    rng = np.random.default_rng(0)
    _write_run(tmp_path, rng, site_moved=1.0)
    got = _monitor(tmp_path, _reference(tmp_path, ["nih"]))
    features = got["features"]
    assert features["reference"] == "NIH val" and got["shifted"] and not got["yardstick_shifted"]
    assert sum(features["yardstick"]["patients"]) == 60 and features["patients"] == [60, 40]
    assert "patient-disjoint halves of NIH val" in features["yardstick"]["construction"]
    assert set(features["nih_test"]) >= {"mmd", "domain", "ks", "shifted"} and "nih_test_shifted" in got
    assert got["images"] == 160 and got["patients"] == 40  # the site's test split (`external`) only
    assert got["auroc_estimate"]["calibration"] is None and "not estimable" in got["auroc_estimate"]["reason"]
    assert all(v["auroc_estimate"] is None for v in got["predictions"].values()) and got["mean_auroc_estimate"] is None
    assert (
        got["ood"]["training_data"] == "nih" and got["ood"]["threshold_images"] + got["ood"]["yardstick_images"] == 300
    )
    assert not got["ood"]["few_threshold_images"]  # the 90th percentile of 150 images: 15 past it
    page = (tmp_path / "monitor.html").read_text()
    assert "not estimable" in page and "patient-disjoint halves of NIH val" in page


def test_the_label_free_estimate_uses_the_sites_own_calibration(tmp_path):
    import json

    from cxr14 import metrics, prediction_table
    from cxr14.calibration import calibrated
    from cxr14.constants import FINDINGS

    rng = np.random.default_rng(1)
    _write_run(tmp_path, rng, site_moved=1.0)
    own = {"findings": {f: {"method": "temperature", "offset": 0.0, "temperature": 1.5, "intercept": -0.3}
                        for f in FINDINGS}}  # fmt: skip
    (tmp_path / "site_calibration.json").write_text(json.dumps(own))
    got = _monitor(tmp_path, _reference(tmp_path, ["nih"]), tmp_path / "site_calibration.json")
    assert got["shifted"] and got["auroc_estimate"]["calibration"] == "site"
    site = calibrated(prediction_table.read(tmp_path / "site_predictions.parquet", "external"), own)
    _, p = prediction_table.arrays(site)
    entry = got["predictions"]["Effusion"]
    assert entry["auroc_estimate"] == pytest.approx(metrics.expected_auroc(p[:, FINDINGS.index("Effusion")]))
    assert entry["estimate_error"] == pytest.approx(entry["auroc_estimate_labelled"] - entry["auroc"])


def test_a_fine_tunes_reference_is_its_own_training_data(tmp_path):
    """Held against NIH's training embeddings, most of a shifted site's images are past the threshold;
    held against the site's own (a fine-tune's training data), about 1 - quantile of them are."""
    rng = np.random.default_rng(2)
    _write_run(tmp_path, rng, site_moved=2.0)
    nih_reference, site_reference = _reference(tmp_path, ["nih"]), _reference(tmp_path, ["site"])
    from_nih, from_site = _monitor(tmp_path, nih_reference), _monitor(tmp_path, site_reference)
    assert from_nih["ood"]["share"] > 0.6 and from_site["ood"]["share"] < 0.3, (from_nih["ood"], from_site["ood"])
    assert from_site["ood"]["training_data"] == "site" and from_site["ood"]["reference_images"] == 240
    assert from_site["ood"]["threshold_images"] + from_site["ood"]["yardstick_images"] == 160
    assert from_site["ood"]["few_threshold_images"]  # the 90th percentile of 80 images: 8 past it
    assert "few images for that percentile" in (tmp_path / "monitor.html").read_text()


def test_a_site_of_several_images_a_patient_against_one_image_a_patient_has_uniform_p_values():
    """One population: a site of 50 patients x 10 images against a reference of 500 patients x 1 image.
    With each patient's self-likeness in the site's within-side kernel sum (pairs no relabelling of whole
    patients separates), the observed MMD sat among the smallest of its relabellings: p piled up near 1
    (median 0.9 over these draws), a test that cannot see a shift at such a site. Over pairs of
    different patients the p-values are uniform, as a valid test's are under no shift."""
    found = []
    for seed in range(12):
        site, _, site_patients = _clustered(seed)
        rng = np.random.default_rng(seed + 100)
        reference = rng.normal(size=(500, DIMS)) + 0.5 * rng.normal(size=(500, DIMS))
        found.append(shift.mmd_test(site, reference, 200, seed, site_patients, np.arange(500))["p"])
    assert min(found) > 0.01 and 0.25 < np.median(found) < 0.75, np.round(found, 3)
