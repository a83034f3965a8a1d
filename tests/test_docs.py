"""The README and docs/ say what the code does: the files they name exist, docs/architecture.md's tables
are the rule files' and pyproject.toml's layers, its recipes hold (a format's reader takes what `ingest`
passes, a change to a module reruns the steps the pages say), the README's flowchart draws real
dependencies, and the glossary's words are the ones used. Cheap: no workflow runs (the figures of a
finished demo are tests/test_docs_figures.py's)."""

import inspect
import re
import tomllib

import pytest
import yaml

from conftest import REPO
from cxr14.workflow import reruns

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TEMPLATES = sorted((REPO / "cxr14/templates").glob("*.j2"))
ARCHITECTURE = REPO / "docs/architecture.md"


def _section(text: str, heading: str) -> str:
    """The text under a `## heading`, up to the next heading of that level."""
    return re.split(r"^## ", text.split(f"\n## {heading}\n", 1)[1], flags=re.M)[0]


def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with `header_start`, as cell lists."""
    lines = text[text.index(header_start) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _names(cell: str) -> list[str]:
    """The `code spans` of a cell, without their trailing slash: `formats/` -> formats."""
    return [name.rstrip("/") for name in re.findall(r"`([^`]+)`", cell)]


def test_every_repository_file_the_pages_name_exists():
    """`cxr14/...`, `tests/...`, `rules/...` and the like name a file or folder of the repository
    (a pattern with <name>, {wildcard} or * is left out; `module.py:NAME` names NAME in that file)."""
    missing = []
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", page.read_text()):
            path, _, name = span.replace("::", ":").partition(":")
            if not re.fullmatch(r"(cxr14|tests|rules|scripts|bench|config|envs|profiles|docs|report)/[\w./-]*", path):
                continue
            if not (REPO / path).exists():
                missing.append(f"{page.name}: {span}")
            elif name and not re.search(rf"^(def )?{re.escape(name)}\b", (REPO / path).read_text(), re.M):
                missing.append(f"{page.name}: {span} (no {name} there)")
    assert not missing, missing


def _rule_names(stage: str) -> list[str]:
    return re.findall(r"^\s*(?:rule|checkpoint) (\w+):", (REPO / "rules" / f"{stage}.smk").read_text(), re.M)


def test_the_stage_table_is_the_rule_files():
    """docs/architecture.md's table of stages: one row per rule file, with exactly its rules, each (but
    the shell rule `app`) a script that calls the function of its name in cxr14/steps/."""
    rows = _table(ARCHITECTURE.read_text(), "| stage (`rules/`)")
    stages = {_names(row[0])[0]: _names(row[1]) for row in rows}
    files = {p.stem for p in (REPO / "rules").glob("*.smk")} - {"common"}
    assert set(stages) == files, "a rule file without a row, or a row without its file"
    for stage, names in stages.items():
        assert sorted(names) == sorted(_rule_names(stage)), stage
        for name in names:
            if name == "app":
                continue
            script = (REPO / "scripts" / f"{name}.py").read_text()
            assert re.search(rf"^from cxr14\.steps\.\w+ import {name}$", script, re.M), name


def test_the_layer_table_is_the_import_contract():
    """docs/architecture.md's layers are pyproject.toml's import-linter layers, in order, module by module."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [layers] = [c["layers"] for c in contracts if c.get("containers") == ["cxr14"]]
    declared = [sorted(re.split(r"\s*[|:]\s*", layer.strip())) for layer in layers]
    rows = _table(ARCHITECTURE.read_text(), "| layer | modules |")
    documented = [sorted(_names(re.sub(r"\(.*?\)", "", row[1]))) for row in rows]  # (a package's modules aside)
    assert documented == declared


@pytest.fixture(scope="module")
def rule_graph() -> dict[str, set[str]]:
    """The demo workflow's rule graph (Snakemake's --rulegraph): rule -> the rules that take its outputs."""
    graph = reruns.rule_graph()
    assert "shard_manifest" in graph["plan_shards"] and graph["shard"] == {"shard_manifest"}
    return graph


def _stage_rules(name: str) -> set[str]:
    """A flowchart box's rules: a rule's name, or a stage's (download: its rules)."""
    every = {rule for stage in (REPO / "rules").glob("*.smk") for rule in _rule_names(stage.stem)}
    return {name} if name in every else set(_rule_names(name))


def test_the_readmes_flowchart_draws_the_workflow(rule_graph):
    """Every box is a step (or a stage), every step but the demo's and the app a box, and every arrow a
    real dependency: the rule at its tip takes a file the rule at its tail makes."""
    chart = re.search(r"```mermaid\n(.*?)```", (REPO / "README.md").read_text(), re.S)[1]
    edges = re.findall(r"(\w+)(?:\[[^\]]*\])?\s*(?:--\s*\"[^\"]*\"\s*)?-->\s*(?=(\w+))", chart)
    boxes = {name for edge in edges for name in edge}
    drawn = set().union(*(_stage_rules(box) for box in boxes))
    assert drawn <= set(rule_graph), drawn - set(rule_graph)
    assert set(rule_graph) - drawn == {"all", "demo_mirror", "demo_site"}
    for tail, tip in edges:
        assert any(b in rule_graph[a] for a in _stage_rules(tail) for b in _stage_rules(tip)), f"{tail} --> {tip}"


RERUNS = re.compile(r"[Aa] change to `cxr14/([\w/]+)\.py` reruns (nothing|(?:`\w+`(?:, | and )?)+)")


def test_what_a_change_to_the_package_reruns_is_what_the_pages_say(rule_graph):
    """Each "a change to `cxr14/<module>.py` reruns `a`, `b` and `c`" of the pages: the steps whose code
    fingerprint covers the module (their step module imports it, transitively) and every step after
    them, no other."""
    said = [(page.name, *m) for page in PAGES for m in RERUNS.findall(" ".join(page.read_text().split()))]
    assert {module for _, module, _ in said} >= {"metrics", "app", "assess"}
    table = reruns.reruns(rule_graph)
    for page, module, listed in said:
        expected = table["cxr14." + module.replace("/", ".")][1]
        assert set(re.findall(r"`(\w+)`", listed)) == expected, (page, module)


def test_the_rerun_table_is_made_from_the_code_as_it_is(rule_graph):
    """docs/rerunning.md's table of what a change to each module reruns is what `python -m
    cxr14.workflow.reruns` makes of the code now; and it says what the issue asks of it."""
    page = reruns.PAGE.read_text()
    assert reruns.updated(page, rule_graph) == page, "run: python -m cxr14.workflow.reruns"
    table = reruns.reruns(rule_graph)
    assert table["cxr14.paths"] == (set(), set())
    assert not table["cxr14.calibration"][1] & {"plan_shards", "shard", "shard_manifest", "train", "convert", "score"}
    for module in ("calibration", "prediction_table", "paths", "report", "workflow.runs", "workflow.collections"):
        for step in ("train", "plan_shards", "shard", "shard_manifest"):
            assert step not in table[f"cxr14.{module}"][0], (module, step)
    assert "score" not in table["cxr14.gradcam"][0] and "score" not in table["cxr14.ood"][0]


def test_a_formats_reader_takes_what_ingest_passes():
    """The format recipe: `read(labels, settings, **given)`, called as `ingest` calls it."""
    from cxr14 import formats
    from cxr14.steps import ingest

    call = re.search(r"READERS\[settings\.format\]\((.*?)\)", inspect.getsource(ingest), re.S)[1]
    keywords = re.findall(r"(\w+)=", call)
    assert set(keywords) == {"metadata", "split_file", "patients", "settings", "root"}
    for name, module in formats.FORMATS.items():
        inspect.signature(module.read).bind([], **dict.fromkeys(keywords))  # TypeError names what is missing
        assert isinstance(module.LABELS, dict) and isinstance(module.SCHEMA, dict), name


def _prose(text: str) -> str:
    """Words a reader reads: no code blocks or spans, HTML tags, Jinja expressions or link targets."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`|\{\{.*?\}\}|\{%.*?%\}|<[^>\n]+>|\]\([^)]*\)", "", text)


def test_the_pages_and_templates_use_the_glossarys_words():
    """A word of the glossary's last column (`not`) is nowhere in the prose of the README, docs/ or the
    templates (the glossary itself aside)."""
    glossary = _section(ARCHITECTURE.read_text(), "Glossary")
    avoided = [w.strip() for row in _table(glossary, "| word |") for w in row[2].split(",") if w.strip()]
    assert "dataset" in avoided
    found = []
    for path in [*PAGES, *TEMPLATES]:
        text = path.read_text()
        if path == ARCHITECTURE:
            text = text.replace(glossary, "")
        for word in avoided:
            found += [f"{path.name}: {word}" for _ in re.finditer(rf"(?i)\b{re.escape(word)}s?\b", _prose(text))]
    assert not found, found


def test_the_demos_fine_tune_is_what_the_page_says():
    """external-validation.md's last sentence names the demo's fine-tune settings: config/demo.yaml's."""
    text = " ".join((REPO / "docs/external-validation.md").read_text().split())
    said = re.search(r"The demo fine-tunes `(\w+)` .*?\(`(\w+)`: `init: (\w+), data: (\w+)`, learning rate ([\d.]+), "
                     r"(\d+) epochs, the first head-only\)", text)  # fmt: skip
    assert said, "the sentence on the demo's fine-tune changed: update this test"
    start, name, init, data, rate, epochs = said.groups()
    train = yaml.safe_load((REPO / "config/demo.yaml").read_text())["runs"][name]["train"]
    assert (start, init, data) == (train["init"],) * 2 + (train["data"],)
    assert (float(rate), int(epochs), train["freeze_epochs"]) == (train["learning_rate"], train["epochs"], 1)


def test_the_paths_the_stage_table_writes_are_pathss():
    """Every results/ path of the stage table's `writes` column is a pattern of cxr14/paths.py (with
    <name> or NN for a wildcard), or the folder of one."""
    from cxr14 import paths

    patterns = [v for v in vars(paths).values() if isinstance(v, str) and v.startswith("results/")]
    folders = {"/".join(p.split("/")[:k]) for p in patterns for k in range(2, p.count("/") + 2)}
    known = [re.compile(re.escape(re.sub(r"\{\w+\}", "<>", p)).replace("<>", "[^/]+")) for p in folders]
    for row in _table(ARCHITECTURE.read_text(), "| stage (`rules/`)"):
        for written in _names(row[2]):
            if not written.startswith("results/") or written.startswith("results/demo/"):  # (the demo's own)
                continue
            plain = re.sub(r"<\w+>|NN+", "X", written).rstrip("/")  # <name>, NN: a wildcard's value
            assert any(p.fullmatch(plain) for p in known), written


def test_the_monitor_defaults_the_page_gives_are_the_schemas():
    """monitoring.md's settings paragraph, "`key` (default)", key by key: the schema's defaults."""
    from cxr14.settings import defaults

    text = " ".join((REPO / "docs/monitoring.md").read_text().split())
    paragraph = re.search(r"Settings \(`monitor:` in the config; defaults in the schema\): (.*?)\.(?: |$)", text)[1]
    said = {key: float(value) for key, value in re.findall(r"`(\w+)` \((?:[^()]*?, )?([\d.]+)\)", paragraph)}
    assert said == {key: float(value) for key, value in defaults("monitor").items()}


def test_the_conda_environments_the_cluster_page_lists_are_the_rules():
    """cluster.md lists the environments of envs/, each one a rule uses."""
    text = " ".join((REPO / "docs/cluster.md").read_text().split())
    listed = _names(re.search(r"`envs/` \((.*?): each only", text)[1])
    used = set(re.findall(r"\"\.\./envs/(\w+)\.yaml\"", "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))))
    assert sorted(listed) == sorted(p.stem for p in (REPO / "envs").glob("*.yaml")) == sorted(used)


def test_each_steps_import_contract_bans_exactly_what_it_does_not_use():
    """pyproject.toml's per-step `forbidden` contracts are what `python -m cxr14.workflow.reruns
    --contracts` makes of the code: lint-imports fails on an import that widens a step's closure, and
    this on a contract left looser than the step's code (a closure that narrowed)."""
    declared = [c for c in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
                if c["type"] == "forbidden"]  # fmt: skip
    made = tomllib.loads(reruns.contracts())["tool"]["importlinter"]["contracts"]
    assert declared == made, "regenerate: python -m cxr14.workflow.reruns --contracts"
    assert {c["source_modules"][0].rsplit(".", 1)[1] for c in made} == {
        p.stem for p in (REPO / "cxr14/steps").glob("[!_]*.py")
    }
