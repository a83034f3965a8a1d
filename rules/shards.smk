# Each collection's images (NIH's, an external one's, alike) resized into TFRecord shards, one
# job per shard, per group (its splits, or one group of every image), with a manifest per group. A
# layout ({layout}: image size and encoding, e.g. 224px-raw) is sharded once, for every run that reads it.


checkpoint plan_shards:
    input:
        table=paths.DATASET_TABLE,
        # An ingested collection's report holds the fingerprint of its image files (NIH's extracted
        # images are the shard jobs' inputs instead).
        report=unless_nih(paths.INGEST_REPORT),
    output:
        plan=paths.SHARD_PLAN,
    log:
        paths.log("plan_shards"),
    benchmark:
        paths.benchmark("plan_shards")
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        groups=lambda wildcards: list(COLLECTIONS[wildcards.dataset].groups),
        images_per_shard=collection_setting("images_per_shard"),
        seed=collection_setting("seed"),
        code=package_code("shards"),
    script:
        "../scripts/plan_shards.py"


rule shard:
    input:
        plan=paths.SHARD_PLAN,
        images=lambda wildcards: list(COLLECTIONS[wildcards.dataset].image_folders),
    output:
        tfrecord=f"{paths.SHARD}.tfrecord",
        info=f"{paths.SHARD}.json",
    log:
        paths.log("shard"),
    benchmark:
        paths.benchmark("shard")
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=4000,
        runtime=60,
        cpus_per_task=2,
    params:
        group="{group}",
        index=lambda wildcards: int(wildcards.shard),
        root=collection_setting("root"),
        image_size=layout_setting(0),
        encoding=layout_setting(1),
        max_bad_images=config["shards"]["max_bad_images"],
        max_megapixels=config["images"]["max_megapixels"],
        code=package_code("shards"),
    script:
        "../scripts/shard.py"


rule shard_manifest:
    input:
        infos=shard_infos,
    output:
        manifest=paths.MANIFEST,
        bad_images=paths.BAD_IMAGES,
    log:
        paths.log("shard_manifest"),
    benchmark:
        paths.benchmark("shard_manifest")
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
        "../scripts/shard_manifest.py"
