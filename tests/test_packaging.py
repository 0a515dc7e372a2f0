"""The project's setup files agree with each other."""

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli is what became tomllib
    import tomli as tomllib


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def _environment_dependencies() -> set[str]:
    # environment.yml is simple enough to read without a YAML parser (not a dependency).
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        match = re.match(r"^  - ([A-Za-z0-9_.-]+)", line)
        if match:
            names.add(match.group(1).lower())
    return names


def test_environment_yml_names_the_same_runtime_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {_name(r) for r in pyproject["project"]["dependencies"]}
    conda = _environment_dependencies()
    # conda-only entries: the interpreter, pip itself and the C library scapy uses for BPF.
    conda_only = {"python", "pip", "libpcap"}
    assert runtime == conda - conda_only, (
        f"only in pyproject: {sorted(runtime - conda)}; "
        f"only in environment.yml: {sorted(conda - conda_only - runtime)}"
    )
    assert conda_only <= conda


def test_environment_yml_installs_labchat_itself_in_editable_mode():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_python_requirement_is_3_10_or_newer():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.10"


def _packages_in_tree() -> list[str]:
    """Every package under labchat/ (a directory with an __init__.py), dotted."""
    return sorted(
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "labchat").rglob("__init__.py")
    )


def test_wheel_carries_every_subpackage_and_an_install_imports_them(tmp_path):
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "demo")
    for name in ("labchat", "notebooks", "captures"):  # the wheel carries notebooks, captures
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    # No build isolation: the venv's own setuptools builds it, so no package index is needed.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("labchat-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {n for n in zf.namelist() if n.endswith(".py")}
    in_tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "labchat").rglob("*.py")}
    assert in_tree <= in_wheel, f"missing from the wheel: {sorted(in_tree - in_wheel)}"

    packages = _packages_in_tree()
    assert {"labchat", "labchat.capture"} <= set(packages)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    # From a directory outside the clone, with the installed copy first on the path.
    code = (
        "import importlib, sys; "
        "mods = [importlib.import_module(n) for n in sys.argv[1:]]; "
        "print('\\n'.join(m.__file__ for m in mods))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *packages],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = proc.stdout.split()
    assert len(files) == len(packages)
    assert all(Path(f).is_relative_to(site) for f in files), files
