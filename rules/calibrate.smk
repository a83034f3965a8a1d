# Stage 6b: each run's map from scores to probabilities, fitted on its val predictions; evaluation,
# `cxr14 predict` and the app all apply it.


rule calibrate:
    input:
        predictions=on_nih(paths.PREDICTIONS),
        table=on_nih(paths.DATASET_TABLE),
        # The model the calibration belongs to (an ensemble has no model of its own).
        summary=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else paths.TRAINING_SUMMARY
        ),
    output:
        calibration=paths.CALIBRATION,
    log:
        paths.log("calibrate"),
    benchmark:
        paths.benchmark("calibrate")
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
