# External validation: each run scored on each collection (an ensemble: its members' mean), its NIH
# calibration and operating points applied, judged beside its NIH test figures.


rule score_external:
    input:
        model=cxr14_runs.MODEL,
        manifest=dataset_manifest,
    output:
        predictions=f"{EXTERNAL}/predictions.parquet",
    log:
        "logs/runs/{run}/external/{dataset}/score_external.log",
    benchmark:
        "benchmarks/runs/{run}/external/{dataset}/score_external.tsv"
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
            f"{EXTERNAL}/predictions.parquet",
            run=RUNS[wildcards.run].members,
            dataset=wildcards.dataset,
        ),
    output:
        predictions=f"{EXTERNAL}/predictions.parquet",
    log:
        "logs/runs/{run}/external/{dataset}/ensemble_external.log",
    benchmark:
        "benchmarks/runs/{run}/external/{dataset}/ensemble_external.tsv"
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
        predictions=f"{EXTERNAL}/predictions.parquet",
        nih_predictions=f"{RUN}/evaluate/predictions.parquet",
        calibration=cxr14_runs.CALIBRATION,
        thresholds=cxr14_runs.THRESHOLDS,
        ingest_report=f"{DATASET}/ingest_report.json",
    output:
        evaluation=f"{EXTERNAL}/metrics.json",
        report=report(
            f"{EXTERNAL}/report.html",
            category="External validation",
            subcategory="{run}",
            caption="../report/external.rst",
        ),
        figures=directory(f"{EXTERNAL}/figures"),
    log:
        "logs/runs/{run}/external/{dataset}/validate.log",
    benchmark:
        "benchmarks/runs/{run}/external/{dataset}/validate.tsv"
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
