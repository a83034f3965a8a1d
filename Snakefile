# cxr14: NIH ChestX-ray14 from the 12 public archives to a trained classifier, report and app.
# `snakemake --cores all` (workstation) or `snakemake --workflow-profile profiles/slurm` (cluster).


import os


# The site's archive catalog; --configfile files override it key by key. Every other key and its
# default is in cxr14/schemas/config.schema.yaml.
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    nn=r"\d{2}",
    shard=r"\d{5}",
    num=r"\d{5}",
    layout=cxr14_runs.layout(r"\d+", f"({'|'.join(ENCODINGS)})"),
    run=cxr14_runs.NAME.pattern.strip("^$"),
    dataset=names_pattern(DATASETS),
    group=f"{UNSPLIT}|train|val|test",


include: "rules/demo.smk"
include: "rules/download.smk"
include: "rules/extract.smk"
include: "rules/clean.smk"
include: "rules/ingest.smk"
include: "rules/shards.smk"
include: "rules/train.smk"
include: "rules/convert.smk"
include: "rules/evaluate.smk"
include: "rules/calibrate.smk"
include: "rules/monitor.smk"
include: "rules/leaderboard.smk"
include: "rules/model_card.smk"
include: "rules/export.smk"
include: "rules/app.smk"


rule all:
    input:
        on_nih(paths.DATASET_TABLE),
        on_nih(paths.CLEANING_REPORT),
        NIH_MANIFESTS,
        expand(paths.MODEL, run=TRAINED),
        expand(paths.REPORT, run=RUNS, dataset=DATASETS),
        expand(on_nih(paths.EXPLANATION_PAGE), run=TRAINED),
        expand(on_nih(paths.EXPERT_LABELS_PAGE), run=RUNS)
        if "expert_labels" in METADATA
        else [],
        expand(paths.MONITOR_REPORT, run=RUNS, dataset=EXTERNAL),
        expand(paths.OOD_REFERENCE, run=TRAINED),
        expand(paths.OPERATING_POINTS, run=RUNS, dataset=SITES),
        expand(paths.MODEL_CARD, run=RUNS),
        expand(paths.PARITY, run=TRAINED),
        paths.LEADERBOARD_HTML,
