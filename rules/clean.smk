# Stage 3: clean the metadata of the extracted images into one Parquet table with the splits.


rule clean:
    input:
        data_entry=metadata("data_entry"),
        train_val_list=metadata("train_val_list"),
        test_list=metadata("test_list"),
        manifests=expand("results/extract/images_{nn}.manifest.tsv", nn=NN),
    output:
        table="results/clean/images.parquet",
        report="results/clean/cleaning_report.json",
    log:
        "logs/clean/clean.log",
    benchmark:
        "benchmarks/clean/clean.tsv"
    conda:
        "../envs/clean.yaml"
    resources:
        mem_mb=8000,
        runtime=20,
    params:
        **config["clean"],
        archives=ARCHIVES,
        code=package_code("clean"),
    script:
        "../scripts/clean.py"
