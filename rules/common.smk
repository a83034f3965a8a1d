# Helpers shared by the rule files (the validated config, the archives in use, file names).
import os
import re
import sys

from snakemake.utils import min_version

min_version("9.0")

# The workflow imports the cxr14 package from this checkout.
sys.path.insert(0, workflow.basedir)

from cxr14 import paths
from cxr14 import settings as cxr14_settings
from cxr14.workflow import collections as cxr14_collections
from cxr14.workflow import config as cxr14_config
from cxr14.workflow import runs as cxr14_runs
from cxr14.workflow.fingerprint import fingerprint
from cxr14.constants import (
    BBOX_LIST,
    EXPERT_LABELS,
    TEST_LIST,
    TRAIN_VAL_LIST,
    box_name,
)
from cxr14.steps.download import archive_candidates, metadata_candidates
from cxr14.shard_io import ENCODINGS, UNSPLIT

# Once, for every job: strings from `--config` read as the schema's types, checked, defaults filled in.
cxr14_config.validate(config)

# The runs (models and ensembles), resolved and checked before any job starts.
RUNS = cxr14_runs.resolve(config)
TRAINED = [name for name, run in RUNS.items() if not run.is_ensemble]
ENSEMBLES = [name for name, run in RUNS.items() if run.is_ensemble]
REFERENCE = cxr14_runs.reference(config, RUNS)
LAYOUTS = sorted({RUNS[name].layout for name in TRAINED})

ARCHIVES = sorted(config["archives"])
NN = [f"{i:02d}" for i in ARCHIVES]  # the {nn} wildcard of each
DEMO = config.get("demo") is not None

# The metadata files by role; each is fetched to paths.METADATA.
METADATA = {
    "data_entry": config["data_entry"],
    "train_val_list": TRAIN_VAL_LIST,
    "test_list": TEST_LIST,
    "bbox_list": BBOX_LIST,
}
if config["expert_labels"]:
    METADATA["expert_labels"] = config["expert_labels"]


def metadata(role):
    """The downloaded metadata file of a role (`data_entry`, `test_list`, ...)."""
    return paths.METADATA.format(name=METADATA[role])


def demo_source(name):
    """In the demo the mirror is made by the workflow, so a download depends on it."""
    return os.path.join(config["mirror"], name) if DEMO else []


def archive_entry(wildcards):
    return cxr14_config.catalog_entry(config, int(wildcards.nn))


def archive_sources(wildcards):
    """Where archive NN is fetched from: its official URL, or its Box then Kaggle name on the mirror."""
    return archive_candidates(
        int(wildcards.nn), archive_entry(wildcards), config["mirror"]
    )


def metadata_sources(wildcards):
    return metadata_candidates(wildcards.name, config["mirror"], config["metadata_dir"])


def package_code(module):
    """A step's `code` param: the fingerprint of its module in cxr14.steps and what that imports, so that a
    change to that code reruns the step (and a change to comments or docstrings does not).
    """
    return fingerprint(f"cxr14.steps.{module}")


def run_settings(section):
    """The run's typed `section` settings (train, evaluate) as one param, in the schema's order."""
    return lambda wildcards: cxr14_settings.as_param(
        getattr(RUNS[wildcards.run], section)
    )


def run_setting(section, key):
    return lambda wildcards: getattr(getattr(RUNS[wildcards.run], section), key)


def layout_setting(index):
    """image_size (0) or encoding (1) of the shard layout in the wildcards."""
    return lambda wildcards: cxr14_runs.parse_layout(wildcards.layout)[index]


def names_pattern(names):
    """A wildcard constraint that matches exactly these run names (none: nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


# The collections: NIH, then the external ones (datasets:), each sharded in every layout a run reads,
# and every run scored and judged on each.
COLLECTIONS = cxr14_collections.collections(config)
NIH = cxr14_collections.NIH
DATASETS = list(COLLECTIONS)
EXTERNAL = [name for name in DATASETS if name != NIH]
# The sites: every run's calibration and operating points are fitted on each one's val split.
SITES = [name for name, collection in COLLECTIONS.items() if collection.is_site]
NIH_MANIFESTS = expand(
    paths.on(paths.MANIFEST, NIH), layout=LAYOUTS, group=COLLECTIONS[NIH].groups
)


def on_nih(pattern):
    """A run's file on NIH (its predictions, evaluation) from its per-collection pattern."""
    return paths.on(pattern, NIH)


def unless_nih(files):
    """An input every collection's jobs have but NIH's."""
    return lambda wildcards: [] if wildcards.dataset == NIH else files


def collection_report(wildcards):
    """What made a collection says about it: NIH's cleaning report, another's ingest report."""
    pattern = paths.CLEANING_REPORT if wildcards.dataset == NIH else paths.INGEST_REPORT
    return pattern.format(dataset=wildcards.dataset)


def beside(wildcards):
    """The pages of a run on a collection beside its report, as files: on NIH a trained network's
    Grad-CAM and localisation and (where configured) the expert labels; elsewhere its monitoring.
    """
    if wildcards.dataset != NIH:
        return {
            paths.MONITOR_REPORT: "Whether the collection's images are like NIH's, asked without its labels: the monitoring report"
        }
    out = {}
    if not RUNS[wildcards.run].is_ensemble:
        out[paths.EXPLANATION_PAGE] = "Grad-CAM and localisation against the NIH boxes"
    if "expert_labels" in METADATA:
        out[paths.EXPERT_LABELS_PAGE] = "AUROC against the expert labels"
    return {
        pattern.format(run=wildcards.run, dataset=wildcards.dataset): what
        for pattern, what in out.items()
    }


def pages_beside(wildcards):
    """`beside` as links from the report's folder (its file names)."""
    return {os.path.basename(page): what for page, what in beside(wildcards).items()}


def site_files(pattern):
    """A run's file (calibration, operating points) on every site, NIH's first."""
    return lambda wildcards: expand(pattern, run=wildcards.run, dataset=SITES)


def collection_setting(key):
    return lambda wildcards: getattr(COLLECTIONS[wildcards.dataset], key)


def dataset_setting(key):
    return lambda wildcards: config["datasets"][wildcards.dataset][key]


def dataset_settings(wildcards):
    """A dataset's checked config as one param (typed again by the step)."""
    return cxr14_collections.dataset_param(config["datasets"][wildcards.dataset])


def dataset_table(key):
    """A dataset's table of role `key` (files, metadata, split_file, patients) under its root; [] when
    its format has none."""

    def tables(wildcards):
        dataset = config["datasets"][wildcards.dataset]
        names = dataset.get(key)
        if names is None:
            return []
        return (
            [os.path.join(dataset["root"], n) for n in names]
            if isinstance(names, list)
            else os.path.join(dataset["root"], names)
        )

    return tables


def manifest(dataset, run, group):
    """The manifest of a collection's group in the shard layout of a run."""
    return paths.MANIFEST.format(dataset=dataset, layout=RUNS[run].layout, group=group)


def scored_manifests(wildcards):
    """The manifests a run is scored on, for the collection in the wildcards (NIH: val and test)."""
    scored = COLLECTIONS[wildcards.dataset].scored
    return [
        manifest(wildcards.dataset, wildcards.run, group) for group in scored.values()
    ]


def shard_infos(wildcards):
    """The shard sidecars of a collection's group, known once its plan checkpoint has run."""
    import pandas as pd

    plan = pd.read_parquet(
        checkpoints.plan_shards.get(dataset=wildcards.dataset).output.plan,
        columns=["split", "num_shards"],
    )
    num = plan.loc[plan.split == wildcards.group, "num_shards"]
    if num.empty:
        raise ValueError(
            f"{wildcards.dataset} {wildcards.group} has no images: nothing to shard"
        )
    n = int(num.iloc[0])
    return [
        f"{paths.shard(wildcards.dataset, wildcards.layout, wildcards.group, i, n)}.json"
        for i in range(n)
    ]


def training_manifests(split):
    """The `split` manifests of the collections a run trains on (`train.data`), in its shard layout."""
    return lambda wildcards: [
        manifest(source, wildcards.run, split)
        for source in RUNS[wildcards.run].train.data
    ]


def network_files(pattern):
    """A run's file of a trained network (its features), for an ensemble each member's."""
    return lambda wildcards: expand(
        pattern,
        run=RUNS[wildcards.run].members or [wildcards.run],
        dataset=wildcards.get("dataset", NIH),
    )


def training_sources(run):
    """The collections a run learnt from (`train.data`; an ensemble's: its members', in order): what
    its out-of-distribution reference is fitted on."""
    trained = [RUNS[member] for member in RUNS[run].members] or [RUNS[run]]
    return list(
        dict.fromkeys(
            source
            for each in trained
            for source in cxr14_settings.sources(each.train.data)
        )
    )


# The split collections some run trains on: every run embeds their training images too (as NIH's),
# so a fine-tune's reference, and an ensemble's with a fine-tune in it, are its own training data.
TRAINING_COLLECTIONS = sorted(
    {source for run in TRAINED for source in training_sources(run)} - {NIH}
)


def reference_manifest(wildcards):
    """The training shards whose embeddings the score step keeps for the out-of-distribution
    reference: NIH's, and those of a collection some run trains on."""
    if wildcards.dataset == NIH or wildcards.dataset in TRAINING_COLLECTIONS:
        return manifest(wildcards.dataset, wildcards.run, "train")
    return []


def reference_files(pattern):
    """A run's file (features, predictions) on each collection it learnt from, one per network (an
    ensemble's members'), collection by collection."""
    return lambda wildcards: [
        pattern.format(run=network, dataset=source)
        for source in training_sources(wildcards.run)
        for network in RUNS[wildcards.run].members or [wildcards.run]
    ]


def starting_model(wildcards):
    """A fine-tune's starting model (`train.init`); none for a new one."""
    start = RUNS[wildcards.run].starts_from
    return paths.MODEL.format(run=start) if start else []
