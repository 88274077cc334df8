"""The package's structure holds by itself: the import contract (tests/import_contract.py), small
modules and functions, and a package map in the README that is the tree."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

from tests.import_contract import violations

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clipnerf_ns"


def test_the_package_keeps_its_import_contract():
    assert violations(PACKAGE, "clipnerf_ns") == []


def test_the_contract_check_catches_wrong_imports(tmp_path):
    """The same check on a copy of the package with three mistakes in it: a layer importing one
    above it, a function-local import that does not say why, and a cycle inside a layer."""
    copy = tmp_path / "clipnerf_ns"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.safetensors", "*.png", "__pycache__"))
    with open(copy / "fields" / "conditional_field.py", "a") as f:
        f.write("\nfrom clipnerf_ns.models.adversarial import PatchDiscriminator\n")
    with open(copy / "editing" / "losses.py", "a") as f:
        f.write("\n\ndef late():\n    from clipnerf_ns.editing.mappers import Mappers\n    return Mappers\n")
    (copy / "fields" / "a.py").write_text("from clipnerf_ns.fields import b\n")
    (copy / "fields" / "b.py").write_text("from clipnerf_ns.fields.a import x\n")
    found = sorted(violations(copy, "clipnerf_ns"))
    assert len(found) == 3, found
    assert found[0].startswith(str(copy / "editing" / "losses.py"))
    assert found[0].endswith("clipnerf_ns.editing.losses imports clipnerf_ns.editing.mappers inside a function "
                             "without a `deferred` comment")
    assert found[1].startswith(str(copy / "fields" / "conditional_field.py"))
    assert found[1].endswith("clipnerf_ns.fields.conditional_field imports clipnerf_ns.models.adversarial, a layer above it")
    assert found[2] == "import cycle: clipnerf_ns.fields.a -> clipnerf_ns.fields.b -> clipnerf_ns.fields.a"


def test_modules_and_functions_stay_small():
    """No module of the package over 500 lines, no function over 60."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 500:
            long_modules.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long_modules == [] and long_functions == []


def package_map() -> tuple[set[str], set[str]]:
    """(modules, folders) the README's package map lists under clipnerf_ns/, as paths in the package."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Package map") :].split("```")[1]
    modules, folders, parents = set(), set(), []
    for line in block.splitlines():
        entry = re.match(r"^( *)([\w.]+(?:\.py|/))(?:\s|$)", line)
        if entry is None or len(entry.group(1)) > 8:  # a description's second line
            continue
        depth, name = len(entry.group(1)) // 2, entry.group(2)
        if depth == 0:
            if name != "clipnerf_ns/":
                break
            continue
        parents = parents[: depth - 1]
        path = "/".join([*parents, name.rstrip("/")])
        if name.endswith("/"):
            folders.add(path)
            parents.append(name.rstrip("/"))
        else:
            modules.add(path)
    return modules, folders


def test_the_readme_package_map_is_the_tree():
    modules, folders = package_map()
    tree_modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    packages = {str(p.parent.relative_to(PACKAGE)) for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert modules == tree_modules - {p + "/__init__.py" for p in packages}
    assert packages <= folders and all((PACKAGE / folder).is_dir() for folder in folders)


def test_the_command_line_starts_without_torch_or_nerfstudio():
    """What the `deferred` imports are for: `clipnerf --help` and its one-line errors come before
    torch, nerfstudio and open_clip are imported (seconds each)."""
    import subprocess
    import sys

    probe = "import sys, clipnerf_ns.cli; print(sorted(m for m in ('torch', 'nerfstudio', 'open_clip') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
