# Download the archives (one job each) and the metadata files; resumable and verified.


rule download_archive:
    input:
        demo_source(box_name("{nn}")),
    output:
        archive=paths.ARCHIVE,
        checksum=paths.ARCHIVE_CHECKSUM,
    log:
        paths.log("download_archive"),
    benchmark:
        paths.benchmark("download_archive")
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
        out=paths.METADATA,
    log:
        paths.log("download_metadata"),
    benchmark:
        paths.benchmark("download_metadata")
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
