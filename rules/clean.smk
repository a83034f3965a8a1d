# Stage 3: clean the metadata of the extracted images into one Parquet table with the splits.


rule clean:
    input:
        data_entry=metadata("data_entry"),
        train_val_list=metadata("train_val_list"),
        test_list=metadata("test_list"),
        manifests=expand(paths.EXTRACT_MANIFEST, nn=NN),
    output:
        table=paths.CLEAN_TABLE,
        report=paths.CLEANING_REPORT,
    log:
        paths.log("clean"),
    benchmark:
        paths.benchmark("clean")
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
