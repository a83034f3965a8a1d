# Each run's scores on each collection (a model's logits, or an ensemble's mean of its members'
# calibrated logits): NIH's val and test, a split collection's val and test, an unsplit one's every
# image; then (after the calibrate step) its judgement on each: on NIH's official test split, and on
# every other collection beside it, with NIH's calibration and, on a split one, its own.


rule score:
    input:
        model=paths.MODEL,
        # The run's model as ONNX: what `evaluate.engine` onnx (or auto, on a job without a GPU) scores with.
        onnx=paths.CONVERTED,
        manifests=scored_manifests,
        # On NIH: the training shards whose embeddings the run's out-of-distribution reference is fitted on.
        reference=lambda wildcards: (
            manifest(NIH, wildcards.run, "train") if wildcards.dataset == NIH else []
        ),
    output:
        predictions=paths.PREDICTIONS,
        features=paths.FEATURES,
    log:
        paths.log("score"),
    benchmark:
        paths.benchmark("score")
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
        splits=lambda wildcards: list(COLLECTIONS[wildcards.dataset].scored),
        batch_size=run_setting("evaluate", "batch_size"),
        tta=run_setting("evaluate", "tta"),
        reference_images=config["monitor"]["reference_images"],
        engine=run_setting("evaluate", "engine"),
        code=package_code("score"),
    script:
        "../scripts/score.py"


rule ensemble:
    input:
        member_predictions=lambda wildcards: expand(
            paths.PREDICTIONS,
            run=RUNS[wildcards.run].members,
            dataset=wildcards.dataset,
        ),
        # Each member's scores are calibrated (its NIH calibration) before they are averaged.
        member_calibrations=lambda wildcards: expand(
            paths.NIH_CALIBRATION, run=RUNS[wildcards.run].members
        ),
    output:
        predictions=paths.PREDICTIONS,
    log:
        paths.log("ensemble"),
    benchmark:
        paths.benchmark("ensemble")
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
        predictions=paths.PREDICTIONS,
        calibration=paths.NIH_CALIBRATION,
        thresholds=paths.THRESHOLDS,
        # On another collection: the run's NIH test scores, judged beside them; on a split one, its
        # own calibration and operating points (fitted on its val split) beside NIH's.
        nih_predictions=unless_nih(on_nih(paths.PREDICTIONS)),
        site_calibration=own_site(paths.CALIBRATION),
        site_thresholds=own_site(paths.OPERATING_POINTS),
        ingest_report=unless_nih(paths.INGEST_REPORT),
        # On NIH: Grad-CAM and localisation explain one network (an ensemble has neither), its
        # table and cleaning report drawn in the report, its boxes and expert labels.
        model=lambda wildcards: paths.MODEL if network_on_nih(wildcards) else [],
        test_manifest=lambda wildcards: (
            manifest(NIH, wildcards.run, "test") if network_on_nih(wildcards) else []
        ),
        table=only_nih(on_nih(paths.DATASET_TABLE)),
        cleaning_report=only_nih(on_nih(paths.CLEANING_REPORT)),
        boxes=only_nih(metadata("bbox_list")),
        expert_labels=only_nih(
            metadata("expert_labels") if "expert_labels" in METADATA else []
        ),
    output:
        evaluation=paths.METRICS,
        report=report(
            paths.REPORT,
            category="Evaluation",
            subcategory="{run}",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory(paths.FIGURES),
            patterns=["{name}.png"],
            category="Figures",
            subcategory="{run}",
        ),
    log:
        paths.log("evaluate"),
    benchmark:
        paths.benchmark("evaluate")
    conda:
        "../envs/evaluate.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=180,
    params:
        settings=run_settings("evaluate"),
        run="{run}",
        dataset="{dataset}",
        ensemble_of=lambda wildcards: RUNS[wildcards.run].members or None,
        # Not an input: the card is made after the report, which links to it.
        model_card=paths.MODEL_CARD_HTML,
        # A local calibration on a patient-wise share of another collection (none on NIH).
        recalibrate=collection_setting("recalibrate"),
        seed=collection_setting("seed"),
        calibration_method=config["calibration"]["method"],
        min_positives=config["calibration"]["min_positives"],
        code=package_code("evaluate"),
    script:
        "../scripts/evaluate.py"
