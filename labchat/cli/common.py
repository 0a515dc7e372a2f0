"""What several subcommands share: the users-file and password options, reading a password."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from labchat.server import DEFAULT_USERS

from .errors import UsageError

__all__ = ["add_password_stdin", "add_users_option", "read_password", "users_file"]


def read_password(args: argparse.Namespace, *, confirm: bool) -> str:
    """The password: the first line of stdin with ``--password-stdin``, else asked for.

    Args:
        args: the parsed command line (``password_stdin``).
        confirm: ask twice and compare (a new password).

    Raises:
        UsageError: no password on stdin, no terminal to ask on, or the two differ.
    """
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for a password; use --password-stdin")
    try:
        password = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    except (KeyboardInterrupt, EOFError):
        # getpass leaves the cursor after the prompt: end that line, or the shell's prompt
        # (or the error line) would start on it (issue 12).
        print(file=sys.stderr)
        raise
    return password


def add_users_option(parser: argparse.ArgumentParser) -> None:
    """``--users FILE``; without it, `users_file` picks ``users.json`` in the certs directory."""
    default = "users.json in the --certs directory" if parser.get_default("certs") else None
    parser.add_argument(
        "--users",
        metavar="FILE",
        help=f"users file: scrypt hashes, mode 0600 (default: {default or DEFAULT_USERS})",
    )


def users_file(args: argparse.Namespace) -> Path:
    """The users file ``args`` means: ``--users FILE``, else ``users.json`` next to the
    certificates (``--certs DIR``), else `labchat.server.DEFAULT_USERS`."""
    if args.users:
        return Path(args.users)
    certs = getattr(args, "certs", None)
    return Path(certs) / "users.json" if certs else DEFAULT_USERS


def add_password_stdin(parser: argparse.ArgumentParser, otherwise: str = "ask") -> None:
    """``--password-stdin``; *otherwise* says what happens without it."""
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from the first line of standard input (default: {otherwise})",
    )
