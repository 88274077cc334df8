"""The import contract of the package, checked over its source (no import is run): each module
imports only modules of its own layer or of the layers below, no import cycle exists, and an
import inside a function (to keep the command line's start-up fast) says so with a `deferred`
comment. Pure functions of a source tree, so a test can show the check failing on a bad tree."""

from __future__ import annotations

import ast
from pathlib import Path

BASE = ("errors", "validation", "atomic", "config_yaml", "checkpoints", "ffmpeg", "progress", "codes")
LAYERS: tuple[tuple[str, ...], ...] = (
    BASE, ("data",), ("fields",), ("models",), ("clip",), ("eval",), ("editing",), ("pipelines",), ("app",), ("cli",),
)
"""clipnerf_ns's layers, bottom first: a module or sub-package name of the package in each."""


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package whose folder is `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = (package, *path.relative_to(root).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module of the package, line, inside a function) for every import in a module."""
    tree = ast.parse(path.read_text())
    package_parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    local = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `from pkg.mod import name` names pkg.mod
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno, id(node) in local))
    return found


def layer_of(name: str, package: str, layers) -> int:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for index, members in enumerate(layers):
        if top in members:
            return index
    raise LookupError(f"{name} is in no layer: add it to the contract")


def violations(root: Path, package: str, layers=LAYERS) -> list[str]:
    """Every breach of the contract in the package at `root`, one line each (empty: it holds)."""
    modules = module_names(root, package)
    problems, graph = [], {}
    for name, path in modules.items():
        if name == package:
            continue
        lines = path.read_text().splitlines()
        graph[name] = set()
        for target, line, in_function in imports_of(path, name, modules):
            if target == package:
                continue
            graph[name].add(target)
            if layer_of(target, package, layers) > layer_of(name, package, layers):
                problems.append(f"{path}:{line}: {name} imports {target}, a layer above it")
            if in_function and not _says_deferred(lines, line):
                problems.append(f"{path}:{line}: {name} imports {target} inside a function without a `deferred` comment")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def _says_deferred(lines: list[str], line: int) -> bool:
    """Whether the import at `line` (1-based), or the comment lines just above its block of imports, say `deferred`."""
    index = line - 1
    if "deferred" in lines[index]:
        return True
    while index > 0:
        index -= 1
        text = lines[index].strip()
        if "# deferred" in text:
            return True
        if not (text.startswith(("import ", "from ", "#")) or text == ""):
            return False
    return False


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group) + [sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups
