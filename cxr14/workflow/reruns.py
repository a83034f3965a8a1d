"""The table "a change to module X reruns steps Y" of docs/rerunning.md, made from the code: each
step's code fingerprint covers its module in `cxr14.steps` and every cxr14 module that imports,
transitively (`fingerprint.modules`), and Snakemake reruns what follows a rerun step (the rule graph).

`python -m cxr14.workflow.reruns` rewrites the table in docs/rerunning.md; `--check` only says whether
it is current (tests/test_docs.py runs that); `--contracts` prints, as import-linter contracts for
pyproject.toml, each step's ban on every module outside its code today.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .fingerprint import NAME, PACKAGE, modules

REPO = PACKAGE.parent
PAGE = REPO / "docs" / "rerunning.md"
BEGIN, END = "<!-- reruns: begin (python -m cxr14.workflow.reruns) -->", "<!-- reruns: end -->"


def rule_graph(config=REPO / "config" / "demo.yaml") -> dict[str, set[str]]:
    """rule -> the rules that take its outputs, from Snakemake's --rulegraph of `config` (the demo's has
    every kind of job). The shard jobs appear once the plan_shards checkpoint has run; before, Snakemake
    draws plan_shards -> shard_manifest, so shard is put between them here."""
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-m", "snakemake", "-s", REPO / "Snakefile", "-d", workdir]
        command += ["--configfile", config, "--cores", "1", "--rulegraph"]
        proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=REPO, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"snakemake --rulegraph failed:\n{proc.stderr[-3000:]}")
    label = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", proc.stdout, re.M))
    graph = {name: set() for name in label.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, re.M):
        graph[label[a]].add(label[b])
    if "shard" not in graph:
        graph["plan_shards"].add("shard")
        graph["shard"] = {"shard_manifest"}
    return graph


def step_module(rule: str) -> str | None:
    """The cxr14.steps module whose function a rule's script calls (None for a shell rule)."""
    script = REPO / "scripts" / f"{rule}.py"
    if not script.exists():
        return None
    found = [n.module for n in ast.parse(script.read_text()).body if isinstance(n, ast.ImportFrom)]
    return next(m for m in found if m.startswith(f"{NAME}.steps."))


def after(graph: dict[str, set[str]], rules: set[str]) -> set[str]:
    """`rules` and every rule that takes, directly or not, what they make (but `all`)."""
    seen, todo = set(), list(rules)
    while todo:
        rule = todo.pop()
        if rule not in seen:
            seen.add(rule)
            todo += graph[rule]
    return seen - {"all"}


def package_modules() -> dict[str, Path]:
    """Every module of the package by name (cxr14.metrics, cxr14.formats, ...), in name order: its
    source file, relative to the repository."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path.relative_to(REPO)
    return dict(sorted(found.items()))


def reruns(graph: dict[str, set[str]]) -> dict[str, tuple[set[str], set[str]]]:
    """module -> (the steps whose code it is, those and every step after them)."""
    code = {rule: set(modules(m)) for rule in graph if (m := step_module(rule))}
    out = {}
    for module in package_modules():
        direct = {rule for rule, covered in code.items() if module in covered}
        out[module] = (direct, after(graph, direct))
    return out


def _order() -> list[str]:
    """The rules in the order the Snakefile includes their files, and each file defines them."""
    stages = re.findall(r'^include: "rules/(\w+)\.smk"', (REPO / "Snakefile").read_text(), re.M)
    text = "".join((REPO / "rules" / f"{stage}.smk").read_text() for stage in stages)
    return re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.M)


def table(graph: dict[str, set[str]]) -> str:
    """The markdown table of `reruns`, one row per module, in the package's order."""
    order = _order()
    rows = ["| a change to | is the code of | and so also reruns |", "|---|---|---|"]
    paths = package_modules()
    for module, (direct, rerun) in reruns(graph).items():
        rerun = rerun - direct
        path = paths[module].as_posix()
        steps = ", ".join(f"`{r}`" for r in order if r in direct) or "no step"
        everything = ", ".join(f"`{r}`" for r in order if r in rerun) or ("nothing" if not direct else "no other step")
        rows.append(f"| `{path}` | {steps} | {everything} |")
    return "\n".join(rows) + "\n"


def updated(page_text: str, graph: dict[str, set[str]]) -> str:
    """The page with the table between its markers made anew."""
    start, end = page_text.index(BEGIN) + len(BEGIN), page_text.index(END)
    return page_text[:start] + "\n" + table(graph) + page_text[end:]


def contracts() -> str:
    """A `forbidden` import-linter contract per step: every module (a subpackage as one) it does not
    import today, so a new import that would widen what reruns it fails `lint-imports`."""
    units = sorted(
        {".".join(m.split(".")[:2]) for m in package_modules() if m != NAME and not m.startswith(f"{NAME}.steps")}
    )
    out = []
    for path in sorted((PACKAGE / "steps").glob("[!_]*.py")):
        closure = set(modules(f"{NAME}.steps.{path.stem}"))
        banned = [u for u in units if not any(m == u or m.startswith(f"{u}.") for m in closure)]
        out += [
            "",
            "[[tool.importlinter.contracts]]",
            f'name = "Step {path.stem} imports only what can change its outputs"',
            'type = "forbidden"',
            f'source_modules = ["{NAME}.steps.{path.stem}"]',
            "forbidden_modules = [",
        ]
        line = "   "
        for unit in banned:
            if len(line) + len(unit) + 4 > 116:
                out.append(line)
                line = "   "
            line += f' "{unit}",'
        out += [line, "]"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--contracts" in argv:
        print(contracts(), end="")
        return 0
    text = PAGE.read_text()
    new = updated(text, rule_graph())
    if "--check" in argv:
        if new != text:
            print(f"{PAGE} is not current: run python -m cxr14.workflow.reruns", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
