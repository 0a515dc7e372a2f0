"""Capturing on loopback: the scripted scenarios, and live sessions on host loopback.

`run_scenario` and `run_scenarios` capture the loopback scenarios (`labchat.capture.scenarios`)
in whichever mode `labchat.capture.modes.detect_mode` chooses: in a private namespace child
(`labchat.capture.child`), on host loopback in this process, or by copying the shipped
captures. `capture_live` records people chatting from terminals on host loopback.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import scenarios
from .child import bring_up_loopback, run_private
from .modes import DEFAULT_PORT, CaptureError, CaptureMode, detect_mode, host_unavailable
from .results import CaptureResult, copy_references, read_keylog, save_capture
from .sniffer import Sniffer

__all__ = [
    "capture_here",
    "capture_in_namespace",
    "capture_live",
    "run_scenario",
    "run_scenarios",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capture_here(
    names: Sequence[str], dirs: Sequence[Path], mode: CaptureMode, params: dict[str, Any]
) -> list[dict]:
    """Run scenarios in this process, sniffing ``lo``; write each into its directory.

    A `labchat.capture.child.Job` (``capture_in_namespace`` runs it in the child). ``params``
    go to every scenario; their ``port`` (None or missing: a free port) is the server's.
    """
    params = dict(params)
    port = params.pop("port", None)
    manifests = []
    for name, directory in zip(names, dirs, strict=True):
        spec = scenarios.get(name)
        server_port = port or _free_port()
        with tempfile.TemporaryDirectory(prefix=f"labchat-{name}-") as tmp:
            work = Path(tmp)
            sniffer = Sniffer("lo", server_port)
            t0 = time.monotonic()
            with sniffer:  # listening before the scenario's first packet
                run = spec.func(work, port=server_port, **params)
                packets = sniffer.stop()
            elapsed = time.monotonic() - t0
            keylog = read_keylog(run.keylog)
        manifest = save_capture(
            directory, name, packets=packets, sniffer=sniffer, description=spec.description,
            parameters={"port": server_port, **params}, run=run, server_port=server_port,
            mode=mode, seconds=elapsed, keylog=keylog,
        )  # fmt: skip
        manifests.append(manifest)
    return manifests


def capture_in_namespace(
    names: Sequence[str], dirs: Sequence[Path], mode: CaptureMode, params: dict[str, Any]
) -> list[dict]:
    """The private-mode job (`labchat.capture.child`): bring this namespace's ``lo`` up, then
    `capture_here`."""
    bring_up_loopback()
    return capture_here(names, dirs, mode, params)


def _run(
    names: Sequence[str], dirs: Sequence[Path], mode: str, params: dict[str, Any]
) -> list[CaptureResult]:
    chosen = detect_mode(mode)
    if chosen.name == "offline":
        return copy_references(names, dirs, chosen)
    if chosen.name == "private":
        params = {**params, "port": int(params.get("port") or DEFAULT_PORT)}
        run_private("labchat.capture.loopback:capture_in_namespace", names, dirs, chosen, params)
    else:
        capture_here(names, dirs, chosen, params)
    return [CaptureResult.from_directory(d, chosen) for d in dirs]


def run_scenarios(
    names: Sequence[str],
    out: str | Path,
    *,
    mode: str = "auto",
    **params: Any,
) -> list[CaptureResult]:
    """Capture several scenarios into ``out/<name>/`` (one namespace child for all of them).

    Args:
        names: scenario names (see `labchat.capture.scenarios.SCENARIOS`).
        out: parent directory.
        mode: capture mode (see `labchat.capture.detect_mode`).
        **params: passed to every scenario (``port=`` sets the server port).

    Returns:
        One `CaptureResult` per scenario, in order.

    Raises:
        KeyError: unknown scenario.
        CaptureError: the capture failed, or the requested mode is unavailable.
    """
    for name in names:
        scenarios.get(name)
    out = Path(out)
    dirs = [out / name for name in names]
    return _run(names, dirs, mode, params)


def run_scenario(
    name: str, out: str | Path | None = None, *, mode: str = "auto", **params: Any
) -> CaptureResult:
    """Run one scripted chat and capture it.

    Args:
        name: scenario name, e.g. ``tls13-chat`` (`labchat.capture.scenarios.SCENARIOS`
            lists them).
        out: directory for capture.pcapng, keys.log and manifest.json; a new temporary
            directory if None.
        mode: ``auto``, ``private``, ``host`` or ``offline`` (see `labchat.capture.detect_mode`).
        **params: scenario parameters (``port=`` sets the server port; ``pause=`` the gap
            between steps).

    Returns:
        The `CaptureResult`; ``result.mode`` says how the packets were obtained and why.

    Raises:
        KeyError: unknown scenario.
        CaptureError: the capture failed, or the requested mode is unavailable.
    """
    scenarios.get(name)
    directory = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"labchat-{name}-"))
    return _run([name], [directory], mode, params)[0]


def capture_live(
    port: int,
    out: str | Path,
    *,
    duration: float | None = None,
    count: int | None = None,
    iface: str = "lo",
    keylog: str | Path | None = None,
    on_start: Callable[[], None] | None = None,
) -> CaptureResult:
    """Capture a live session on host loopback until Ctrl-C, ``duration`` or ``count``.

    Needs root or CAP_NET_RAW (host mode): the people chatting are in the host's network.

    Args:
        port: the labchat server's port (``tcp port P`` is captured).
        out: directory for capture.pcapng, manifest.json (and keys.log).
        duration: stop after this many seconds.
        count: stop after this many packets.
        iface: interface to sniff.
        keylog: a TLS key log written by the server or clients (``--keylog``); embedded as a
            DSB and copied beside the capture.
        on_start: called once the sniffer is listening.

    Returns:
        The `CaptureResult`.

    Raises:
        CaptureError: no capture rights, or the sniffer failed.
    """
    why_not = host_unavailable()
    if why_not is not None:
        raise CaptureError(f"live capture needs host mode, which is not available: {why_not}")
    mode = CaptureMode(
        "host",
        "live session on host loopback (people chat from terminals in the host's network)",
        {
            "private": "a namespace would hide the terminals' traffic",
            "offline": "a live session was asked for",
        },
    )
    out = Path(out)
    sniffer = Sniffer(iface, port)
    t0 = time.monotonic()
    interrupted = False
    with sniffer:  # listening from here on
        if on_start:
            on_start()
        try:
            while True:
                if duration is not None and time.monotonic() - t0 >= duration:
                    break
                if count is not None and sniffer.count >= count:
                    break
                time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
        packets = sniffer.stop(quiet=0.0) if interrupted else sniffer.stop()
    if count is not None:
        packets = packets[:count]
    key_bytes = read_keylog(keylog)
    save_capture(
        out, "live", packets=packets, sniffer=sniffer,
        parameters={"port": port, "duration": duration, "count": count},
        run=scenarios.ScenarioRun(server={"host": "127.0.0.1", "port": port, "role": "server"}),
        server_port=port, mode=mode, seconds=time.monotonic() - t0, keylog=key_bytes,
        stopped_by="ctrl-c" if interrupted else ("count" if count else "duration"),
    )  # fmt: skip
    return CaptureResult.from_directory(out, mode)
