# Stages 1-3: download the archives and metadata, extract the PNGs, clean the metadata to Parquet.

if DEMO:

    rule demo_mirror:
        output:
            archives=expand(
                os.path.join(config["mirror"], "images_{nn}.tar.gz"),
                nn=[f"{i:02d}" for i in range(1, 13)],
            ),
            metadata=[os.path.join(config["mirror"], name) for name in METADATA_FILES],
        log:
            "logs/demo/mirror.log",
        benchmark:
            "benchmarks/demo/mirror.tsv"
        conda:
            "../envs/data.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/demo_mirror.py"


rule download_archive:
    input:
        demo_source("images_{nn}.tar.gz"),
    output:
        archive="results/download/images_{nn}.archive",
        checksum="results/download/images_{nn}.sha256",
    log:
        "logs/download/images_{nn}.log",
    benchmark:
        "benchmarks/download/images_{nn}.tsv"
    retries: 3
    conda:
        "../envs/data.yaml"
    resources:
        downloads=1,
        mem_mb=500,
        runtime=240,
    script:
        "../scripts/download_archive.py"


rule download_metadata:
    input:
        demo_source("{name}"),
    output:
        "results/download/metadata/{name}",
    log:
        "logs/download/metadata/{name}.log",
    wildcard_constraints:
        name="|".join(re.escape(n) for n in METADATA_FILES),
    retries: 3
    conda:
        "../envs/data.yaml"
    resources:
        downloads=1,
        mem_mb=500,
        runtime=10,
    script:
        "../scripts/download_metadata.py"


rule extract:
    input:
        "results/download/images_{nn}.archive",
    output:
        images=directory("results/images/images_{nn}"),
        manifest="results/images/images_{nn}.manifest.tsv",
    log:
        "logs/extract/images_{nn}.log",
    benchmark:
        "benchmarks/extract/images_{nn}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=1000,
        runtime=60,
    script:
        "../scripts/extract.py"


rule clean:
    input:
        data_entry=f"results/download/metadata/{config['data_entry']}",
        train_val="results/download/metadata/train_val_list.txt",
        test="results/download/metadata/test_list.txt",
        manifests=expand("results/images/images_{nn}.manifest.tsv", nn=ARCHIVES),
    output:
        table="results/metadata/images.parquet",
        report="results/metadata/cleaning_report.json",
    log:
        "logs/metadata/clean.log",
    benchmark:
        "benchmarks/metadata/clean.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        clean=config["clean"],
    script:
        "../scripts/clean.py"
