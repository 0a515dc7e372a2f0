"""What several subcommands share: the users-file and password options, reading a password."""

from __future__ import annotations

import argparse
import getpass
import sys

from labchat.server import DEFAULT_USERS

from .errors import UsageError

__all__ = ["add_password_stdin", "add_users_option", "read_password"]


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
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise UsageError("the two passwords differ")
    return password


def add_users_option(parser: argparse.ArgumentParser) -> None:
    """``--users FILE``."""
    parser.add_argument(
        "--users", default=str(DEFAULT_USERS), help=f"users file (default {DEFAULT_USERS})"
    )


def add_password_stdin(parser: argparse.ArgumentParser) -> None:
    """``--password-stdin``."""
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
