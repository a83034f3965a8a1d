# Every run side by side, each compared with the reference run on its calibrated scores (paired patient
# bootstrap; DeLong clustered by patient), its verdicts in two families (runs; each run's findings).


rule leaderboard:
    input:
        evaluations=expand(on_nih(paths.METRICS), run=RUNS),
        predictions=expand(on_nih(paths.PREDICTIONS), run=RUNS),
        # Each run's NIH calibration: its comparisons are on the calibrated scores its rows judge.
        calibrations=expand(paths.NIH_CALIBRATION, run=RUNS),
        summaries=expand(paths.TRAINING_SUMMARY, run=TRAINED),
        reports=expand(on_nih(paths.REPORT), run=RUNS),
        external_evaluations=expand(paths.METRICS, run=RUNS, dataset=EXTERNAL),
        external_predictions=expand(paths.PREDICTIONS, run=RUNS, dataset=EXTERNAL),
        external_reports=expand(paths.REPORT, run=RUNS, dataset=EXTERNAL),
        monitors=expand(paths.MONITORING, run=RUNS, dataset=EXTERNAL),
        monitor_reports=expand(paths.MONITOR_REPORT, run=RUNS, dataset=EXTERNAL),
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
        model_cards={name: paths.MODEL_CARD_HTML.format(run=name) for name in RUNS},
        n_boot=config["leaderboard"]["n_boot"],
        seed=config["leaderboard"]["seed"],
        code=package_code("leaderboard"),
    script:
        "../scripts/leaderboard.py"
