"""The rule is the contract: each rule's script calls the package function of the same name with the
rule's named input, output and params, and each step's files, logs and benchmarks share its name."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from conftest import REPO
from cxr14.config import defaults

def _plain(pattern) -> str:
    """A path pattern without the wildcard constraints Snakemake writes into it: {run,a|b} -> {run}."""
    return re.sub(r"\{(\w+),[^{}]*\}", r"{\1}", str(pattern))


SCRIPTS = sorted(p for p in (REPO / "scripts").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    """The parsed workflow's rules (the demo config, so the demo rule exists too)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings

    with SnakemakeApi() as api:
        wf = api.workflow(snakefile=REPO / "Snakefile", resource_settings=ResourceSettings(cores=2),
                          config_settings=ConfigSettings(configfiles=[REPO / "config/demo.yaml"]),
                          workdir=tmp_path_factory.mktemp("contract"))
        return {r.name: r for r in wf._workflow.rules}


def _called_function(script: Path):
    """(module, name) of the one `from cxr14.<module> import <name>` step function a script calls."""
    tree = ast.parse(script.read_text())
    imports = [(n.module, a.name) for n in tree.body if isinstance(n, ast.ImportFrom) and n.module != "cxr14.logs"
               for a in n.names]
    assert len(imports) == 1, f"{script.name} should import exactly one step function, not {imports}"
    return importlib.import_module(imports[0][0]), imports[0][1]


def test_every_script_belongs_to_the_rule_of_its_name(rules):
    scripted = {name for name, rule in rules.items() if rule.is_script}
    assert scripted == {p.stem for p in SCRIPTS}
    for name in scripted:
        assert Path(rules[name].script).name == f"{name}.py"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_the_rule_names_exactly_the_functions_arguments(rules, script):
    module, name = _called_function(script)
    assert name == script.stem, f"{script.name} calls {name}, not its namesake"
    text = script.read_text()
    assert "snakemake.config" not in text and "snakemake.wildcards" not in text, "a step reads only its rule's declarations"
    rule = rules[name]
    keys = [*rule.input.keys(), *rule.output.keys(), *rule.params.keys()]
    assert len(keys) == len(set(keys)), f"rule {name} uses one name twice: {keys}"
    extra = {"threads": 1} if "threads=snakemake.threads" in text else {}
    # TypeError names a missing or an unknown argument.
    inspect.signature(getattr(module, name)).bind(**dict.fromkeys(keys), **extra)


def test_train_and_evaluate_take_every_setting_of_their_section(rules):
    assert set(rules["train"].params.keys()) - {"resume_dir"} == set(defaults("train"))
    assert set(rules["evaluate"].params.keys()) - {"run", "members"} == set(defaults("evaluate"))
    assert set(rules["calibrate"].params.keys()) - {"tta"} == set(defaults("calibration"))


@pytest.mark.parametrize("stage, results, rule_names", [
    ("download", "results/download/", ["download_archive", "download_metadata"]),
    ("extract", "results/extract/", ["extract"]), ("clean", "results/clean/", ["clean"]),
    ("shards", "results/shards/", ["plan_shards", "shard", "shard_manifest"]),
    ("train", "results/runs/{run}/train/", ["train"]),
    ("evaluate", "results/runs/{run}/evaluate/", ["score", "ensemble", "evaluate"]),
    ("calibrate", "results/runs/{run}/calibrate/", ["calibrate"]),
    ("leaderboard", "results/leaderboard.", ["leaderboard"]),
])
def test_outputs_logs_and_benchmarks_of_a_step_share_its_name(rules, stage, results, rule_names):
    logs = results.replace("results/", "logs/", 1).rstrip(".") + ("/" if results.endswith(".") else "")
    for name in rule_names:
        rule = rules[name]
        outputs = [_plain(f) for f in rule.output]
        assert all(f.startswith(results) for f in outputs), (name, outputs)
        assert all(_plain(f).startswith(logs) for f in rule.log), (name, list(rule.log))
        assert rule.benchmark is None or _plain(rule.benchmark).startswith(logs.replace("logs/", "benchmarks/", 1))
        assert (REPO / "rules" / f"{stage}.smk").read_text().count(f" {name}:") == 1
