"""``labchat capture ...``: record a scripted scenario, a live session, or list what exists.

::

    labchat capture list
    labchat capture tls13-chat --out captures/mine [--mode auto|private|host|offline]
    labchat capture --all --out captures
    labchat capture live --port 5050 --out captures/live [--duration S] [--count N]

Every command prints which capture mode it used and why the other modes were not used.
Errors are one line on stderr and a non-zero exit code, never a traceback (`labchat.cli.errors`).

``python -m labchat.capture.network [list | features | NAME... | --all] --out DIR`` is
`network_main`: the lab network's scenarios alone, and what this kernel can do for them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from labchat import capture
from labchat.capture import network, scenarios

from .errors import ArgumentParser, CommandError, UsageError, port, run_command

__all__ = [
    "cmd_capture",
    "cmd_list",
    "cmd_live",
    "cmd_network",
    "cmd_scenario",
    "network_main",
    "register",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``capture`` subcommand to the ``labchat`` CLI's argparse subparsers."""
    p = subparsers.add_parser(
        "capture",
        help="record a scripted scenario or a live session as pcapng (+ keys.log, manifest)",
        description=(
            "Record packets. TARGET is a scenario name, 'live' (capture host loopback while "
            "people chat) or 'list'. Modes: private (a user+network namespace; no root "
            "needed), host (host loopback; root or CAP_NET_RAW), offline (the shipped "
            "reference captures). auto tries them in that order; LABCHAT_CAPTURE_MODE "
            "overrides auto."
        ),
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="scenario name, 'live' or 'list'")
    p.add_argument("--out", metavar="DIR", help="output directory")
    p.add_argument("--all", action="store_true", help="every scenario, into DIR/<scenario>/")
    p.add_argument("--mode", choices=capture.MODES, default="auto", help="capture mode (see above)")
    p.add_argument(
        "--port",
        type=port,
        help=f"server port (live: required; scenarios: default {capture.DEFAULT_PORT})",
    )
    p.add_argument(
        "--pause",
        type=float,
        metavar="SECONDS",
        help="pause between scenario steps (default: each scenario's own)",
    )
    p.add_argument("--duration", type=float, metavar="S", help="live: stop after S seconds")
    p.add_argument("--count", type=int, metavar="N", help="live: stop after N packets")
    p.add_argument("--iface", default="lo", help="live: interface to capture on")
    p.add_argument("--keylog", metavar="F", help="live: TLS key log to embed (server --keylog)")
    p.set_defaults(func=cmd_capture)


def _print_mode(mode: capture.CaptureMode) -> None:
    print(mode.explain())


def cmd_capture(args: argparse.Namespace) -> int:
    """Dispatch ``labchat capture`` to list, live or a scenario."""
    if args.target == "list":
        return cmd_list(args)
    if args.target == "live":
        return cmd_live(args)
    if args.target is None and not args.all:
        raise UsageError("name a scenario, 'live' or 'list' (or pass --all)")
    return cmd_scenario(args)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the scenarios, the reference captures, and which capture mode would be used."""
    ref = capture.reference_dir()
    groups = [
        ("scenarios (loopback):", scenarios.SCENARIOS.values()),
        ("scenarios (two hosts on a lab network):", network.SCENARIOS.values()),
    ]
    for title, specs in groups:
        print(title)
        for s in specs:
            shipped = "reference" if (ref / s.name / "capture.pcapng").is_file() else "no reference"
            print(f"  {s.name:<20} {s.description} [{shipped}]")
    try:
        _print_mode(capture.detect_mode(getattr(args, "mode", "auto")))
    except (capture.CaptureError, ValueError) as exc:
        print(f"capture mode: none available ({exc})")
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    """Capture one scenario (or ``--all``) into ``--out``."""
    every = scenarios.names() + network.names()
    names = every if args.all else [args.target]
    unknown = [n for n in names if n not in every]
    if unknown:
        raise UsageError(f"unknown scenario {unknown[0]!r}; choose one of: {', '.join(every)}")
    if not args.out:
        raise UsageError("--out DIR is required")
    params = {}
    if args.port is not None:
        params["port"] = args.port
    if args.pause is not None:
        params["pause"] = args.pause
    # Loopback scenarios and lab-network scenarios capture in different places (lo versus the
    # server's veth), so each family has its own runner; --all runs both.
    on_loopback = [n for n in names if n in scenarios.SCENARIOS]
    on_network = [n for n in names if n in network.SCENARIOS]
    out = Path(args.out)
    results = []
    try:
        if args.all:
            results += capture.run_scenarios(on_loopback, out, mode=args.mode, **params)
            if args.mode != "host":  # the lab network only exists in private mode
                results += network.run_scenarios(on_network, out, mode=args.mode, **params)
        elif on_network:
            results.append(network.run_scenario(names[0], out, mode=args.mode, **params))
        else:
            results.append(capture.run_scenario(names[0], out, mode=args.mode, **params))
    except (capture.CaptureError, network.NetworkError) as exc:
        raise CommandError(str(exc)) from exc
    _print_mode(results[0].mode)
    for r in results:
        keys = f" + {r.keylog.name} (also embedded)" if r.keylog else ""
        n = r.manifest.get("capture", {}).get("packets", "?")
        print(f"{r.scenario}: {n} packets -> {r.pcap}{keys}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    """Capture host loopback traffic to/from ``--port`` until Ctrl-C, --duration or --count."""
    if args.port is None:
        raise UsageError("live capture needs --port P (the chat server's port)")
    if not args.out:
        raise UsageError("--out DIR is required")
    if args.mode not in ("auto", "host"):
        raise UsageError("live capture only works in host mode (the chat runs in the host network)")
    bound = []
    if args.duration:
        bound.append(f"{args.duration:g} s")
    if args.count:
        bound.append(f"{args.count} packets")
    until = " or ".join(["Ctrl-C", *bound])

    def started() -> None:
        print(f"listening on {args.iface} for tcp port {args.port} until {until}", flush=True)

    try:
        result = capture.capture_live(
            args.port,
            Path(args.out),
            duration=args.duration,
            count=args.count,
            iface=args.iface,
            keylog=args.keylog,
            on_start=started,
        )
    except capture.CaptureError as exc:
        raise CommandError(str(exc)) from exc
    _print_mode(result.mode)
    print(f"live: {result.manifest['capture']['packets']} packets -> {result.pcap}")
    return 0


def _network_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m labchat.capture.network",
        description="Capture the lab network's scenarios (two hosts, a 1500-byte link), "
        "list them, or show which shaping features this kernel has.",
    )
    parser.add_argument("targets", nargs="*", metavar="NAME", help="scenario, 'list' or 'features'")
    parser.add_argument("--all", action="store_true", help="every scenario, into DIR/<name>/")
    parser.add_argument("--out", metavar="DIR", help="output directory")
    parser.add_argument(
        "--mode", choices=("auto", "private", "offline"), default="auto", help="capture mode"
    )
    parser.set_defaults(func=cmd_network)
    return parser


def cmd_network(args: argparse.Namespace) -> int:
    """List, probe or capture the lab network's scenarios (`network_main`'s handler)."""
    if args.targets == ["list"]:
        for s in network.SCENARIOS.values():
            shipped = (capture.reference_dir() / s.name / "capture.pcapng").is_file()
            print(f"  {s.name:<20} {s.description} [{'reference' if shipped else 'no reference'}]")
        return 0
    if args.targets == ["features"]:
        print(json.dumps(network.features(), indent=2))
        return 0
    names = network.names() if args.all else args.targets
    unknown = [n for n in names if n not in network.SCENARIOS]
    if unknown:
        why = f"unknown scenario {unknown[0]!r}"
    elif not names:
        why = "name scenarios (or --all)"
    elif not args.out:
        why = "--out DIR is required"
    else:
        why = None
    if why is not None:
        raise UsageError(f"{why}; known: {', '.join(network.SCENARIOS)}")
    try:
        results = network.run_scenarios(names, args.out, mode=args.mode)
    except (capture.CaptureError, network.NetworkError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"capture mode: {results[0].mode.name} ({results[0].mode.reason})")
    for r in results:
        print(f"{r.scenario}: {r.manifest['capture']['packets']} packets -> {r.pcap}")
    return 0


def network_main(argv: Sequence[str] | None = None) -> int:
    """``python -m labchat.capture.network [list | features | NAME... | --all] [--out DIR]``.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code, as for ``labchat`` (`labchat.cli.errors`).
    """
    return run_command(_network_parser, argv)
