# External collections (datasets:): each read as published and harmonised to the 14 NIH findings
# (ingest), then sharded like the NIH splits (per split when it is split), one job per shard, in each
# layout a run reads.


rule ingest:
    input:
        labels=dataset_table("files"),
        metadata=dataset_table("metadata"),
        split_file=dataset_table("split_file"),
        patients=dataset_table("patients"),
    output:
        images=f"{DATASET}/images.parquet",
        report=f"{DATASET}/ingest_report.json",
    log:
        "logs/datasets/{dataset}/ingest.log",
    benchmark:
        "benchmarks/datasets/{dataset}/ingest.tsv"
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        root=dataset_setting("root"),
        name="{dataset}",
        settings=dataset_settings,
        code=package_code("ingest"),
    script:
        "../scripts/ingest.py"


checkpoint plan_dataset_shards:
    input:
        table=f"{DATASET}/images.parquet",
        report=f"{DATASET}/ingest_report.json",
    output:
        plan=f"{DATASET}/shards/plan.parquet",
    log:
        "logs/datasets/{dataset}/shards/plan.log",
    benchmark:
        "benchmarks/datasets/{dataset}/shards/plan.tsv"
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        groups=dataset_groups,
        images_per_shard=dataset_setting("images_per_shard"),
        seed=dataset_setting("seed"),
        code=package_code("shards"),
    script:
        "../scripts/plan_dataset_shards.py"


rule dataset_shard:
    input:
        plan=f"{DATASET}/shards/plan.parquet",
    output:
        tfrecord=f"{DATASET_SHARD}.tfrecord",
        info=f"{DATASET_SHARD}.json",
    log:
        DATASET_SHARD.replace("results/", "logs/", 1) + ".log",
    benchmark:
        DATASET_SHARD.replace("results/", "benchmarks/", 1) + ".tsv"
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
        cpus_per_task=2,
    params:
        group="{group}",
        index=lambda wildcards: int(wildcards.shard),
        root=dataset_setting("root"),
        image_size=layout_setting(0),
        encoding=layout_setting(1),
        max_bad_images=config["shards"]["max_bad_images"],
        code=package_code("shards"),
    script:
        "../scripts/dataset_shard.py"


rule dataset_shard_manifest:
    input:
        infos=dataset_shard_infos,
    output:
        manifest=DATASET_MANIFEST,
        bad_images=f"{DATASET}/shards/{{layout}}/{{group}}/bad_images.tsv",
    log:
        "logs/datasets/{dataset}/shards/{layout}/{group}/manifest.log",
    benchmark:
        "benchmarks/datasets/{dataset}/shards/{layout}/{group}/manifest.tsv"
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        group="{group}",
        image_size=layout_setting(0),
        encoding=layout_setting(1),
        max_bad_images=config["shards"]["max_bad_images"],
        code=package_code("shards"),
    script:
        "../scripts/dataset_shard_manifest.py"
