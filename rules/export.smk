# Stage 8: each trained run's model for serving outside cxr14 (SavedModel, ONNX, TFLite), with its
# calibration and operating points beside it, each format checked against the evaluation's test scores.


rule export:
    input:
        model=cxr14_runs.MODEL,
        summary=f"{RUN}/train/training_summary.json",
        calibration=cxr14_runs.CALIBRATION,
        thresholds=cxr14_runs.THRESHOLDS,
        predictions=f"{RUN}/evaluate/predictions.parquet",
        test_manifest=run_manifest("test"),
    output:
        saved_model=directory(f"{EXPORT}/saved_model"),
        onnx=f"{EXPORT}/model.onnx",
        tflite=f"{EXPORT}/model.tflite",
        serving=f"{EXPORT}/serving.json",
        parity_report=f"{EXPORT}/parity.json",
    log:
        "logs/runs/{run}/export/export.log",
    benchmark:
        "benchmarks/runs/{run}/export/export.tsv"
    wildcard_constraints:
        run=names_pattern(TRAINED),
    conda:
        "../envs/export.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=60,
    params:
        run="{run}",
        tta=run_setting("evaluate", "tta"),
        batch_size=run_setting("evaluate", "batch_size"),
        parity_images=config["export"]["parity_images"],
        max_difference=config["export"]["max_difference"],
        code=package_code("export"),
    script:
        "../scripts/export.py"
