# Extract each archive's PNGs safely into one flat folder, checking the image count.


rule extract:
    input:
        archive=paths.ARCHIVE,
    output:
        images=directory(paths.EXTRACTED),
        manifest=paths.EXTRACT_MANIFEST,
    log:
        paths.log("extract"),
    benchmark:
        paths.benchmark("extract")
    conda:
        "../envs/download.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        expected_images=lambda wildcards: archive_entry(wildcards)["images"],
        count_tolerance=config["extract"]["count_tolerance"],
        code=package_code("extract"),
    script:
        "../scripts/extract.py"
