"""``labchat demo``: capture a TLS 1.3 chat, print what happened, draw its ladder."""

from __future__ import annotations

import argparse

from labchat.capture import MODES, CaptureError
from labchat.demo import DEFAULT_OUT, run_demo

from .errors import CommandError

__all__ = ["cmd_demo", "register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run `labchat.demo.run_demo` and print its summary."""
    try:
        result = run_demo(args.out, mode=args.mode)
    except CaptureError as exc:
        raise CommandError(str(exc)) from exc
    print(result.summary())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``labchat`` subcommands."""
    demo = subparsers.add_parser("demo", help="capture a TLS 1.3 chat and draw its ladder")
    demo.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help="directory for capture.pcapng, keys.log, manifest.json and ladder.png",
    )
    demo.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="capture mode (`labchat capture --help` explains them)",
    )
    demo.set_defaults(func=cmd_demo)
