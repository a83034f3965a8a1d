# Stage 4: resized images in TFRecord shards, one job per shard, and a manifest per split.


checkpoint plan_shards:
    input:
        "results/metadata/images.parquet",
    output:
        "results/shards/plan.parquet",
    log:
        "logs/shards/plan.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        images_per_shard=config["shards"]["images_per_shard"],
        seed=config["shards"]["seed"],
    script:
        "../scripts/plan_shards.py"


rule shard:
    input:
        plan="results/shards/plan.parquet",
        manifests=expand("results/images/images_{nn}.manifest.tsv", nn=ARCHIVES),
    output:
        shard="results/shards/{split}/{split}-{shard}-of-{num}.tfrecord",
        info="results/shards/{split}/{split}-{shard}-of-{num}.json",
    log:
        "logs/shards/{split}/{split}-{shard}-of-{num}.log",
    benchmark:
        "benchmarks/shards/{split}/{split}-{shard}-of-{num}.tsv"
    conda:
        "../envs/tensorflow.yaml"
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        image_size=config["shards"]["image_size"],
        encoding=config["shards"]["encoding"],
        max_bad_images=config["shards"]["max_bad_images"],
    script:
        "../scripts/shard.py"


rule shard_manifest:
    input:
        shard_infos,
    output:
        manifest="results/shards/{split}/manifest.json",
        bad="results/shards/{split}/bad_images.tsv",
    log:
        "logs/shards/{split}/manifest.log",
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/shard_manifest.py"
