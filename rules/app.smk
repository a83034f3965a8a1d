# Stage 7: the web app. `snakemake app` starts it on 127.0.0.1 (Ctrl-C stops it); it is not part of `all`.


rule app:
    input:
        model="results/train/model.keras",
        thresholds="results/evaluate/thresholds.json",
    log:
        "logs/app/app.log",
    localrule: True
    conda:
        "../envs/app.yaml"
    params:
        port=config["app"]["port"],
        share="--share-on-network" if config["app"]["share_on_network"] else "",
        root=workflow.basedir,
    shell:
        "PYTHONPATH={params.root}${{PYTHONPATH:+:$PYTHONPATH}} python -m cxr14.cli app --model {input.model} --thresholds {input.thresholds} "
        "--port {params.port} {params.share} 2>&1 | tee {log}"
