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
        # On NIH and a collection a run trains on: the training shards whose embeddings the run's
        # out-of-distribution reference is fitted on.
        reference=reference_manifest,
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
        # The same inputs for every collection: the run's scores on it and on NIH (its test split is
        # judged beside another collection's), every site's calibration and operating points (NIH's
        # first; the collection's own when it is a site), the collection's table and its report.
        predictions=paths.PREDICTIONS,
        nih_predictions=on_nih(paths.PREDICTIONS),
        calibrations=site_files(paths.CALIBRATION),
        operating_points=site_files(paths.OPERATING_POINTS),
        table=paths.DATASET_TABLE,
        collection=collection_report,
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
    resources:
        mem_mb=16000,
        runtime=180,
    params:
        settings=run_settings("evaluate"),
        run="{run}",
        dataset="{dataset}",
        members=lambda wildcards: RUNS[wildcards.run].members or None,
        # Not inputs: the pages beside the report (made after it, or by steps of their own), linked.
        pages=pages_beside,
        model_card=paths.MODEL_CARD_HTML,
        # A local calibration on a patient-wise share of an unsplit collection (none on NIH or a site).
        recalibrate=collection_setting("recalibrate"),
        seed=collection_setting("seed"),
        calibration_method=config["calibration"]["method"],
        min_positives=config["calibration"]["min_positives"],
        prior_sd=config["calibration"]["prior_sd"],
        synthetic=DEMO,
        code=package_code("evaluate"),
    script:
        "../scripts/evaluate.py"


# What only NIH has, each a step of its own: a trained network's Grad-CAM and its localisation against
# the NIH boxes (an ensemble has neither) ...
rule explain:
    input:
        model=paths.MODEL,
        test_manifest=lambda wildcards: manifest(NIH, wildcards.run, "test"),
        predictions=on_nih(paths.PREDICTIONS),
        calibration=paths.NIH_CALIBRATION,
        thresholds=paths.THRESHOLDS,
        boxes=metadata("bbox_list"),
    output:
        explanation=on_nih(paths.EXPLANATION),
        page=on_nih(paths.EXPLANATION_PAGE),
    log:
        paths.log("explain"),
    benchmark:
        paths.benchmark("explain")
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
        settings=run_settings("evaluate"),
        run="{run}",
        synthetic=DEMO,
        code=package_code("explain"),
    script:
        "../scripts/explain.py"


# ... and every run's AUROC against the expert labels, where they are configured.
rule expert_labels:
    input:
        predictions=on_nih(paths.PREDICTIONS),
        calibration=paths.NIH_CALIBRATION,
        labels=lambda wildcards: metadata("expert_labels"),
    output:
        comparison=on_nih(paths.EXPERT_LABELS),
        page=on_nih(paths.EXPERT_LABELS_PAGE),
    log:
        paths.log("expert_labels"),
    benchmark:
        paths.benchmark("expert_labels")
    conda:
        "../envs/evaluate.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        run="{run}",
        synthetic=DEMO,
        code=package_code("expert_labels"),
    script:
        "../scripts/expert_labels.py"
