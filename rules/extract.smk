# Stage 2: extract each archive's PNGs safely into one flat folder, checking the image count.


rule extract:
    input:
        archive="results/download/images_{nn}.archive",
    output:
        images=directory("results/extract/images_{nn}"),
        manifest="results/extract/images_{nn}.manifest.tsv",
    log:
        "logs/extract/images_{nn}.log",
    benchmark:
        "benchmarks/extract/images_{nn}.tsv"
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
