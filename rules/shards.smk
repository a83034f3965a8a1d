# Stage 4: resized images in TFRecord shards, one job per shard, and a manifest per split. A layout
# ({layout}: image size and encoding, e.g. 224px-raw) is sharded once, for every run that reads it.


checkpoint plan_shards:
    input:
        table="results/clean/images.parquet",
    output:
        plan="results/shards/plan.parquet",
    log:
        "logs/shards/plan.log",
    benchmark:
        "benchmarks/shards/plan.tsv"
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
        plan="results/shards/plan.parquet",
        images=expand("results/extract/images_{nn}", nn=NN),
    output:
        tfrecord=f"{SHARD}.tfrecord",
        info=f"{SHARD}.json",
    log:
        f"{SHARD_LOG}.log",
    benchmark:
        f"{SHARD_BENCHMARK}.tsv"
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
        manifest=MANIFEST,
        bad_images="results/shards/{layout}/{split}/bad_images.tsv",
    log:
        "logs/shards/{layout}/{split}/manifest.log",
    benchmark:
        "benchmarks/shards/{layout}/{split}/manifest.tsv"
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
