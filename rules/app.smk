# The web app. `snakemake app` starts it on 127.0.0.1 (Ctrl-C stops it); it is not part of `all`.
# It serves every trained run (a dropdown), starting with the reference run or `app.run`.


rule app:
    input:
        models=expand(paths.MODEL, run=TRAINED),
        # Every site's calibration and operating points of every run: the page offers each.
        calibrations=expand(paths.CALIBRATION, run=TRAINED, dataset=SITES),
        thresholds=expand(paths.OPERATING_POINTS, run=TRAINED, dataset=SITES),
        # Each run's out-of-distribution reference: the page flags an image unlike NIH's.
        features=expand(on_nih(paths.FEATURES), run=TRAINED),
    log:
        paths.log("app"),
    benchmark:
        paths.benchmark("app")
    localrule: True
    conda:
        "../envs/app.yaml"
    params:
        run=config["app"]["run"] or (REFERENCE if REFERENCE in TRAINED else TRAINED[0]),
        port=config["app"]["port"],
        share="--share-on-network" if config["app"]["share_on_network"] else "",
        concurrency=config["app"]["concurrency"],
        queue_size=config["app"]["queue_size"],
        max_mb=config["images"]["max_mb"],
        max_megapixels=config["images"]["max_megapixels"],
        root=workflow.basedir,
    shell:
        "PYTHONPATH={params.root}${{PYTHONPATH:+:$PYTHONPATH}} python -m cxr14.cli app --run {params.run} "
        "--port {params.port} --concurrency {params.concurrency} --queue-size {params.queue_size} "
        "--max-mb {params.max_mb} --max-megapixels {params.max_megapixels} "
        "{params.share} 2>&1 | tee {log}"
