# Every run side by side, each compared with the reference run (paired patient bootstrap, DeLong).


rule leaderboard:
    input:
        evaluations=expand(paths.METRICS, run=RUNS),
        predictions=expand(paths.PREDICTIONS, run=RUNS),
        summaries=expand(paths.TRAINING_SUMMARY, run=TRAINED),
        reports=expand(paths.REPORT, run=RUNS),
        external_evaluations=expand(paths.EXTERNAL_METRICS, run=RUNS, dataset=DATASETS),
        external_predictions=expand(
            paths.EXTERNAL_PREDICTIONS, run=RUNS, dataset=DATASETS
        ),
        external_reports=expand(paths.EXTERNAL_REPORT, run=RUNS, dataset=DATASETS),
    output:
        csv=paths.LEADERBOARD_CSV,
        html=report(
            paths.LEADERBOARD_HTML,
            category="Evaluation",
            caption="../report/leaderboard.rst",
        ),
    log:
        paths.log("leaderboard"),
    benchmark:
        paths.benchmark("leaderboard")
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
