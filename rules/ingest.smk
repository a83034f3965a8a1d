# External collections (datasets:): each read as published and harmonised to the 14 NIH findings, a
# table like NIH's (results/datasets/<name>/); from there every step treats it as it treats NIH.


rule ingest:
    input:
        labels=dataset_table("files"),
        metadata=dataset_table("metadata"),
        split_file=dataset_table("split_file"),
        patients=dataset_table("patients"),
        # NIH's table, for its prevalence beside the collection's in the report.
        nih=on_nih(paths.DATASET_TABLE),
        # A folder collection's folder (its one source: a rule that makes it runs first).
        folder=lambda wildcards: (
            config["datasets"][wildcards.dataset]["root"]
            if config["datasets"][wildcards.dataset]["format"] == "folder"
            else []
        ),
    output:
        images=paths.DATASET_TABLE,
        report=paths.INGEST_REPORT,
    log:
        paths.log("ingest"),
    benchmark:
        paths.benchmark("ingest")
    wildcard_constraints:
        dataset=names_pattern(EXTERNAL),
    conda:
        "../envs/shards.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        root=dataset_setting("root"),
        name="{dataset}",
        settings=dataset_settings,
        header_cache=paths.HEADER_CACHE,
        code=package_code("ingest"),
    script:
        "../scripts/ingest.py"
