"""The one error path of the ``labchat`` command: what a failure looks like, and its exit code.

Every failure is one line on stderr, ``labchat: error: ...``, that names the file, port or
host involved. Exit codes (issue 12):

* 0: done;
* 1: a runtime error (the server is not there, a capture failed, TLS failed);
* 2: a usage error: the command line asks for something that cannot be (argparse's own
  errors, a bad port, a missing input file, a user that exists already);
* 130: Ctrl-C (128 + SIGINT, as a shell reports it).

No traceback unless ``-v``/``--verbose`` or ``LABCHAT_DEBUG=1``.

A subcommand raises `CommandError` or `UsageError` with its message; `run_command` is the one
place that prints them. An exception a subcommand does not translate is turned into one by
`as_command_error`, so a new failure costs one message, never a new print or exit code.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = [
    "DEBUG_ENV",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "ArgumentParser",
    "CommandError",
    "UsageError",
    "as_command_error",
    "port",
    "port_or_zero",
    "report",
    "run_command",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C ended

#: Set to 1 to see the traceback behind an error (as ``-v``/``--verbose`` does).
DEBUG_ENV = "LABCHAT_DEBUG"


class CommandError(Exception):
    """A subcommand failed at run time: one line on stderr, exit code 1.

    Args:
        message: what failed, naming the file, port or host involved.
    """

    exit_code = EXIT_ERROR


class UsageError(CommandError):
    """The command line asks for something that cannot be: one line on stderr, exit code 2."""

    exit_code = EXIT_USAGE


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises its usage errors as `UsageError` instead of printing and exiting.

    Args:
        unavailable: set for a subcommand whose module failed to import: selecting the
            subcommand raises it (instead of the subcommand silently missing from the CLI).
        *args, **kwargs: as for `argparse.ArgumentParser`.
    """

    def __init__(self, *args: Any, unavailable: CommandError | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.unavailable = unavailable

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.unavailable is not None:
            raise self.unavailable
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _port(value: str, lowest: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        number = -1
    if not lowest <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number ({lowest}-65535)")
    return number


def port(value: str) -> int:
    """argparse ``type=`` for a TCP port: 1-65535 (RFC 6335 section 6; 0 is not a port)."""
    return _port(value, 1)


def port_or_zero(value: str) -> int:
    """argparse ``type=`` for a port to listen on: 0-65535, where 0 lets the kernel pick one."""
    return _port(value, 0)


def as_command_error(exc: BaseException) -> CommandError:
    """The `CommandError` an exception stands for, its message and exit code chosen here.

    Args:
        exc: what a subcommand raised.

    Returns:
        ``exc`` itself if it is a `CommandError`, else a new one (``exc`` as its cause).
    """
    if isinstance(exc, CommandError):
        return exc
    from labchat.auth import AuthError

    error: CommandError
    if isinstance(exc, ssl.SSLCertVerificationError):
        error = CommandError(
            f"certificate verification failed: {exc.verify_message or exc} "
            "(does --ca point at the lab CA, and does --server-name match?)"
        )
    elif isinstance(exc, ssl.SSLError):
        error = CommandError(f"TLS failed: {exc.reason or exc}")
    elif isinstance(exc, ConnectionError):
        error = CommandError(f"connection failed: {exc.strerror or exc}")
    elif isinstance(exc, AuthError | ValueError | FileNotFoundError | FileExistsError):
        error = UsageError(str(exc))
    elif isinstance(exc, PermissionError):
        error = UsageError(str(exc))
    elif isinstance(exc, OSError):
        error = CommandError(
            f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        )
    else:  # a failure nobody translated yet: still one line, with its kind
        error = CommandError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def report(exc: BaseException, *, debug: bool = False) -> int:
    """Print ``exc`` as the one error line (and its traceback when debugging); its exit code.

    Args:
        exc: what went wrong.
        debug: print the traceback first (``-v``, ``--verbose``, ``LABCHAT_DEBUG=1``).

    Returns:
        The exit code: 130 for Ctrl-C, else the error's (1 or 2).
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    error = as_command_error(exc)
    if debug:
        traceback.print_exception(exc)
    print(f"labchat: error: {error}", file=sys.stderr)
    return error.exit_code


def _debug_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def run_command(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    """Parse ``argv``, run the chosen subcommand's ``func(args)``, turn any failure into a line.

    Args:
        build_parser: makes the parser; each subcommand sets ``func`` (args -> exit code).
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        wanted = getattr(args, "debug", False) or getattr(args, "verbose", False)
        return report(exc, debug=bool(wanted) or _debug_env())
