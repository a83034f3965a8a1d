# Stage 5: train a Keras model on the train and val shards.


rule train:
    input:
        train="results/shards/train/manifest.json",
        val="results/shards/val/manifest.json",
    output:
        model="results/model/model.keras",
        summary="results/model/training_summary.json",
        history="results/model/history.csv",
        class_weights="results/model/class_weights.json",
    log:
        "logs/model/train.log",
    benchmark:
        "benchmarks/model/train.tsv"
    conda:
        "../envs/tensorflow.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        train=config["train"],
    script:
        "../scripts/train.py"
