# Each run's out-of-distribution reference, fitted on the embeddings of its own training data (NIH's;
# a fine-tune's: its site's); then each run watched on each external collection, labelled or not: is
# it like the NIH data the run was calibrated on? Image headers and intensities, two-sample tests on the
# run's embeddings (an ensemble's: its members' side by side) and predictions against NIH val, an
# out-of-distribution share, and a label-free AUROC estimate; the yardstick of no shift is two
# patient-disjoint halves of NIH val, NIH test (an enriched split) the known shift.


rule ood_reference:
    input:
        # The run's training data (a fine-tune's: its site's): the embeddings of its training images,
        # and its val images' (their patients from the predictions) that set the threshold.
        features=reference_files(paths.FEATURES),
        predictions=lambda wildcards: [
            paths.PREDICTIONS.format(run=wildcards.run, dataset=source)
            for source in training_sources(wildcards.run)
        ],
    output:
        reference=paths.OOD_REFERENCE,
    log:
        paths.log("ood_reference"),
    benchmark:
        paths.benchmark("ood_reference")
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        quantile=config["monitor"]["quantile"],
        seed=config["monitor"]["seed"],
        sources=lambda wildcards: training_sources(wildcards.run),
        code=package_code("ood_reference"),
    script:
        "../scripts/ood_reference.py"


rule monitor:
    input:
        predictions=paths.PREDICTIONS,
        nih_predictions=on_nih(paths.PREDICTIONS),
        calibration=paths.NIH_CALIBRATION,
        # The run's calibration fitted at this collection, where it is a site (split): what the
        # label-free AUROC estimate holds with.
        site_calibration=lambda wildcards: (
            paths.CALIBRATION.format(**wildcards)
            if COLLECTIONS[wildcards.dataset].is_site
            else []
        ),
        features=network_files(paths.FEATURES),
        nih_features=network_files(on_nih(paths.FEATURES)),
        ood_reference=paths.OOD_REFERENCE,
        table=paths.DATASET_TABLE,
        nih_table=on_nih(paths.DATASET_TABLE),
        ingest_report=paths.INGEST_REPORT,
    output:
        monitoring=paths.MONITORING,
        report=report(
            paths.MONITOR_REPORT,
            category="Monitoring",
            subcategory="{run}",
            caption="../report/monitor.rst",
        ),
    log:
        paths.log("monitor"),
    benchmark:
        paths.benchmark("monitor")
    wildcard_constraints:
        dataset=names_pattern(EXTERNAL),
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        settings=cxr14_settings.as_param(
            cxr14_settings.MonitorSettings.of(config["monitor"])
        ),
        run="{run}",
        dataset="{dataset}",
        root=collection_setting("root"),
        nih_root=COLLECTIONS[NIH].root,
        members=lambda wildcards: RUNS[wildcards.run].members or None,
        synthetic=DEMO,
        code=package_code("monitor"),
    script:
        "../scripts/monitor.py"
