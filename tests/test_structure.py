"""The package's shape: imports point one way, public APIs declared, no module reaching into
another's private names (docs/architecture.md draws the layers checked here).

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


#: docs/architecture.md's layers, bottom up: a module imports only from its own layer or below.
#: Modules not listed (new ones) are not checked until they are placed here.
LAYERS = {
    # the chat itself, flat (its own order: protocol <- auth <- server, tls <- client)
    "labchat": 0,
    "labchat.protocol": 0,
    "labchat.auth": 0,
    "labchat.certs": 0,
    "labchat.tls": 0,
    "labchat.server": 0,
    "labchat.client": 0,
    "labchat.resources": 0,  # where the notebooks and reference captures are
    "labchat.chatui": 0,  # the terminal client over `client`
    "labchat.accounts": 0,
    "labchat.diagnose": 0,  # the facts behind a connection or certificate error
    "labchat.capture": 1,  # runs the chat, gets packets
    "labchat.analysis": 2,  # packets -> facts
    "labchat.trust": 2,  # certificates -> facts (why a client trusts a chain)
    "labchat.plots": 3,  # facts -> figures
    "labchat.lab": 4,  # one call per notebook cell
    "labchat.demo": 4,
    "labchat.doctor": 4,  # the pre-flight check: over capture, certs, auth
    "labchat.classroom": 4,  # the teacher's kit: editions, checks, worksheets, the hub
    "labchat.docsimg": 4,  # the README's pictures: capture -> analysis -> plots
    "labchat.cli": 5,  # thin shells
    "labchat.__main__": 5,
}


def _unit(module: str) -> str:
    """The layer unit of a module: ``labchat.capture.modes`` -> ``labchat.capture``."""
    return ".".join(module.split(".")[:2])


def _is_type_checking_or_main(node: ast.If) -> bool:
    test = node.test
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in test.comparators)
    )


def _runtime_imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every labchat import that runs on import or call: not the ones under
    ``if TYPE_CHECKING:`` (annotations only) or ``if __name__ == "__main__":`` (an entry point).
    """
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking_or_main(node):
            return
        if isinstance(node, ast.ImportFrom):
            source = _imported_from(path, node)
            if source.startswith("labchat"):
                subs = [f"{source}.{a.name}" for a in node.names] if not node.module else []
                found.extend((node.lineno, m) for m in subs or [source])
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("labchat"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text() if text is None else text, str(path)))
    return found


def _upward(path: Path, text: str | None = None) -> list[str]:
    here = _unit(_module_name(path))
    if here not in LAYERS:
        return []
    found = []
    for line, module in _runtime_imports(path, text):
        there = _unit(module)
        if there in LAYERS and LAYERS[there] > LAYERS[here]:
            found.append(f"{_rel(path)}:{line}: {here} (layer {LAYERS[here]}) imports "
                         f"{there} (layer {LAYERS[there]})")  # fmt: skip
    return found


def test_imports_point_one_way() -> None:
    assert [hit for path in MODULES for hit in _upward(path)] == []


def test_the_layer_check_sees_an_upward_import() -> None:
    fake = ROOT / "labchat" / "capture" / "example.py"  # never written: parsed from a string
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..lab import RoomStats\n"  # annotations only: allowed
        "from .. import plots\n"  # capture (1) importing plots (3): upward
        "from .modes import detect_mode\n"  # its own layer
        "def f():\n    from labchat.analysis import load\n"  # upward, even inside a function
        "if __name__ == '__main__':\n    from labchat.cli import main\n"  # an entry point
    )
    assert _upward(fake, code) == [
        "labchat/capture/example.py:4: labchat.capture (layer 1) imports labchat.plots (layer 3)",
        "labchat/capture/example.py:7: labchat.capture (layer 1) imports labchat.analysis"
        " (layer 2)",
    ]
