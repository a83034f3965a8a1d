# Stage 6: each run's scores on each collection (a model's, or an ensemble's mean): NIH's val and test,
# an external collection's test split or all of it; then (after the calibrate step) the evaluation on
# NIH's official test split and its report.


rule score:
    input:
        model=paths.MODEL,
        manifests=scored_manifests,
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
        splits=lambda wildcards: list(COLLECTIONS[wildcards.dataset].scored),
        batch_size=run_setting("evaluate", "batch_size"),
        tta=run_setting("evaluate", "tta"),
        code=package_code("score"),
    script:
        "../scripts/score.py"


rule ensemble:
    input:
        member_predictions=lambda wildcards: expand(
            paths.PREDICTIONS,
            run=RUNS[wildcards.run].members,
            dataset=wildcards.dataset,
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
        predictions=on_nih(paths.PREDICTIONS),
        calibration=paths.CALIBRATION,
        # Grad-CAM and localisation explain one network: an ensemble has neither input.
        model=lambda wildcards: ([] if RUNS[wildcards.run].is_ensemble else paths.MODEL),
        test_manifest=lambda wildcards: (
            []
            if RUNS[wildcards.run].is_ensemble
            else manifest(NIH, wildcards.run, "test")
        ),
        table=on_nih(paths.DATASET_TABLE),
        cleaning_report=on_nih(paths.CLEANING_REPORT),
        boxes=metadata("bbox_list"),
        expert_labels=metadata("expert_labels") if "expert_labels" in METADATA else [],
    output:
        evaluation=on_nih(paths.METRICS),
        thresholds=paths.THRESHOLDS,
        report=report(
            on_nih(paths.REPORT),
            category="Evaluation",
            subcategory="{run}",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory(on_nih(paths.FIGURES)),
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
        # Not an input: the card is made after the report, which links to it.
        model_card=paths.MODEL_CARD_HTML,
        code=package_code("evaluate"),
    script:
        "../scripts/evaluate.py"
