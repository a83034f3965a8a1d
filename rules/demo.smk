# The offline demo: a synthetic phantom mirror in the real NIH formats, made at `mirror`.

if DEMO:

    rule demo_mirror:
        output:
            archives=[os.path.join(config["mirror"], box_name(i)) for i in range(1, 13)],
            data_entry=os.path.join(config["mirror"], config["data_entry"]),
            train_val_list=os.path.join(config["mirror"], TRAIN_VAL_LIST),
            test_list=os.path.join(config["mirror"], TEST_LIST),
            bbox_list=os.path.join(config["mirror"], BBOX_LIST),
            expert_labels=os.path.join(config["mirror"], EXPERT_LABELS),
        log:
            paths.log("demo_mirror"),
        benchmark:
            paths.benchmark("demo_mirror")
        conda:
            "../envs/demo.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            images_per_archive=[
                cxr14_config.catalog_entry(config, i)["images"] for i in range(1, 13)
            ],
            size=config["demo"]["size"],
            seed=config["demo"]["seed"],
            code=package_code("demo"),
        script:
            "../scripts/demo_mirror.py"


if DEMO and config["demo"]["site"]:
    SITE_ROOT = config["datasets"][config["demo"]["site"]]["root"]

    rule demo_site:
        output:
            labels=os.path.join(SITE_ROOT, "train.csv"),
            images=directory(os.path.join(SITE_ROOT, "train")),
        log:
            paths.log("demo_site"),
        benchmark:
            paths.benchmark("demo_site")
        conda:
            "../envs/demo.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            patients=config["demo"]["site_patients"],
            height=390,
            width=320,
            seed=config["demo"]["seed"],
            code=package_code("demo"),
        script:
            "../scripts/demo_site.py"
