"""Style is checked like behaviour: the rules by Snakemake's linter and snakefmt, the Python by ruff
(its settings are in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def _check(*cmd):
    proc = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, cwd=REPO)
    return proc.returncode, proc.stdout + proc.stderr


def test_snakemake_lint():
    code, said = _check("snakemake", "--lint", "--configfile", "config/demo.yaml")
    assert code == 0 and "good condition" in said, said


def test_snakefmt():
    code, said = _check("snakefmt", "--check", "Snakefile", "rules/")
    assert code == 0, said


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["ruff", "format", "--check", "."]], ids=" ".join)
def test_ruff(command):
    code, said = _check(*command)
    assert code == 0, said


def test_the_package_keeps_its_layers():
    """The layer contracts in pyproject.toml ([tool.importlinter]), checked on the import graph."""
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "0 broken" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
