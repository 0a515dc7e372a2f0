"""``labchat inspect FILE``: connections, handshakes, teardowns and TLS messages of any capture."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from labchat.analysis import AnalysisError, Connection, load, tls_round_trips, tls_summary

from .errors import UsageError, port

__all__ = ["cmd_inspect", "register"]


def register(subparsers) -> None:
    """Add the ``inspect`` subcommand to the CLI's argparse subparsers."""
    p = subparsers.add_parser(
        "inspect",
        help="take a capture apart: connections, handshakes, teardowns, TLS messages",
        description="Read a pcap/pcapng file and print what happened on each TCP connection.",
    )
    p.add_argument("file", metavar="FILE", help="capture file (pcap or pcapng)")
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
    p.add_argument("--plot", metavar="OUT.png", help="write the ladder diagram of the connection")
    p.set_defaults(func=cmd_inspect)


def _describe(conn: Connection, out: TextIO) -> None:
    guess = "  (no SYN captured: client guessed)" if conn.client_guessed else ""
    print(
        f"== connection #{conn.stream}: client {conn.client[0]}:{conn.client[1]} -> "
        f"server {conn.server[0]}:{conn.server[1]}, {len(conn.segments)} segments{guess}",
        file=out,
    )
    hs = conn.handshake()
    if hs is None:
        print("handshake: not captured", file=out)
    else:
        print(f"handshake: {'ok' if hs.ok else 'INCOMPLETE'}", file=out)
        for text, passed in hs.checks():
            print(f"  [{'x' if passed else ' '}] {text}", file=out)
    td = conn.teardown()
    if td is not None:
        extra = []
        if td.merged:
            extra.append("FIN+ACK piggybacked (3 segments)")
        if td.half_close:
            extra.append("half-close: data after the first FIN")
        if not td.complete:
            extra.append("not complete")
        tail = f" ({'; '.join(extra)})" if extra else ""
        print(f"teardown: {td.first_closer} closed first{tail}", file=out)
    for seg in conn.resets():
        who = "client" if seg.direction == "c->s" else "server"
        print(f"reset: segment #{seg.index} ({seg.flags}) sent by the {who}", file=out)
    if td is None and not conn.resets():
        print("teardown: none captured (connection still open at the end)", file=out)
    rt = conn.retransmissions()
    if rt:
        print(f"retransmissions: segments {', '.join(str(s.index) for s in rt)}", file=out)
    print(conn.segment_table(), file=out)
    if conn.tls:
        print(f"TLS: {tls_round_trips(conn)} round trip(s) before the first client data", file=out)
        print(tls_summary(conn), file=out)
    lines = conn.app_lines()
    if lines:
        print("application lines:", file=out)
        for direction, text in lines:
            print(f"  {direction}  {text}", file=out)
    print(file=out)


def cmd_inspect(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``labchat inspect``.

    Returns:
        0.

    Raises:
        UsageError: the file (or key log) cannot be read as a capture, there is no connection
            to plot, or the plot cannot be written.
    """
    out = out or sys.stdout
    try:
        cap = load(args.file, keylog=args.keylog, tls_ports=args.tls_port or ())
        conns = cap.connections()
        if args.stream is not None:
            conns = [cap.connection(args.stream)]
    except AnalysisError as exc:
        raise UsageError(str(exc)) from exc
    print(f"{cap.path.name}: {len(cap.packets)} packets, {len(cap.connections())} TCP connections",
          file=out)  # fmt: skip
    for w in cap.warnings:
        print(f"warning: {w}", file=out)
    if cap.connections():
        print(cap.connection_table(), file=out)
        print(file=out)
    for conn in conns:
        _describe(conn, out)
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
