# Stage 6: evaluate the model on the official test split and write the report.


rule evaluate:
    input:
        model="results/model/model.keras",
        val="results/shards/val/manifest.json",
        test="results/shards/test/manifest.json",
        table="results/metadata/images.parquet",
        cleaning_report="results/metadata/cleaning_report.json",
        boxes="results/download/metadata/BBox_List_2017.csv",
        expert=EXPERT_INPUT,
    output:
        metrics="results/eval/metrics.json",
        thresholds="results/eval/thresholds.json",
        predictions="results/eval/predictions.parquet",
        report=report(
            "results/eval/report.html",
            category="Evaluation",
            caption="../report/evaluation.rst",
        ),
        figures=report(
            directory("results/eval/figures"),
            patterns=["{name}.png"],
            category="Figures",
        ),
    log:
        "logs/eval/evaluate.log",
    benchmark:
        "benchmarks/eval/evaluate.tsv"
    conda:
        "../envs/report.yaml"
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=120,
    params:
        evaluate=config["evaluate"],
    script:
        "../scripts/evaluate.py"
