# Stage 1: download the archives (one job each) and the metadata files; resumable and verified.


rule download_archive:
    input:
        demo_source(box_name("{nn}")),
    output:
        archive="results/download/images_{nn}.archive",
        checksum="results/download/images_{nn}.sha256",
    log:
        "logs/download/images_{nn}.log",
    benchmark:
        "benchmarks/download/images_{nn}.tsv"
    retries: 3
    conda:
        "../envs/download.yaml"
    resources:
        downloads=1,
        mem_mb=500,
        runtime=240,
    params:
        **config["download"],
        sources=archive_sources,
        expected_bytes=lambda wildcards: archive_entry(wildcards).get("bytes"),
        sha256=lambda wildcards: archive_entry(wildcards).get("sha256"),
        code=package_code("download"),
    script:
        "../scripts/download_archive.py"


rule download_metadata:
    input:
        demo_source("{name}"),
    output:
        out="results/download/metadata/{name}",
    log:
        "logs/download/metadata/{name}.log",
    benchmark:
        "benchmarks/download/metadata/{name}.tsv"
    wildcard_constraints:
        name="|".join(re.escape(n) for n in METADATA.values()),
    retries: 3
    conda:
        "../envs/download.yaml"
    resources:
        downloads=1,
        mem_mb=500,
        runtime=10,
    params:
        **config["download"],
        sources=metadata_sources,
        metadata_dir=config["metadata_dir"],
        code=package_code("download"),
    script:
        "../scripts/download_metadata.py"
