# External validation: each run scored on each collection (an ensemble: its members' mean), its NIH
# calibration and operating points applied, judged beside its NIH test figures.


rule score_external:
    input:
        model=paths.MODEL,
        manifest=dataset_manifest,
    output:
        predictions=paths.EXTERNAL_PREDICTIONS,
    log:
        paths.log("score_external"),
    benchmark:
        paths.benchmark("score_external")
    wildcard_constraints:
        run=names_pattern(TRAINED),
    conda:
        "../envs/evaluate.yaml"
    # One job per run and collection: half the cores each lets two run side by side.
    threads: max(1, workflow.cores // 2)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        batch_size=run_setting("evaluate", "batch_size"),
        tta=run_setting("evaluate", "tta"),
        code=package_code("score"),
    script:
        "../scripts/score_external.py"


rule ensemble_external:
    input:
        member_predictions=lambda wildcards: expand(
            paths.EXTERNAL_PREDICTIONS,
            run=RUNS[wildcards.run].members,
            dataset=wildcards.dataset,
        ),
    output:
        predictions=paths.EXTERNAL_PREDICTIONS,
    log:
        paths.log("ensemble_external"),
    benchmark:
        paths.benchmark("ensemble_external")
    wildcard_constraints:
        run=names_pattern(ENSEMBLES),
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        weights=lambda wildcards: RUNS[wildcards.run].weights,
        code=package_code("ensemble"),
    script:
        "../scripts/ensemble_external.py"


rule validate:
    input:
        predictions=paths.EXTERNAL_PREDICTIONS,
        nih_predictions=paths.PREDICTIONS,
        calibration=paths.CALIBRATION,
        thresholds=paths.THRESHOLDS,
        ingest_report=paths.INGEST_REPORT,
    output:
        evaluation=paths.EXTERNAL_METRICS,
        report=report(
            paths.EXTERNAL_REPORT,
            category="External validation",
            subcategory="{run}",
            caption="../report/external.rst",
        ),
        figures=directory(paths.EXTERNAL_FIGURES),
    log:
        paths.log("validate"),
    benchmark:
        paths.benchmark("validate")
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
