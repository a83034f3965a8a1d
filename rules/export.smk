# Each trained run's model for serving outside cxr14 (SavedModel, the convert step's ONNX, TFLite),
# with every site's calibration and operating points beside it, each format and the score step's test
# scores checked against the Keras model's test logits as every site's calibrated probabilities.


rule export:
    input:
        model=paths.MODEL,
        onnx_model=paths.CONVERTED,
        summary=paths.TRAINING_SUMMARY,
        # Every site's calibration and operating points, NIH's first: serving.json carries them all.
        calibrations=site_files(paths.CALIBRATION),
        thresholds=site_files(paths.OPERATING_POINTS),
        predictions=on_nih(paths.PREDICTIONS),
        test_manifest=lambda wildcards: manifest(NIH, wildcards.run, "test"),
    output:
        saved_model=directory(paths.SAVED_MODEL),
        onnx=paths.ONNX,
        tflite=paths.TFLITE,
        serving=paths.SERVING,
        parity_report=paths.PARITY,
    log:
        paths.log("export"),
    benchmark:
        paths.benchmark("export")
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
