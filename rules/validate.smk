# External validation: each run judged on each external collection with its NIH calibration and
# operating points, beside its NIH test figures.


rule validate:
    input:
        predictions=paths.PREDICTIONS,
        nih_predictions=on_nih(paths.PREDICTIONS),
        calibration=paths.CALIBRATION,
        thresholds=paths.THRESHOLDS,
        ingest_report=paths.INGEST_REPORT,
    output:
        evaluation=paths.METRICS,
        report=report(
            paths.REPORT,
            category="External validation",
            subcategory="{run}",
            caption="../report/external.rst",
        ),
        figures=directory(paths.FIGURES),
    log:
        paths.log("validate"),
    benchmark:
        paths.benchmark("validate")
    wildcard_constraints:
        dataset=names_pattern(EXTERNAL),
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        settings=run_settings("evaluate"),
        run="{run}",
        dataset="{dataset}",
        recalibrate=dataset_setting("recalibrate"),
        seed=dataset_setting("seed"),
        calibration_method=config["calibration"]["method"],
        min_positives=config["calibration"]["min_positives"],
        code=package_code("validate"),
    script:
        "../scripts/validate.py"
