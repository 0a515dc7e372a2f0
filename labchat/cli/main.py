"""The ``labchat`` command: one parser with a subcommand per task, and one place errors end up.

Handlers return an exit code: 0 done, 1 failed at run time, 2 bad input. Errors a user can
fix are printed as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import ssl

from labchat import __version__
from labchat.auth import AuthError

from . import admin, chat, serve
from .common import UsageError, print_err

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``labchat`` argument parser, every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="labchat", description="An educational TLS chat lab: serve, chat, capture, inspect."
    )
    parser.add_argument("--version", action="version", version=f"labchat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    chat.register(sub)
    admin.register(sub)
    # Capture, inspection and the demo live in their own modules (issue: see the wire).
    for module in ("capture", "inspect", "demo"):
        try:
            mod = importlib.import_module(f"labchat.cli.{module}")
        except ImportError:
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``labchat ARGV``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ssl.SSLCertVerificationError as exc:
        print_err(
            f"certificate verification failed: {exc.verify_message or exc} "
            "(does --ca point at the lab CA, and does --server-name match?)"
        )
        return 1
    except ssl.SSLError as exc:
        print_err(f"TLS failed: {exc.reason or exc}")
        return 1
    except ConnectionError as exc:
        print_err(f"connection failed: {exc.strerror or exc}")
        return 1
    except (UsageError, AuthError, ValueError) as exc:
        print_err(str(exc))
        return 2
    except (FileNotFoundError, FileExistsError, PermissionError) as exc:
        print_err(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print_err(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return 1
