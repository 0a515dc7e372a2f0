"""What ``labchat SUBCOMMAND --help`` shows besides the options: defaults, and examples.

* `HelpFormatter` appends ``(default: X)`` to every option that has a default and does not
  name it already, and keeps the examples' line breaks.
* `EXAMPLES` holds a few command lines per subcommand, with a comment each; `add_examples`
  puts them in each subcommand's epilog. They live here, in one table, rather than in each
  module's ``register``, so that every subcommand gets them the same way.
"""

from __future__ import annotations

import argparse

__all__ = ["EXAMPLES", "EXAMPLE_WIDTH", "HelpFormatter", "add_examples"]


class HelpFormatter(argparse.HelpFormatter):
    """argparse help with each option's default shown, and examples kept as written.

    A description of one paragraph is wrapped to the terminal as usual; a text with line
    breaks of its own (the examples epilog) is printed as it is.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = "%(default)" in text or "default" in text.lower()
        if (
            action.option_strings
            and not shown
            and default not in (None, False, argparse.SUPPRESS)
            and not (isinstance(default, list) and not default)
        ):
            text += " (default: %(default)s)"
        return text


#: Example command lines per subcommand: (command, what it does).
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "serve": [
        ("labchat serve", "TLS on 127.0.0.1:5050, certs/ and certs/users.json"),
        ("labchat serve --host 0.0.0.0 --max-clients 60", "a classroom: every interface"),
        ("labchat serve --tls-version 1.2 --keylog keys.log", "TLS 1.2 only, secrets logged"),
        ("labchat serve --plain --port 5051", "no TLS (INSECURE), for the plaintext lesson"),
        ("labchat serve --certs lab/", "lab/server.pem, lab/server.key, lab/users.json"),
    ],
    "chat": [
        ("labchat chat --user alice", "TLS to 127.0.0.1:5050, trusting certs/ca.pem"),
        ("labchat chat --user bob --host 10.0.0.5 --ca ca.pem", "a classroom server"),
        ("printf 'pw\\nhi\\n/who\\n' | labchat chat --user alice --password-stdin", "scripted"),
        ("labchat chat --user alice --plain --port 5051", "to a --plain server (INSECURE)"),
        (
            "labchat chat --user alice --cert certs/client-alice.pem --key certs/client-alice.key",
            "mutual TLS",
        ),
    ],
    "adduser": [
        ("labchat adduser carol", "asks for the password twice"),
        ("echo 's3cret-pass' | labchat adduser carol --password-stdin", "scripted"),
        ("labchat adduser carol --replace", "a new password, chosen by you"),
    ],
    "passwd": [
        ("labchat passwd alice", "a new random password, printed (and in demo-accounts.txt)"),
        ("echo 'n3w-pass-word' | labchat passwd alice --password-stdin", "a chosen one"),
    ],
    "deluser": [("labchat deluser carol", "carol can no longer log in")],
    "users": [("labchat users", "one name a line"), ("labchat users --users lab/users.json", "")],
    "certs": [
        ("labchat certs", "lab CA + server certificate for localhost, 127.0.0.1, ::1 in certs/"),
        ("labchat certs --host chat.lab --host 10.0.0.5 --force", "also for these names"),
        ("labchat certs --client alice", "certs/client-alice.pem and .key, for mutual TLS"),
    ],
    "init": [
        ("labchat init", "certificates and demo accounts where missing; the accounts, boxed"),
        ("labchat init --certs lab/", "the same in lab/ (users in lab/users.json)"),
    ],
    "capture": [
        ("labchat capture list", "the scenarios and the capture mode that would be used"),
        ("labchat capture tls13-chat --out captures/mine", "one scenario"),
        ("labchat capture --all --out /tmp/all --mode private", "every scenario, rootless"),
        ("labchat capture live --port 5050 --out live/ --duration 30", "a real session"),
    ],
    "inspect": [
        ("labchat inspect captures/tcp-chat/capture.pcapng", "connections, handshake, teardown"),
        ("labchat inspect capture.pcapng --keylog keys.log", "with TLS decrypted"),
        ("labchat inspect capture.pcapng --stream 0 --plot ladder.png", "one connection, drawn"),
    ],
    "demo": [
        ("labchat demo", "capture a TLS 1.3 chat into captures/demo/, draw its ladder"),
        ("labchat demo --mode offline --out /tmp/demo", "from the shipped capture"),
    ],
    "doctor": [
        ("labchat doctor", "the pre-flight check: a table, exit 1 if the lab lacks something"),
        ("labchat doctor --lab-only --json", "only what the notebooks need, as JSON"),
        ("labchat doctor --fix-capture", "as root on Ubuntu: let this Python capture"),
    ],
    "lab": [
        ("labchat lab", "the notebooks into ./labchat-lab (if missing), JupyterLab there"),
        ("labchat lab ~/net-lab --student --port 8899", "the student edition, another port"),
    ],
    "student-edition": [
        ("labchat student-edition student/", "the notebooks without the answers"),
        ("labchat student-edition out/ --worksheets", "and a printable page each"),
    ],
    "check": [
        ("labchat check 01-watch-a-tcp-handshake.ipynb", "each exercise and check, as JSON"),
        ("labchat check work.ipynb --student ana --out ana.json", "for a gradebook"),
    ],
}


#: Examples are laid out as ``command  # comment`` if every line fits this many columns.
EXAMPLE_WIDTH = 79


def _epilog(examples: list[tuple[str, str]]) -> str:
    width = max(len(command) for command, _ in examples)
    side_by_side = all(
        2 + width + 4 + len(what) <= EXAMPLE_WIDTH for command, what in examples if what
    )
    lines = ["examples:"]
    for command, what in examples:
        if not what:
            lines.append(f"  {command}")
        elif side_by_side:
            lines.append(f"  {command:<{width}}  # {what}")
        else:  # the comment goes above: copying the command stays easy
            lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


def add_examples(subparsers: argparse._SubParsersAction) -> None:
    """Give each subcommand in `EXAMPLES` its examples as an epilog.

    Args:
        subparsers: the ``labchat`` parser's subparsers, every subcommand registered.
    """
    for name, parser in subparsers.choices.items():
        if name in EXAMPLES and not parser.epilog:
            parser.epilog = _epilog(EXAMPLES[name])
