# Each run's map from logits to probabilities and its operating points on each site (NIH and
# every split collection), fitted on that collection's val split; evaluation, `cxr14 predict --site`,
# the app and the exports all apply them.


rule calibrate:
    input:
        predictions=paths.PREDICTIONS,
        table=on_nih(paths.DATASET_TABLE),
        # The model the calibration belongs to (an ensemble has no model of its own).
        summary=lambda wildcards: (
            [] if RUNS[wildcards.run].is_ensemble else paths.TRAINING_SUMMARY
        ),
        # At another site, the run's NIH calibration: a finding with few val positives there is
        # shrunk towards its map.
        transferred=unless_nih(paths.NIH_CALIBRATION),
    output:
        calibration=paths.CALIBRATION,
        thresholds=paths.OPERATING_POINTS,
    log:
        paths.log("calibrate"),
    benchmark:
        paths.benchmark("calibrate")
    wildcard_constraints:
        dataset=names_pattern(SITES),
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **config["calibration"],
        site="{dataset}",
        targets=config["operating_points"],
        tta=run_setting("evaluate", "tta"),
        code=package_code("calibrate"),
    script:
        "../scripts/calibrate.py"
