"""`labchat ... --help` and the README's command table (issue 12, item 9).

Every option of every subcommand has help text, defaults are shown, each subcommand has
examples that the parser accepts, and the README's table names every option.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest
from helpers import ROOT

from labchat.cli import build_parser

README = ROOT / "README.md"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


SUBCOMMANDS = sorted(subcommands())


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_option_has_help(name: str) -> None:
    undocumented = [
        a.option_strings or a.dest for a in options(subcommands()[name]) if not (a.help or "")
    ]
    assert not undocumented, f"labchat {name}: no help for {undocumented}"


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_examples_the_parser_accepts(name: str) -> None:
    parser = subcommands()[name]
    epilog = parser.epilog or ""
    assert epilog.startswith("examples:"), f"labchat {name} --help has no examples"
    commands = [
        line.strip()
        for line in epilog.splitlines()[1:]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert commands
    for command in commands:
        command = command.split("  #")[0]
        words = shlex.split(command.split("|")[-1])  # `printf ... | labchat chat ...`
        assert words[:2] == ["labchat", name], command
        build_parser().parse_args(words[1:])  # raises UsageError if the example is stale
    assert name in parser.format_help().split("examples:")[1]


def test_help_shows_defaults_and_units() -> None:
    serve = subcommands()["serve"].format_help()
    assert re.search(r"--port PORT\s+port to listen on; 0 picks one \(default: 5050\)", serve)
    assert re.search(r"--idle-timeout SECONDS\s+quiet time before the server sends PING"
                     r"\s+\(default: 300\)", serve)  # fmt: skip
    assert "--outbox-bytes BYTES" in serve and "--flood-rate LINES/S" in serve
    chat = subcommands()["chat"].format_help()
    assert re.search(r"--host HOST\s+server name or address \(default: 127\.0\.0\.1\)", chat)
    assert re.search(r"--ca FILE\s+.*\n?.*\(default: certs/ca\.pem\)", chat)
    assert "default: None" not in chat + serve and "default: False" not in chat + serve
    init = subcommands()["init"].format_help()
    assert re.search(r"--certs DIR\s+directory for certificates and users \(default: certs\)", init)


def readme_rows() -> dict[str, str]:
    """README command table: subcommand -> the text of every row that shows it."""
    rows: dict[str, str] = {}
    section = README.read_text().split("## The command line", 1)[1].split("\n## ", 1)[0]
    for row in section.splitlines():
        if not row.startswith("| "):
            continue
        cell = row.split(" | ")[0]
        for name in re.findall(r"labchat ([\w-]+)", cell):
            rows[name] = rows.get(name, "") + cell
    return rows


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_readme_command_table_names_every_option(name: str) -> None:
    rows = readme_rows()
    assert name in rows, f"the README's command table has no row for labchat {name}"
    missing = []
    for action in options(subcommands()[name]):
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and not any(re.search(re.escape(o) + r"\b", rows[name]) for o in longs):
            missing.append(longs[0])
    assert not missing, f"README's row for labchat {name} lacks {missing}"
