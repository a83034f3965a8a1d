# Stage 4: resized images in TFRecord shards, one job per shard, and a manifest per split. A layout
# ({layout}: image size and encoding, e.g. 224px-raw) is sharded once, for every run that reads it.


checkpoint plan_shards:
    input:
        table=paths.CLEAN_TABLE,
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
        images_per_shard=config["shards"]["images_per_shard"],
        seed=config["shards"]["seed"],
        code=package_code("shards"),
    script:
        "../scripts/plan_shards.py"


rule shard:
    input:
        plan=paths.SHARD_PLAN,
        images=expand(paths.EXTRACTED, nn=NN),
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
        split="{split}",
        index=lambda wildcards: int(wildcards.shard),
        archives=ARCHIVES,
        image_size=layout_setting(0),
        encoding=layout_setting(1),
        max_bad_images=config["shards"]["max_bad_images"],
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
        split="{split}",
        image_size=layout_setting(0),
        encoding=layout_setting(1),
        max_bad_images=config["shards"]["max_bad_images"],
        code=package_code("shards"),
    script:
        "../scripts/shard_manifest.py"
