# Stage 6b: each run's map from scores to probabilities, fitted on its val predictions; evaluation,
# `cxr14 predict` and the app all apply it.


rule calibrate:
    input:
        predictions=f"{RUN}/evaluate/predictions.parquet",
        table="results/clean/images.parquet",
        # The model the calibration belongs to (an ensemble has no model of its own).
        summary=lambda wildcards: (
            []
            if RUNS[wildcards.run].is_ensemble
            else f"{RUN}/train/training_summary.json"
        ),
    output:
        calibration=cxr14_runs.CALIBRATION,
    log:
        "logs/runs/{run}/calibrate/calibrate.log",
    benchmark:
        "benchmarks/runs/{run}/calibrate/calibrate.tsv"
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **config["calibration"],
        tta=run_setting("evaluate", "tta"),
        code=package_code("calibrate"),
    script:
        "../scripts/calibrate.py"
