"""The package's shape: public APIs declared, no module reaching into another's private names.

ruff's SLF001 (on in pyproject.toml) catches ``module._name`` and ``obj._name``; its
import-private-name rule (PLC2701) is preview-only in the pinned ruff and ignores imports
inside one package, so ``from .x import _name`` between labchat's modules is checked here.
Files pyproject.toml exempts from SLF001 for now (being rewritten elsewhere) are exempt here too.
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

import pytest
from helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli is what became tomllib
    import tomli as tomllib

MODULES = sorted((ROOT / "labchat").rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _exempt() -> list[str]:
    """The per-file-ignores globs that switch SLF001 off for package files."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    ignores = lint.get("per-file-ignores", {})
    return [glob for glob, rules in ignores.items() if "SLF001" in rules and glob != "tests/**"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_from(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``from X import ...`` in ``path`` names."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _private_imports(path: Path) -> list[str]:
    here = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _imported_from(path, node)
        if not source.startswith("labchat") or source == here:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{_rel(path)}:{node.lineno}: {alias.name} from {source}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    exempt = _exempt()
    checked = [p for p in MODULES if not any(fnmatch.fnmatch(_rel(p), g) for g in exempt)]
    assert len(checked) > 20  # the check really looked at the package
    assert [hit for path in checked for hit in _private_imports(path)] == []


def test_the_private_import_check_sees_relative_and_absolute_imports() -> None:
    fake = ROOT / "labchat" / "capture" / "example.py"  # never written: parsed from a string
    tree = "from .modes import _CHECKS\nfrom labchat.lab.tcpstate import _hex_addr, TCP_STATES\n"
    nodes = [n for n in ast.parse(tree).body if isinstance(n, ast.ImportFrom)]
    assert [_imported_from(fake, n) for n in nodes] == [
        "labchat.capture.modes",
        "labchat.lab.tcpstate",
    ]
    init = ROOT / "labchat" / "lab" / "__init__.py"
    (node,) = ast.parse("from ..plots import broadcast_latency").body
    assert _imported_from(init, node) == "labchat.plots"


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            for target in node.targets:  # NAME = ... and A, B = ...
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return None


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__main__.py"], ids=_rel)
def test_every_module_declares_its_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    declared = _declared_all(tree)
    assert declared is not None, f"{_rel(path)} has no __all__"
    missing = sorted(set(declared) - _top_level_names(tree))
    assert missing == [], f"{_rel(path)}: __all__ names what it does not define: {missing}"
    assert not [n for n in declared if n.startswith("_")], "__all__ lists a private name"
