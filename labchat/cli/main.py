"""The ``labchat`` command: one parser with a subcommand per task, one place errors end up.

Each subcommand group is a module with ``register(subparsers)``; its handlers return 0 or
raise (`labchat.cli.errors` says how a failure is printed and which exit code it gets).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from labchat import __version__

from .errors import DEBUG_ENV, ArgumentParser, CommandError, run_command
from .help import add_examples

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommand modules of `labchat.cli` and the subcommands each adds, in ``--help`` order.
#: Listed here rather than learnt from the module, so a module that fails to import is still
#: a subcommand that says why it cannot run, instead of one that silently is not there.
COMMANDS: dict[str, tuple[str, ...]] = {
    "serve": ("serve",),
    "chat": ("chat",),
    "admin": ("adduser", "passwd", "deluser", "users", "certs", "init"),
    "capture": ("capture",),
    "inspect": ("inspect",),
    "demo": ("demo",),
    "classroom": ("doctor", "lab", "student-edition", "check"),
}


def _register_unavailable(
    sub: argparse._SubParsersAction, module: str, names: Sequence[str], exc: ImportError
) -> None:
    for name in names:
        error = CommandError(
            f"`labchat {name}` is not available: importing {module} failed "
            f"({type(exc).__name__}: {exc}); reinstall labchat with its dependencies"
        )
        error.__cause__ = exc
        sub.add_parser(name, help=f"(not available: {exc})", unavailable=error)


def build_parser() -> argparse.ArgumentParser:
    """The ``labchat`` argument parser, every subcommand registered.

    Returns:
        The parser; each subcommand sets ``func`` (a handler taking the parsed arguments).
    """
    parser = ArgumentParser(
        prog="labchat",
        description="An educational TLS chat lab: serve, chat, capture, inspect.",
        epilog=(
            "first steps:\n"
            "  labchat init                 # lab CA, server certificate, demo accounts\n"
            "  labchat serve                # terminal 1: the server\n"
            "  labchat chat --user alice    # terminal 2 (and bob in terminal 3)\n"
            "  labchat demo                 # capture a TLS 1.3 chat and draw it\n"
            "`labchat COMMAND --help` shows each command's options and examples."
        ),
    )
    parser.add_argument("--version", action="version", version=f"labchat {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        dest="debug",
        action="store_true",
        help=f"show the traceback behind an error (or set {DEBUG_ENV}=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module, names in COMMANDS.items():
        qualified = f"{__package__}.{module}"
        try:
            mod = importlib.import_module(qualified)
        except ImportError as exc:
            _register_unavailable(sub, qualified, names, exc)
            continue
        mod.register(sub)
    add_examples(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``labchat ARGV``.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 done, 1 runtime error, 2 usage error, 130 Ctrl-C.
    """
    return run_command(build_parser, argv)
