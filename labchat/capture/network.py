"""Scenarios on the lab network: lost SYNs, lost segments, a slow link, a handshake by hand.

The network itself -- two hosts in private network namespaces, joined by a 1500-byte veth
link that can be rate-limited and made lossy -- is built by :mod:`labchat.capture.netns`. The
scenarios are scripted in :mod:`labchat.capture.lossy` and :mod:`labchat.capture.craft`. This
module names them, runs them in a private user namespace the way
:func:`labchat.capture.run_scenario` does (captured on the server's interface), and falls back
to the shipped captures in ``captures/<name>/`` when namespaces are not available.

``python -m labchat.capture.network [list | features | NAME... | --all] --out DIR`` captures
them from a shell (`labchat capture` does too, with the loopback scenarios).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bulk, craft, flow, lossy
from .child import run_private
from .craft import CRAFT_ISN, CRAFT_SPORT, handshake_by_hand
from .modes import (
    DEFAULT_PORT,
    CaptureError,
    CaptureMode,
    detect_mode,
    offline_unavailable,
)
from .netns import (
    CLIENT_IFACE,
    CLIENT_IP,
    MTU,
    SERVER_IFACE,
    SERVER_IP,
    LabNetwork,
    NetworkError,
    features,
)
from .results import CaptureResult, copy_references, save_capture
from .router import RoutedNetwork
from .scenarios import PAUSE, ScenarioRun, by_name
from .shaping import C2S, Drop, Shaping
from .sniffer import Sniffer

__all__ = [
    "CLIENT_IP",
    "CRAFT_ISN",
    "CRAFT_SPORT",
    "MTU",
    "SCENARIOS",
    "SERVER_IP",
    "NetworkError",
    "NetworkScenario",
    "capture_here",
    "features",
    "get",
    "handshake_by_hand",
    "names",
    "run_scenario",
    "run_scenarios",
]


@dataclass(frozen=True)
class NetworkScenario:
    """A scenario on the lab network: ``func(net, work, *, port, pause)`` and its link.

    Attributes:
        name: the scenario's name.
        func: what it does on the started network.
        description: one line for ``list``.
        shaping: the link for a server port.
        notes: more to say in the listing.
        routed: on the routed network (client - router - server,
            `labchat.capture.router.RoutedNetwork`) instead of the two-host one.
        capture_at: ``server`` or ``client``: whose interface the sniffer listens on.
        sysctls: kernel settings per host (see `labchat.capture.netns.LabNetwork`).
    """

    name: str
    func: Callable[..., ScenarioRun]
    description: str
    shaping: Callable[[int], Shaping]
    notes: str = ""
    routed: bool = False
    capture_at: str = "server"
    sysctls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def _drops(*drops: Drop) -> Callable[[int], Shaping]:
    return lambda port: Shaping(drops=drops)


SCENARIOS: dict[str, NetworkScenario] = {
    s.name: s
    for s in (
        NetworkScenario(
            "syn-retry", lossy.syn_retry, "two hosts: the first SYN is lost, resent after 1 s",
            _drops(Drop("syn", 1, C2S)),
        ),
        NetworkScenario(
            "lost-segment", lossy.lost_segment,
            "two hosts: one data segment of a burst lost: dup ACKs, SACK, fast retransmit",
            _drops(Drop("data", lossy.LOST_SEGMENT, C2S)), sysctls=lossy.LS_SYSCTLS,
        ),
        NetworkScenario(
            "slow-link", lossy.slow_link,
            f"two hosts, {lossy.SLOW_RATE}/s: a large reply in MSS segments",
            lambda port: Shaping(rate=lossy.SLOW_RATE),
        ),
        NetworkScenario(
            "lost-fin", lossy.lost_fin, "two hosts: the client's FIN is lost, resent on timeout",
            _drops(Drop("fin", 1, C2S)),
        ),
        NetworkScenario(
            "bulk-upload", bulk.bulk_upload,
            f"client, router, server: {bulk.BULK_BYTES // 1_000_000} MB up through "
            f"{bulk.BULK_RATE}/s, CUBIC; kernel TCP_INFO samples (tcp_info.csv)",
            bulk.bulk_shaping, routed=True, capture_at="client",
        ),
        NetworkScenario(
            "bulk-upload-reno", bulk.bulk_upload_reno,
            "the same upload with Reno: the window halves at each loss",
            bulk.bulk_shaping, routed=True, capture_at="client",
        ),
        NetworkScenario(
            "zero-window", flow.zero_window,
            "two hosts: the server stops reading: zero window, persist probes, window update",
            _drops(), sysctls=flow.ZW_SYSCTLS,
        ),
        NetworkScenario(
            "nagle", flow.nagle,
            "two hosts: small write-write-read requests with Nagle, then with TCP_NODELAY",
            _drops(),
        ),
        NetworkScenario(
            "keepalive", flow.keepalive,
            "two hosts: an idle connection with 1-second keepalive timers: probes and ACKs",
            _drops(),
        ),
        NetworkScenario(
            "craft-handshake", craft.craft_handshake,
            "two hosts: scapy's handshake and PING by hand; the client's RSTs dropped",
            _drops(Drop("rst", 0, C2S, at="egress")),
        ),
        NetworkScenario(
            "craft-handshake-rst", craft.craft_handshake_rst,
            "two hosts: scapy's handshake without the rule: the client's kernel sends RST",
            _drops(),
        ),
    )
}  # fmt: skip


def names() -> list[str]:
    """The lab network's scenario names, in teaching order."""
    return list(SCENARIOS)


def get(name: str) -> NetworkScenario:
    """The lab-network scenario called ``name``.

    Raises:
        KeyError: no such scenario (the message lists the known ones).
    """
    return by_name(SCENARIOS, name, "network scenario")


# --------------------------------------------------------------------------------------------
# Capturing them
# --------------------------------------------------------------------------------------------


def _capture_one(name: str, directory: Path, mode: CaptureMode, port: int, pause: float) -> dict:
    """Build the network, run the scenario with a sniffer on its capture interface, write."""
    spec = get(name)
    shaping = spec.shaping(port)
    network_cls = RoutedNetwork if spec.routed else LabNetwork
    iface = SERVER_IFACE if spec.capture_at == "server" else CLIENT_IFACE
    with (
        tempfile.TemporaryDirectory(prefix=f"labchat-{name}-") as tmp,
        network_cls(shaping, port=port, sysctls=spec.sysctls) as net,
    ):
        # Frames kept raw: the capture only writes them to a file, and a bulk transfer is
        # thousands of frames a second, more than scapy can dissect as they come.
        sniffer = Sniffer(iface, port, dissect=False)
        t0 = time.monotonic()
        # The sniffer thread opens its socket on the host it starts on.
        with net.server() if spec.capture_at == "server" else net.client():
            sniffer.start()
        try:
            run = spec.func(net, Path(tmp), port=port, pause=pause)
            packets = sniffer.stop()
        finally:
            sniffer.__exit__(None, None, None)
        elapsed = time.monotonic() - t0
        dropped = net.dropped()
        link = net.describe()
        # Inside the with: the scenario's extra files live in its temporary directory.
        return save_capture(
            directory, name, packets=packets, sniffer=sniffer, description=spec.description,
            parameters={"port": port, "pause": pause}, network={**link, "dropped": dropped},
            run=run, server_port=port, mode=mode, seconds=elapsed, keylog=None,
            comment=f"labchat scenario {name} (lab network, captured on {iface})",
        )  # fmt: skip


def capture_here(
    names: Sequence[str], dirs: Sequence[Path], mode: CaptureMode, params: dict[str, Any]
) -> list[dict]:
    """Capture each scenario on its own lab network: the `labchat.capture.child.Job` of the lab
    network. ``params``: ``port`` (the server's) and ``pause`` (seconds between steps).
    """
    port = int(params.get("port", DEFAULT_PORT))
    pause = float(params.get("pause", PAUSE))
    return [_capture_one(n, d, mode, port, pause) for n, d in zip(names, dirs, strict=True)]


def _choose_mode(mode: str) -> CaptureMode:
    """private (live) or offline: the lab network needs namespaces, host mode cannot build it."""
    if mode == "host":
        raise CaptureError(
            "the lab network is built in a private user + network namespace; host mode "
            "(host loopback) cannot carry it: use mode='private' or 'offline'"
        )
    chosen = detect_mode(mode)
    if chosen.name == "host":  # auto picked host: private was not possible, go offline
        why = chosen.unavailable.get("private", "private namespaces are not available")
        offline_why = offline_unavailable()
        if offline_why is not None:
            raise CaptureError(f"no way to get packets: private: {why}; {offline_why}")
        return CaptureMode(
            "offline",
            "the lab network needs a private namespace, using the shipped reference captures",
            {"private": why, "host": "host loopback cannot carry a two-host network"},
        )
    return chosen


def run_scenarios(
    names: Sequence[str], out: str | Path, *, mode: str = "auto", port: int = DEFAULT_PORT,
    pause: float = PAUSE,
) -> list[CaptureResult]:  # fmt: skip
    """Capture several lab-network scenarios into ``out/<name>/``.

    Args:
        names: scenario names (see `SCENARIOS`).
        out: parent directory.
        mode: ``auto`` (private, else the shipped captures), ``private`` or ``offline``.
        port: the server's port.
        pause: seconds between steps.

    Returns:
        One `labchat.capture.CaptureResult` per scenario; ``.mode`` says how and why.

    Raises:
        KeyError: unknown scenario.
        labchat.capture.CaptureError: the capture failed or the mode is unavailable.
    """
    for name in names:
        get(name)
    return _run(names, [Path(out) / name for name in names], mode, port, pause)


def run_scenario(
    name: str,
    out: str | Path | None = None,
    *,
    mode: str = "auto",
    port: int = DEFAULT_PORT,
    pause: float = PAUSE,
) -> CaptureResult:
    """Run one lab-network scenario and capture it on the server's interface.

    Args:
        name: ``syn-retry``, ``lost-segment``, ``slow-link``, ``lost-fin``, ``craft-handshake``
            or ``craft-handshake-rst``.
        out: directory for capture.pcapng and manifest.json (a new temporary one if None).
        mode: ``auto``, ``private`` or ``offline``.
        port: the server's port.
        pause: seconds between steps.

    Returns:
        The `labchat.capture.CaptureResult`.
    """
    get(name)
    directory = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"labchat-{name}-"))
    return _run([name], [directory], mode, port, pause)[0]


def _run(
    names: Sequence[str], dirs: Sequence[Path], mode: str, port: int, pause: float
) -> list[CaptureResult]:
    chosen = _choose_mode(mode)
    if chosen.name == "offline":
        return copy_references(names, dirs, chosen)
    params = {"port": port, "pause": pause}
    run_private("labchat.capture.network:capture_here", names, dirs, chosen, params,
                label="lab network capture")  # fmt: skip
    return [CaptureResult.from_directory(d, chosen) for d in dirs]


if __name__ == "__main__":  # python -m labchat.capture.network: see labchat.cli.capture
    from labchat.cli.capture import network_main

    sys.exit(network_main())
