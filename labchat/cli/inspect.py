"""``labchat inspect FILE``: connections, handshakes, teardowns and TLS messages of any capture.

Text for people (``describe``), or one JSON document for scripts (``--json``; the schema is
in docs/inspect.md). Bad input raises `UsageError` (one ``labchat: error:`` line, exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from labchat.analysis import AnalysisError, load
from labchat.analysis.report import describe, json_document

from .errors import UsageError, port

__all__ = ["ProgressBar", "cmd_inspect", "register"]


def register(subparsers) -> None:
    """Add the ``inspect`` subcommand to the CLI's argparse subparsers."""
    p = subparsers.add_parser(
        "inspect",
        help="take a capture apart: connections, handshakes, teardowns, TLS messages",
        description="Read a pcap/pcapng file (gzip'd or not) and print what happened on each "
        "TCP connection, with tshark's names for its TCP analysis.",
    )
    p.add_argument("file", metavar="FILE", help="capture file (pcap or pcapng, maybe .gz)")
    p.add_argument("--keylog", metavar="F", help="NSS key log to decrypt TLS 1.2/1.3")
    p.add_argument(
        "--tls-port",
        metavar="P",
        type=port,
        action="append",
        default=[],
        help="decode this server port as TLS (repeatable; 443 and TLS-looking streams always are)",
    )
    p.add_argument("--stream", metavar="N", type=int, help="only connection number N")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--full", action="store_true",
                   help="show every payload line and byte, and do not cut long lines")  # fmt: skip
    p.add_argument("--raw-window", action="store_true",
                   help="show the window field as sent, not the scaled window")  # fmt: skip
    p.add_argument("--plot", metavar="OUT.png", help="write the ladder diagram of the connection")
    p.set_defaults(func=cmd_inspect)


class ProgressBar:
    """A progress bar on a terminal, shown only once reading has taken more than a second.

    Args:
        stream: where to draw it (stderr); nothing is drawn unless it is a terminal or
            ``force`` is set.
        after: seconds before the bar appears.
        clock: the time source (tests pass a fake one).
    """

    def __init__(self, stream: TextIO, *, after: float = 1.0, force: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.stream = stream
        self.after = after
        self.clock = clock
        self.enabled = force or stream.isatty()
        self.start = clock()
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or self.clock() - self.start < self.after:
            return
        width = 30
        frac = done / total if total else 1.0
        filled = int(frac * width)
        self.stream.write(f"\rreading {'#' * filled}{'.' * (width - filled)} {frac:4.0%}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """Clear the bar's line (when one was drawn)."""
        if self.drawn:
            self.stream.write("\r" + " " * 48 + "\r")
            self.stream.flush()


def cmd_inspect(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``labchat inspect``.

    Returns:
        0.

    Raises:
        UsageError: the file (or key log) cannot be read as a capture, there is no such
            connection or none to plot, or the plot cannot be written.
    """
    out = out or sys.stdout
    progress = ProgressBar(sys.stderr)
    try:
        cap = load(args.file, keylog=args.keylog, tls_ports=args.tls_port or (),
                   progress=progress)  # fmt: skip
        conns = cap.connections()
        if args.stream is not None:
            conns = [cap.connection(args.stream)]
    except AnalysisError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        progress.close()
    try:
        return _print(args, cap, conns, out)
    except BrokenPipeError:  # `labchat inspect ... | head`: the reader has seen enough
        sys.stdout = open(os.devnull, "w")  # stays open until exit, on purpose
        return 0


def _print(args: argparse.Namespace, cap, conns, out: TextIO) -> int:
    if getattr(args, "json", False):
        streams = None if args.stream is None else [args.stream]
        # dumps, not dump: dump streams through the pure-Python encoder, 10 times slower.
        out.write(json.dumps(json_document(cap, streams), separators=(",", ":")))
        out.write("\n")
        return 0
    full = getattr(args, "full", False)
    width = None if full else shutil.get_terminal_size((120, 24)).columns
    n = len(cap.connections())
    print(f"{cap.path.name}: {cap.packet_count} packets, {n} TCP connection{'s' if n != 1 else ''}",
          file=out)  # fmt: skip
    for w in cap.warnings:
        print(f"warning: {w}", file=out)
    if n:
        print(cap.connection_table(), file=out)
        print(file=out)
    raw = getattr(args, "raw_window", False)
    for conn in conns:
        out.writelines(line + "\n" for line in describe(conn, width=width, full=full,
                                                        raw_window=raw))  # fmt: skip
    if args.plot:
        if not conns:
            raise UsageError(f"{args.file}: no TCP connection to plot")
        from labchat.plots import ladder

        try:
            ladder(conns[0]).savefig(args.plot, dpi=110)
        except OSError as exc:
            raise UsageError(f"cannot write {args.plot}: {exc.strerror}") from exc
        print(f"ladder diagram of connection #{conns[0].stream} written to {args.plot}", file=out)
    return 0
