# Stage 5: train a Keras model on the train and val shards.


rule train:
    input:
        train_manifest="results/shards/train/manifest.json",
        val_manifest="results/shards/val/manifest.json",
    output:
        model="results/train/model.keras",
        summary="results/train/training_summary.json",
        history="results/train/history.csv",
        class_weights="results/train/class_weights.json",
        tensorboard=directory("results/train/tensorboard"),
    log:
        "logs/train/train.log",
    benchmark:
        "benchmarks/train/train.tsv"
    conda:
        "../envs/train.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        **config["train"],
        # Not an output: a killed run resumes from the state kept here (Snakemake keeps it too).
        resume_dir="results/train/resume",
    script:
        "../scripts/train.py"
