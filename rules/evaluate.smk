# Stage 6: each run's scores on val and test (a model's, or an ensemble's mean), then (after the
# calibrate step) the evaluation on the official test split and its report.


rule score:
    input:
        model=cxr14_runs.MODEL,
        val_manifest=run_manifest("val"),
        test_manifest=run_manifest("test"),
    output:
        predictions=f"{RUN}/evaluate/predictions.parquet",
    log:
        "logs/runs/{run}/evaluate/score.log",
    benchmark:
        "benchmarks/runs/{run}/evaluate/score.tsv"
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
            f"{RUN}/evaluate/predictions.parquet", run=RUNS[wildcards.run].members
        ),
    output:
        predictions=f"{RUN}/evaluate/predictions.parquet",
    log:
        "logs/runs/{run}/evaluate/ensemble.log",
    benchmark:
        "benchmarks/runs/{run}/evaluate/ensemble.tsv"
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
        predictions=f"{RUN}/evaluate/predictions.parquet",
        calibration=cxr14_runs.CALIBRATION,
        # Grad-CAM and localisation explain one network: an ensemble has neither input.
        model=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else cxr14_runs.MODEL
        ),
        test_manifest=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else run_manifest("test")(wildcards)
        ),
        table="results/clean/images.parquet",
        cleaning_report="results/clean/cleaning_report.json",
        boxes=metadata("bbox_list"),
        expert_labels=metadata("expert_labels") if "expert_labels" in METADATA else [],
    output:
        evaluation=f"{RUN}/evaluate/metrics.json",
        thresholds=cxr14_runs.THRESHOLDS,
        report=report(
            f"{RUN}/evaluate/report.html",
            category="Evaluation",
            subcategory="{run}",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory(f"{RUN}/evaluate/figures"),
            patterns=["{name}.png"],
            category="Figures",
            subcategory="{run}",
        ),
    log:
        "logs/runs/{run}/evaluate/evaluate.log",
    benchmark:
        "benchmarks/runs/{run}/evaluate/evaluate.tsv"
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
