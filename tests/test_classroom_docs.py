"""docs/classroom.md says what the code does: time table, objectives and the Hub configuration."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

from labchat import resources
from labchat.classroom.hub import hub_config

DOC = (Path(__file__).resolve().parent.parent / "docs" / "classroom.md").read_text()


def test_the_time_table_and_objectives_are_the_notebooks_own():
    for path in resources.notebooks():
        meta = nbformat.read(path, as_version=4).metadata["labchat"]
        row = next(line for line in DOC.splitlines() if line.startswith(f"| `{path.stem}` |"))
        assert row.split("|")[2].strip() == str(meta["minutes"]), path.name
        for objective in meta["objectives"]:
            numbers = ", ".join(str(e) for e in objective["exercises"])
            assert f"{objective['objective']} ({numbers})" in row, (path.name, objective)


def test_the_hub_configuration_shown_is_what_hub_config_writes():
    config = hub_config(
        labchat="/opt/labchat/bin/labchat",
        students=["ana", "ben", "chloe"],
        admins=["teacher"],
    )
    shown = DOC.split("The configuration it writes", 1)[1].split("```python", 1)[1]
    statements = ast.parse(shown.split("```", 1)[0]).body
    assert len(statements) >= 6, "docs/classroom.md shows the configuration"
    written = {ast.dump(node) for node in ast.parse(config).body}
    for node in statements:  # the same Python, however it is formatted
        assert ast.dump(node) in written, ast.unparse(node)


def test_no_unsafe_advice_is_left():
    assert 'setcap cap_net_raw+eip "$(readlink -f .venv/bin/python)"' not in DOC
    assert "run JupyterLab as root" not in DOC
    plain = DOC.split("### What plaintext exposes", 1)[1].split("###", 1)[0]
    assert "labchat serve --plain" in plain and "--users /tmp/plain-users.json" in plain
