# Each trained run's model as one ONNX graph (its TTA views, the plain image's logits and
# embedding): what `score` runs with ONNX Runtime on a CPU (evaluate.engine) and `export` serves.


rule convert:
    input:
        model=paths.MODEL,
    output:
        onnx=paths.CONVERTED,
    log:
        paths.log("convert"),
    benchmark:
        paths.benchmark("convert")
    wildcard_constraints:
        run=names_pattern(TRAINED),
    conda:
        "../envs/export.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        tta=run_setting("evaluate", "tta"),
        code=package_code("convert"),
    script:
        "../scripts/convert.py"
