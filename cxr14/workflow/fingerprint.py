"""A step's code fingerprint: which package code its function runs, as one short hash.

Snakemake reruns a script rule when the script changes, but a step's script is a few lines that call
the package: a fix in `cxr14/metrics.py` would leave every report with the old numbers. Each rule
therefore declares the fingerprint of its step's module as a param (`code`), so that a change to
that module, or to any cxr14 module it imports (at the top or inside a function, transitively),
reruns the step and what follows. The hash is taken over the syntax tree without docstrings, so a
change to comments, docstrings or formatting alone reruns nothing.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
NAME = PACKAGE.name


def _path(module: str) -> Path | None:
    """The source file of a cxr14 module (`cxr14.metrics`), None for what is not one."""
    parts = module.split(".")
    if parts[0] != NAME or len(parts) < 2:
        return None
    path = PACKAGE.joinpath(*parts[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, module: str) -> set[str]:
    """The cxr14 modules the code of `module` imports, wherever in it."""
    package = module if _path(module).name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y, from . import y, from ..x import y
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            found.add(base)  # from .x import y: x; from . import y, from .x import y: y may be a module too
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if _path(m)}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _parsed(module: str) -> tuple[str, frozenset[str]]:
    """(the module's code as a canonical dump, the cxr14 modules it imports)."""
    tree = ast.parse(_path(module).read_text())
    return ast.dump(_strip_docstrings(tree)), frozenset(_imports(tree, module) - {module})


def modules(module: str) -> list[str]:
    """`module` and every cxr14 module it imports, transitively, sorted."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _parsed(name)[1]
    return sorted(seen)


def fingerprint(module: str) -> str:
    """16 hex digits of sha256 over the code of `module` and the cxr14 modules it imports."""
    if _path(module) is None:
        raise ValueError(f"{module} is not a module of the {NAME} package")
    digest = hashlib.sha256()
    for name in modules(module):
        digest.update(f"{name}\n{_parsed(name)[0]}\n".encode())
    return digest.hexdigest()[:16]
