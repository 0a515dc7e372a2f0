"""The project's setup files agree with each other."""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli is what became tomllib
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


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
