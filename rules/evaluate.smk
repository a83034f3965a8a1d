# Stage 6: each run's scores on val and test (a model's, or an ensemble's mean), then (after the
# calibrate step) the evaluation on the official test split and its report.


rule score:
    input:
        model=paths.MODEL,
        val_manifest=run_manifest("val"),
        test_manifest=run_manifest("test"),
    output:
        predictions=paths.PREDICTIONS,
    log:
        paths.log("score"),
    benchmark:
        paths.benchmark("score")
    wildcard_constraints:
        run=names_pattern(TRAINED),
    conda:
        "../envs/evaluate.yaml"
    threads: workflow.cores
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        batch_size=run_setting("evaluate", "batch_size"),
        tta=run_setting("evaluate", "tta"),
        code=package_code("score"),
    script:
        "../scripts/score.py"


rule ensemble:
    input:
        member_predictions=lambda wildcards: expand(
            paths.PREDICTIONS, run=RUNS[wildcards.run].members
        ),
    output:
        predictions=paths.PREDICTIONS,
    log:
        paths.log("ensemble"),
    benchmark:
        paths.benchmark("ensemble")
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
        "../scripts/ensemble.py"


rule evaluate:
    input:
        predictions=paths.PREDICTIONS,
        calibration=paths.CALIBRATION,
        # Grad-CAM and localisation explain one network: an ensemble has neither input.
        model=lambda wildcards: ([] if RUNS[wildcards.run].is_ensemble else paths.MODEL),
        test_manifest=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else run_manifest("test")(wildcards)
        ),
        table=paths.CLEAN_TABLE,
        cleaning_report=paths.CLEANING_REPORT,
        boxes=metadata("bbox_list"),
        expert_labels=metadata("expert_labels") if "expert_labels" in METADATA else [],
    output:
        evaluation=paths.METRICS,
        thresholds=paths.THRESHOLDS,
        report=report(
            paths.REPORT,
            category="Evaluation",
            subcategory="{run}",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory(paths.FIGURES),
            patterns=["{name}.png"],
            category="Figures",
            subcategory="{run}",
        ),
    log:
        paths.log("evaluate"),
    benchmark:
        paths.benchmark("evaluate")
    conda:
        "../envs/evaluate.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=180,
    params:
        settings=run_settings("evaluate"),
        run="{run}",
        ensemble_of=lambda wildcards: RUNS[wildcards.run].members or None,
        code=package_code("evaluate"),
    script:
        "../scripts/evaluate.py"
