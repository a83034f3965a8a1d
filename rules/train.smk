# Train each run's Keras model on the train and val shards of its layout (NIH's, a
# collection's, or both), from scratch, ImageNet weights, or another run's model (a fine-tune).


rule train:
    input:
        # One per source of `train.data` (NIH, collections), pooled.
        train_manifests=training_manifests("train"),
        val_manifests=training_manifests("val"),
        init=starting_model,
    output:
        model=paths.MODEL,
        summary=paths.TRAINING_SUMMARY,
        history=paths.HISTORY,
        class_weights=paths.CLASS_WEIGHTS,
        tensorboard=directory(paths.TENSORBOARD),
    log:
        paths.log("train"),
    benchmark:
        paths.benchmark("train")
    wildcard_constraints:
        run=names_pattern(TRAINED),
    conda:
        "../envs/train.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=24 * 60,
    params:
        run="{run}",
        settings=run_settings("train"),
        # Not an output: a killed run resumes from the state kept here (Snakemake keeps it too).
        resume_dir=paths.RESUME,
        code=package_code("train"),
    script:
        "../scripts/train.py"
