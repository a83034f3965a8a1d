"""One home for paths: every `results/`, `logs/` and `benchmarks/` path the workflow writes is spelt in
cxr14/paths.py, and the rules, scripts and the rest of the package read it from there."""

import re

from conftest import REPO
from cxr14 import paths

# A string literal (plain or f-string) that starts with one of the workflow's roots.
SPELT = re.compile(r"""(?<![\w/.])[rfb]*["'](results|logs|benchmarks)/""")


def spelt(text: str) -> list[str]:
    """The lines of `text` (comments and docstring prose aside) that spell a workflow path."""
    return [line.strip() for line in text.splitlines() if SPELT.search(line.split("#", 1)[0])]


def test_the_check_sees_a_path_spelt_in_code_but_not_in_prose():
    assert spelt('out = "results/datasets/nih/images.parquet"') and spelt("log: f'logs/{rule}.log'")
    assert not spelt("# written to results/datasets/nih/images.parquet") and not spelt("under results/runs/<run>/")


def test_no_path_is_spelt_outside_the_paths_module():
    files = [
        *(REPO / "cxr14").rglob("*.py"),
        *(REPO / "scripts").glob("*.py"),
        *(REPO / "rules").glob("*.smk"),
        REPO / "Snakefile",
    ]
    found = {
        str(f.relative_to(REPO)): hits for f in files if f != REPO / "cxr14/paths.py" and (hits := spelt(f.read_text()))
    }
    assert not found, f"spell these paths in cxr14/paths.py and read them from there: {found}"


def test_each_rules_log_and_benchmark_sit_where_its_job_is():
    for rule in paths.JOBS:
        log, bench = paths.log(rule), paths.benchmark(rule)
        assert log.startswith("logs/") and bench.startswith("benchmarks/")
        assert log.removeprefix("logs/").removesuffix(".log") == bench.removeprefix("benchmarks/").removesuffix(".tsv")


def test_the_parsers_read_back_what_the_patterns_write():
    predictions = paths.PREDICTIONS.format(run="cnn-seed2", dataset="site")
    assert paths.run_of(predictions) == "cnn-seed2" and paths.dataset_of(predictions) == "site"
    shard = paths.shard("nih", "64px-raw", "train", 3, 12)
    assert shard == "results/datasets/nih/shards/64px-raw/train/train-00003-of-00012"
    assert f"{shard}.json" == f"{paths.SHARD}.json".format(dataset="nih", layout="64px-raw", group="train",
                                                           shard="00003", num="00012")  # fmt: skip
