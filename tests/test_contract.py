"""The rule is the contract: each rule's script calls the package function of the same name with the
rule's named input, output and params (translated once, by cxr14.workflow.step), and each step's files, logs
and benchmarks share its name."""

import ast
import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

from conftest import REPO
from cxr14 import settings
from cxr14.settings import defaults
from cxr14.workflow import step
from cxr14.workflow.fingerprint import fingerprint


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
        wf = api.workflow(
            snakefile=REPO / "Snakefile",
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=[REPO / "config/demo.yaml"]),
            workdir=tmp_path_factory.mktemp("contract"),
        )
        return {r.name: r for r in wf._workflow.rules}


HELPERS = ("cxr14.workflow.step", "cxr14.settings")  # the translation, and the typed settings it is given


def _called_function(script: Path):
    """(module, name, the keywords of its `run(...)` call) of the one step function a script calls."""
    tree = ast.parse(script.read_text())
    imports = [
        (n.module, a.name)
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module not in HELPERS
        for a in n.names
    ]
    assert len(imports) == 1, f"{script.name} should import exactly one step function, not {imports}"
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert len(calls) == 1 and calls[0].func.id == "run", f"{script.name} should make one call: run(step, snakemake)"
    keywords = {
        k.arg: k.value.id if isinstance(k.value, ast.Name) else ast.literal_eval(k.value) for k in calls[0].keywords
    }
    return importlib.import_module(imports[0][0]), imports[0][1], keywords


def test_every_script_belongs_to_the_rule_of_its_name(rules):
    scripted = {name for name, rule in rules.items() if rule.is_script}
    assert scripted == {p.stem for p in SCRIPTS}
    for name in scripted:
        assert Path(rules[name].script).name == f"{name}.py"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_the_rule_names_exactly_the_functions_arguments(rules, script):
    module, name, keywords = _called_function(script)
    assert name == script.stem, f"{script.name} calls {name}, not its namesake"
    text = script.read_text()
    assert "snakemake.config" not in text and "snakemake.wildcards" not in text, (
        "a step reads only its rule's declarations"
    )
    rule = rules[name]
    keys = [*rule.input.keys(), *rule.output.keys(), *rule.params.keys()]
    assert len(keys) == len(set(keys)), f"rule {name} uses one name twice: {keys}"
    assert set(keywords.get("per_run", ())) <= set(rule.input.keys()), "per-run inputs are inputs"
    assert ("settings" in rule.params.keys()) == ("settings" in keywords), "typed settings are named in the script"
    extra = {"threads": 1} if keywords.get("threads") else {}
    # TypeError names a missing or an unknown argument.
    inspect.signature(getattr(module, name)).bind(**dict.fromkeys(set(keys) - {step.CODE}), **extra)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_each_step_declares_the_fingerprint_of_the_code_it_runs(rules, script):
    module, name, _ = _called_function(script)
    assert rules[name].params.get(step.CODE) == fingerprint(module.__name__)


def test_typed_settings_are_the_schemas_sections_in_its_order():
    for kind, section in ((settings.TrainSettings, "train"), (settings.EvaluateSettings, "evaluate")):
        assert [f.name for f in dataclasses.fields(kind)] == list(defaults(section))
    assert [f.name for f in dataclasses.fields(settings.AugmentSettings)] == list(defaults("train")["augment"])


def test_the_translation_from_snakemakes_lists_to_a_steps_arguments():
    """[] -> None, per-run lists -> {run: file}, a settings dict -> typed settings, `code` left out."""
    from snakemake.iocontainers import InputFiles, OutputFiles, Params

    def named(kind, **items):
        out = kind(toclone=list(items.values()))
        for k, name in enumerate(items):
            out._set_name(name, k)
        return out

    ensemble = [
        "results/runs/a/datasets/nih/predictions.parquet",
        "results/runs/b-seed2/datasets/nih/predictions.parquet",
    ]
    fake = type(
        "Snakemake",
        (),
        {
            "input": named(
                InputFiles, member_predictions=ensemble, model=[], table="results/datasets/nih/images.parquet"
            ),
            "output": named(OutputFiles, predictions="results/runs/e/datasets/nih/predictions.parquet"),
            "params": named(
                Params, settings=settings.as_param(settings.EvaluateSettings.of(defaults("evaluate"))), code="abc"
            ),
            "threads": 3,
        },
    )()
    got = step.arguments(fake, per_run=["member_predictions"], settings=settings.EvaluateSettings, threads=True)
    assert got["member_predictions"] == {"a": ensemble[0], "b-seed2": ensemble[1]}
    assert got["model"] is None and got["table"] == "results/datasets/nih/images.parquet" and got["threads"] == 3
    assert got["settings"] == settings.EvaluateSettings.of(defaults("evaluate")) and step.CODE not in got


def test_every_rule_has_a_log_and_a_benchmark(rules):
    for name, rule in rules.items():
        if name != "all":
            assert rule.log and rule.benchmark, f"rule {name} needs a log: and a benchmark:"


@pytest.mark.parametrize(
    "stage, results, rule_names",
    [
        ("download", "results/download/", ["download_archive", "download_metadata"]),
        ("extract", "results/extract/", ["extract"]),
        ("clean", "results/datasets/nih/", ["clean"]),
        ("ingest", "results/datasets/{dataset}/", ["ingest"]),
        ("shards", "results/datasets/{dataset}/shards/", ["plan_shards", "shard", "shard_manifest"]),
        ("train", "results/runs/{run}/train/", ["train"]),
        ("evaluate", "results/runs/{run}/datasets/", ["score", "ensemble", "evaluate", "explain", "expert_labels"]),
        ("calibrate", "results/runs/{run}/datasets/", ["calibrate"]),
        ("monitor", "results/runs/{run}/datasets/", ["monitor"]),
        ("convert", "results/runs/{run}/convert/", ["convert"]),
        ("leaderboard", "results/leaderboard.", ["leaderboard"]),
        ("model_card", "results/runs/{run}/model_card.", ["model_card"]),
        ("export", "results/runs/{run}/export/", ["export"]),
    ],
)
def test_outputs_logs_and_benchmarks_of_a_step_share_its_name(rules, stage, results, rule_names):
    logs = results.replace("results/", "logs/", 1).rstrip(".") + ("/" if results.endswith(".") else "")
    for name in rule_names:
        rule = rules[name]
        outputs = [_plain(f) for f in rule.output]
        assert all(f.startswith(results) for f in outputs), (name, outputs)
        assert all(_plain(f).startswith(logs) for f in rule.log), (name, list(rule.log))
        assert _plain(rule.benchmark).startswith(logs.replace("logs/", "benchmarks/", 1)), (name, rule.benchmark)
        assert (REPO / "rules" / f"{stage}.smk").read_text().count(f" {name}:") == 1
