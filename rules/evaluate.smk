# Stage 6: evaluate the model on the official test split and write the report.


rule evaluate:
    input:
        model="results/train/model.keras",
        val_manifest="results/shards/val/manifest.json",
        test_manifest="results/shards/test/manifest.json",
        table="results/clean/images.parquet",
        cleaning_report="results/clean/cleaning_report.json",
        boxes=metadata("bbox_list"),
        expert_labels=metadata("expert_labels") if "expert_labels" in METADATA else [],
    output:
        metrics="results/evaluate/metrics.json",
        thresholds="results/evaluate/thresholds.json",
        predictions="results/evaluate/predictions.parquet",
        report=report(
            "results/evaluate/report.html",
            category="Evaluation",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory("results/evaluate/figures"),
            patterns=["{name}.png"],
            category="Figures",
        ),
    log:
        "logs/evaluate/evaluate.log",
    benchmark:
        "benchmarks/evaluate/evaluate.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        **config["evaluate"],
    script:
        "../scripts/evaluate.py"
