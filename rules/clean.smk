# Clean the metadata of the extracted images into NIH's table as a collection
# (results/datasets/nih/), with the splits; every step after it treats NIH like the other collections.


rule clean:
    input:
        data_entry=metadata("data_entry"),
        train_val_list=metadata("train_val_list"),
        test_list=metadata("test_list"),
        manifests=expand(paths.EXTRACT_MANIFEST, nn=NN),
        images=expand(paths.EXTRACTED, nn=NN),
    output:
        table=on_nih(paths.DATASET_TABLE),
        report=on_nih(paths.CLEANING_REPORT),
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
        # The folder the table's image paths are relative to, as the shard jobs read it.
        root=lambda wildcards: COLLECTIONS[NIH].root,
        code=package_code("clean"),
    script:
        "../scripts/clean.py"
