# Each run's model card (Mitchell et al. 2019), once its NIH and external evaluations exist.


rule model_card:
    input:
        evaluation=on_nih(paths.METRICS),
        # Every site's, NIH's first: the card reports what `cxr14 predict --site` would use.
        calibrations=site_files(paths.CALIBRATION),
        thresholds=site_files(paths.OPERATING_POINTS),
        # An ensemble has no training of its own (its members' cards describe theirs).
        summary=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else paths.TRAINING_SUMMARY
        ),
        external_evaluations=expand(paths.METRICS, dataset=EXTERNAL, allow_missing=True),
        monitors=expand(paths.MONITORING, dataset=EXTERNAL, allow_missing=True),
    output:
        card=paths.MODEL_CARD,
        html=report(
            paths.MODEL_CARD_HTML,
            category="Model cards",
            subcategory="{run}",
            caption="../report/model_card.rst",
        ),
    log:
        paths.log("model_card"),
    benchmark:
        paths.benchmark("model_card")
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
