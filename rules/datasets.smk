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
        images=paths.DATASET_TABLE,
        report=paths.INGEST_REPORT,
    log:
        paths.log("ingest"),
    benchmark:
        paths.benchmark("ingest")
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
        table=paths.DATASET_TABLE,
        report=paths.INGEST_REPORT,
    output:
        plan=paths.DATASET_SHARD_PLAN,
    log:
        paths.log("plan_dataset_shards"),
    benchmark:
        paths.benchmark("plan_dataset_shards")
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
        plan=paths.DATASET_SHARD_PLAN,
    output:
        tfrecord=f"{paths.DATASET_SHARD}.tfrecord",
        info=f"{paths.DATASET_SHARD}.json",
    log:
        paths.log("dataset_shard"),
    benchmark:
        paths.benchmark("dataset_shard")
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
        manifest=paths.DATASET_MANIFEST,
        bad_images=paths.DATASET_BAD_IMAGES,
    log:
        paths.log("dataset_shard_manifest"),
    benchmark:
        paths.benchmark("dataset_shard_manifest")
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
