"""Every command the README prints, run the way a user types it in a shell: Snakemake commands as
dry runs (`-n` added), `cxr14` commands through the CLI's own parser (test_serve runs them for real)."""

import re
import shlex
import subprocess

import pytest

from conftest import REPO

COMMAND = re.compile(r"^(\./run\.sh|\.venv/bin/snakemake|\.venv/bin/cxr14)\b")


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if COMMAND.match(line):
                found.append(line)
    found += [c for c in re.findall(r"`([^`\n]+)`", text) if COMMAND.match(c)]
    return list(dict.fromkeys(found))


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_this_test_expects():
    assert "./run.sh demo" in COMMANDS and "./run.sh test" in COMMANDS
    assert ".venv/bin/snakemake --config archives=[1]" in COMMANDS


@pytest.mark.parametrize("command", [c for c in COMMANDS if "snakemake" in c or c.startswith("./run.sh demo")])
def test_snakemake_commands_plan_without_error(command):
    proc = subprocess.run(f"{command} -n", shell=True, cwd=REPO, capture_output=True, text=True, timeout=300)
    said = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    expected = ["Unlocked working directory"] if "--unlock" in command else ["Job stats", "Nothing to be done"]
    assert any(word in said for word in expected), said[-3000:]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith(".venv/bin/cxr14")])
def test_cxr14_commands_parse(command):
    if command.endswith("--help"):
        proc = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "not medical advice" in " ".join(proc.stdout.split()), proc.stderr
        return
    from cxr14.cli import parser

    args = parser().parse_args(shlex.split(command)[1:])
    assert args.command in ("predict", "app", "verify")
