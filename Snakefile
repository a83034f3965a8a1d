# cxr14: NIH ChestX-ray14 from the 12 public archives to a trained classifier, report and app.
# `snakemake --cores all` (workstation) or `snakemake --profile profiles/slurm` (cluster).


import os


# The defaults live beside this Snakefile; --configfile files override them key by key.
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/shards.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/serve.smk"


rule all:
    input:
        "results/metadata/images.parquet",
        "results/metadata/cleaning_report.json",
        SHARD_MANIFESTS,
        "results/model/model.keras",
        "results/eval/report.html",
