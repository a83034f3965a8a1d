# Every run side by side, each compared with the reference run (paired patient bootstrap, DeLong).


rule leaderboard:
    input:
        evaluations=expand(f"{RUN}/evaluate/metrics.json", run=RUNS),
        predictions=expand(f"{RUN}/evaluate/predictions.parquet", run=RUNS),
        summaries=expand(f"{RUN}/train/training_summary.json", run=TRAINED),
        reports=expand(f"{RUN}/evaluate/report.html", run=RUNS),
        external_evaluations=expand(
            f"{EXTERNAL}/metrics.json", run=RUNS, dataset=DATASETS
        ),
        external_predictions=expand(
            f"{EXTERNAL}/predictions.parquet", run=RUNS, dataset=DATASETS
        ),
        external_reports=expand(f"{EXTERNAL}/report.html", run=RUNS, dataset=DATASETS),
    output:
        csv="results/leaderboard.csv",
        html=report(
            "results/leaderboard.html",
            category="Evaluation",
            caption="../report/leaderboard.rst",
        ),
    log:
        "logs/leaderboard/leaderboard.log",
    benchmark:
        "benchmarks/leaderboard/leaderboard.tsv"
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
        cpus_per_task=2,
    params:
        groups=cxr14_runs.groups(RUNS),
        flat_settings={name: run.flat_settings() for name, run in RUNS.items()},
        reference=REFERENCE,
        starts_from={
            name: run.starts_from for name, run in RUNS.items() if run.starts_from
        },
        n_boot=config["leaderboard"]["n_boot"],
        seed=config["leaderboard"]["seed"],
        code=package_code("leaderboard"),
    script:
        "../scripts/leaderboard.py"
