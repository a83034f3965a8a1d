# Stage 7: each run's model card (Mitchell et al. 2019), once its NIH and external evaluations exist.


rule model_card:
    input:
        evaluation=f"{RUN}/evaluate/metrics.json",
        thresholds=cxr14_runs.THRESHOLDS,
        calibration=cxr14_runs.CALIBRATION,
        # An ensemble has no training of its own (its members' cards describe theirs).
        summary=lambda wildcards: (
            []
            if RUNS[wildcards.run].is_ensemble
            else f"{RUN}/train/training_summary.json"
        ),
        external_evaluations=expand(
            f"{EXTERNAL}/metrics.json", dataset=DATASETS, allow_missing=True
        ),
    output:
        card=f"{RUN}/model_card.md",
        html=report(
            f"{RUN}/model_card.html",
            category="Model cards",
            subcategory="{run}",
            caption="../report/model_card.rst",
        ),
    log:
        "logs/runs/{run}/model_card/model_card.log",
    benchmark:
        "benchmarks/runs/{run}/model_card/model_card.tsv"
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        run="{run}",
        config=lambda wildcards: cxr14_runs.reproducing_config(
            RUNS, wildcards.run, config["datasets"]
        ),
        starts_from=lambda wildcards: RUNS[wildcards.run].starts_from,
        code=package_code("model_card"),
    script:
        "../scripts/model_card.py"
