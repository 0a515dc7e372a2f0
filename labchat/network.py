"""Scenarios on the lab network: lost SYNs, lost segments, a slow link, a handshake by hand.

The network itself -- two hosts in private network namespaces, joined by a 1500-byte veth
link that can be rate-limited and made lossy -- is built by :mod:`labchat.netns`. This module
scripts what happens on it, runs the scripts in a private user namespace the way
:func:`labchat.capture.run_scenario` does (captured on the server's interface), and falls back
to the shipped captures in ``captures/<name>/`` when namespaces are not available.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import capture
from .netns import (  # noqa: F401  (re-exported: the lab network's addresses and tools)
    C2S,
    CLIENT_IFACE,
    CLIENT_IP,
    DEFAULT_PORT,
    MTU,
    S2C,
    SERVER_IFACE,
    SERVER_IP,
    Drop,
    LabNetwork,
    NetworkError,
    Shaping,
    _match,
    _nft_script,
    _unshare,
    features,
)
from .scenarios import ScenarioRun

__all__ = [
    "CLIENT_IP",
    "SERVER_IP",
    "MTU",
    "NetworkError",
    "NetworkScenario",
    "SCENARIOS",
    "features",
    "names",
    "handshake_by_hand",
    "main",
    "run_scenario",
    "run_scenarios",
]

_PKG_ROOT = Path(__file__).resolve().parent.parent
_CHILD_TIMEOUT_S = 120.0
_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------------
# Scenarios on the lab network
# --------------------------------------------------------------------------------------------

PAUSE = 0.03


@dataclass(frozen=True)
class NetworkScenario:
    """A scenario on the two-host network: ``func(net, work, *, port, pause)`` and its link."""

    name: str
    func: Callable[..., ScenarioRun]
    description: str
    shaping: Callable[[int], Shaping]
    notes: str = ""


def _readline(sock: socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


class _Sink(threading.Thread):
    """Accept one connection, read until EOF, answer ``OK <bytes>``, close."""

    def __init__(self, port: int, reply: bytes | None = None, rcvbuf: int | None = None):
        super().__init__(name="lab-sink", daemon=True)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            # Before listen(): accepted sockets inherit it, and the window they offer in
            # their SYN-ACK is then already as large as it will ever get.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind((SERVER_IP, port))
        self.listener.listen(1)
        self.listener.settimeout(_TIMEOUT)
        self.reply = reply
        self.received = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(_TIMEOUT)
                while chunk := conn.recv(65536):
                    self.received += len(chunk)
                conn.sendall(self.reply or f"OK {self.received}\n".encode())
        except BaseException as exc:  # re-raised by finish()
            self.error = exc
        finally:
            self.listener.close()

    def finish(self) -> int:
        self.join(_TIMEOUT * 2)
        if self.is_alive():
            raise TimeoutError("lab sink did not finish")
        if self.error is not None:
            raise self.error
        return self.received


def _sink(
    net: LabNetwork, port: int, reply: bytes | None = None, rcvbuf: int | None = None
) -> _Sink:
    with net.server():
        sink = _Sink(port, reply, rcvbuf)
        sink.start()
    return sink


def _send_and_close(
    net: LabNetwork, port: int, payload: bytes, pause: float, *, chunk: int = 0, gap: float = 0.0
) -> bytes:
    """Client: connect, send ``payload``, half-close, read the answer to EOF.

    ``chunk``/``gap``: write ``chunk`` bytes at a time, ``gap`` seconds apart (0: one sendall).
    """
    with net.client():
        sock = socket.create_connection((SERVER_IP, port), timeout=_TIMEOUT)
    with sock:
        time.sleep(pause)
        if chunk:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(payload), chunk):
                sock.sendall(payload[i : i + chunk])
                time.sleep(gap)
        else:
            sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while data := sock.recv(4096):
            answer += data
    return answer


def syn_retry(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """The client's first SYN is lost; connect() waits one initial RTO (1 s) and resends it."""
    from labchat.auth import UserStore
    from labchat.server import Server

    users = UserStore(work / "users.json")
    with net.server():  # the listener, and the threads it starts, on the server host
        server = Server(SERVER_IP, port, plain=True, users=users).start()
    with server:
        with net.client():
            t0 = time.monotonic()
            sock = socket.create_connection((SERVER_IP, port), timeout=_TIMEOUT)
        took = time.monotonic() - t0
        with sock:
            sock.settimeout(_TIMEOUT)
            hello = _readline(sock).decode().strip()
            time.sleep(pause)
            sock.sendall(b"PING syn-retry\n")
            pong = _readline(sock).decode().strip()
            time.sleep(pause)
        time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "server", "line": hello},
            {"from": "client", "line": "PING syn-retry"},
            {"from": "server", "line": pong},
        ],
        server={"host": SERVER_IP, "port": port, "role": "server", "program": "labchat serve"},
        clients=[{"role": "client", "host": CLIENT_IP, "connect_seconds": round(took, 3)}],
        notes=(
            f"The first SYN never arrives; connect() returned after {took:.2f} s, when the "
            "SYN was sent again after the initial retransmission timeout (1 s, RFC 6298 2.1)."
        ),
    )


#: lost-segment: how much the client sends in one go, and which data segment is lost.
# How the client writes the burst: 6 segments per write, 5 ms apart. One big sendall() keeps
# the socket locked while the ACKs arrive; they wait in the socket's backlog and the client
# reacts only after 8-10 of them. Short writes let it handle each ACK as it comes.
LS_CHUNK, LS_GAP = 6 * 1448, 0.005
# The server's receive buffer, fixed before listen(): its window is then at its final size from
# the SYN-ACK on. Otherwise the window grows with the first ACKs, and Wireshark (like RFC 5681's
# definition) does not count an ACK that changes the window as a duplicate.
LS_RCVBUF = 8192
#: TCP payload per full segment: MSS 1460 less the 12-byte timestamp option.
SEGMENT = 1448
BURST_BYTES = 20 * SEGMENT
LOST_SEGMENT = 3


def lost_segment(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """20 segments of data; the 3rd is lost: three duplicate ACKs with SACK, fast retransmit."""
    lines = b"".join(f"{i:05d} of a burst of lines, MSS-sized segments\n".encode()
                     for i in range(BURST_BYTES // 40 + 1))  # fmt: skip
    payload = lines[:BURST_BYTES]
    sink = _sink(net, port, rcvbuf=LS_RCVBUF)
    answer = _send_and_close(net, port, payload, pause, chunk=LS_CHUNK, gap=LS_GAP)
    got = sink.finish()
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": f"<{len(payload)} bytes in one sendall()>"},
            {"from": "server", "line": answer.decode().strip()},
        ],
        server={"host": SERVER_IP, "port": port, "role": "server", "received": got},
        clients=[{"role": "client", "host": CLIENT_IP, "sent": len(payload)}],
        notes=(
            f"Data segment {LOST_SEGMENT} is lost on the link: the server ACKs every later "
            "segment with the same ACK number plus a SACK block; after (at least) three "
            "duplicate ACKs the client resends the missing segment without waiting for its "
            "timer: fast retransmit (RFC 5681 3.2; Linux decides with RACK, RFC 8985)."
        ),
    )


SLOW_RATE = "4mbit"
SLOW_BYTES = 96 * 1024


def slow_link(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """The server sends a large message over a 4 Mbit/s link: MSS-sized segments, paced."""
    request = b"send me the large message\n"
    payload = (b"a large message over a slow link. " * (SLOW_BYTES // 34 + 1))[:SLOW_BYTES]
    got: dict[str, Any] = {}

    def serve(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(_TIMEOUT)
            got["request"] = _readline(conn)
            conn.sendall(payload)  # the capture point is the sender's: RTTs are end to end

    with net.server():
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SERVER_IP, port))
        listener.listen(1)
        listener.settimeout(_TIMEOUT)
        peer = threading.Thread(target=serve, args=(listener,), name="lab-source", daemon=True)
        peer.start()
    t0 = time.monotonic()
    try:
        with net.client():
            sock = socket.create_connection((SERVER_IP, port), timeout=_TIMEOUT)
        with sock:
            time.sleep(pause)
            sock.sendall(request)
            received = 0
            while data := sock.recv(65536):
                received += len(data)
        took = time.monotonic() - t0
        peer.join(_TIMEOUT)
    finally:
        listener.close()
    if received != len(payload):
        raise NetworkError(f"slow-link: the client received {received} of {len(payload)} bytes")
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": request.decode().strip()},
            {"from": "server", "line": f"<{len(payload)} bytes in one sendall()>"},
        ],
        server={"host": SERVER_IP, "port": port, "role": "server", "sent": len(payload)},
        clients=[
            {"role": "client", "host": CLIENT_IP, "received": received, "seconds": round(took, 3)}
        ],  # fmt: skip
        notes=(
            f"{len(payload)} bytes leave the server as 1448-byte segments (MSS 1460 less 12 "
            f"bytes of timestamps) at {SLOW_RATE}/s: the client's ACKs come back paced by the "
            "bottleneck, the queue in front of it makes the RTT grow, and the bytes in flight "
            "follow the congestion window."
        ),
    )


def lost_fin(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """The client's FIN is lost; it is sent again when the retransmission timer fires."""
    request = b"one line, then I close\n"
    sink = _sink(net, port, reply=b"bye\n")
    answer = _send_and_close(net, port, request, pause)
    sink.finish()
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": request.decode().strip()},
            {"from": "server", "line": answer.decode().strip()},
        ],
        server={"host": SERVER_IP, "port": port, "role": "server"},
        clients=[{"role": "client", "host": CLIENT_IP, "close": "shutdown(SHUT_WR)"}],
        notes=(
            "The client's FIN is lost: nothing is left to trigger duplicate ACKs, so only the "
            "retransmission timer (RTO = SRTT + 4 RTTVAR, at least 200 ms on Linux) resends it."
        ),
    )


def _drops(*drops: Drop) -> Callable[[int], Shaping]:
    return lambda port: Shaping(drops=drops)


SCENARIOS: dict[str, NetworkScenario] = {
    s.name: s
    for s in (
        NetworkScenario(
            "syn-retry", syn_retry, "two hosts: the first SYN is lost, resent after 1 s",
            _drops(Drop("syn", 1, C2S)),
        ),
        NetworkScenario(
            "lost-segment", lost_segment,
            "two hosts: one data segment of a burst lost: dup ACKs, SACK, fast retransmit",
            _drops(Drop("data", LOST_SEGMENT, C2S)),
        ),
        NetworkScenario(
            "slow-link", slow_link, f"two hosts, {SLOW_RATE}/s: a large reply in MSS segments",
            lambda port: Shaping(rate=SLOW_RATE),
        ),
        NetworkScenario(
            "lost-fin", lost_fin, "two hosts: the client's FIN is lost, resent on timeout",
            _drops(Drop("fin", 1, C2S)),
        ),
    )
}  # fmt: skip


def names() -> list[str]:
    """The lab network's scenario names, in teaching order."""
    return list(SCENARIOS)


def _get(name: str) -> NetworkScenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(
            f"unknown network scenario {name!r}; known: {', '.join(SCENARIOS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Capturing them
# --------------------------------------------------------------------------------------------


def _capture_here(name: str, directory: Path, mode: capture.CaptureMode, port: int,
                  pause: float) -> dict:  # fmt: skip
    """Build the network, run the scenario with a sniffer on the server's interface, write."""
    spec = _get(name)
    shaping = spec.shaping(port)
    with (
        tempfile.TemporaryDirectory(prefix=f"labchat-{name}-") as tmp,
        LabNetwork(shaping, port=port) as net,
    ):
        sniffer = capture.Sniffer(SERVER_IFACE, port)
        t0 = time.monotonic()
        with net.server():  # the sniffer thread opens its socket on the server host
            sniffer.start()
        try:
            run = spec.func(net, Path(tmp), port=port, pause=pause)
            packets = sniffer.stop()
        finally:
            sniffer.__exit__(None, None, None)
        elapsed = time.monotonic() - t0
        dropped = net.dropped()
        link = net.describe()
    manifest = {
        "scenario": name,
        "description": spec.description,
        "parameters": {"port": port, "pause": pause},
        "network": {**link, "dropped": dropped},
        "server": run.server,
        "clients": run.clients,
        "connections": [
            {"role": c.get("role", "client"), "client_port": p, "server_port": port}
            for c, p in zip(run.clients, _client_ports(packets, port), strict=False)
        ],
        "tls": None,
        "transcript": run.transcript,
        "notes": run.notes,
        "capture": {
            "mode": mode.name,
            "reason": mode.reason,
            "method": sniffer.method,
            "iface": SERVER_IFACE,
            "filter": sniffer.bpf,
            "packets": len(packets),
            "seconds": round(elapsed, 3),
            "keylog": None,
            "decryption_secrets_block": False,
        },
        "versions": capture.versions(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys.log").unlink(missing_ok=True)
    capture.write_pcapng(
        directory / "capture.pcapng", packets, iface=SERVER_IFACE,
        comment=f"labchat scenario {name} (lab network, captured on {SERVER_IFACE})",
    )  # fmt: skip
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _client_ports(packets: Sequence[Any], port: int) -> list[int]:
    from scapy.layers.inet import TCP

    ports: list[int] = []
    for p in packets:
        if TCP in p and p[TCP].dport == port and (int(p[TCP].flags) & 0x12) == 0x02:
            if p[TCP].sport not in ports:
                ports.append(p[TCP].sport)
    return ports


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the child inside the private user + network namespace."""
    import argparse

    parser = argparse.ArgumentParser(prog="labchat-network-child")
    parser.add_argument("--result", required=True)
    parser.add_argument("--mode-json", required=True)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--pause", type=float, default=PAUSE)
    parser.add_argument("pairs", nargs="+", help="NAME=DIR")
    args = parser.parse_args(argv)
    try:
        mode = capture.CaptureMode(**json.loads(args.mode_json))
        manifests = []
        for pair in args.pairs:
            name, directory = pair.split("=", 1)
            manifests.append(_capture_here(name, Path(directory), mode, args.port, args.pause))
        result: dict[str, Any] = {"ok": True, "manifests": manifests}
    except Exception as exc:  # reported to the parent as one line
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(args.result).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


def _run_private(names: Sequence[str], dirs: Sequence[Path], mode: capture.CaptureMode,
                 port: int, pause: float) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="labchat-network-") as tmp:
        result_file = Path(tmp) / "result.json"
        os.chmod(tmp, 0o777)  # writable by the child even when it runs as another user
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        argv = [
            *_unshare(), sys.executable, "-c",
            "import sys; from labchat.network import _child_main; "
            "sys.exit(_child_main(sys.argv[1:]))",
            "--result", str(result_file), "--mode-json", json.dumps(asdict(mode)),
            "--port", str(port), "--pause", str(pause),
            *(f"{n}={d.resolve()}" for n, d in zip(names, dirs, strict=True)),
        ]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_PKG_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S,
                                  env=env)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise capture.CaptureError(
                f"lab network child timed out after {exc.timeout} s"
            ) from None
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            if not result.get("ok"):
                raise capture.CaptureError(f"lab network capture failed: {result['error']}")
            return
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise capture.CaptureError(f"lab network child failed before reporting: {tail}")


def _offline(names: Sequence[str], dirs: Sequence[Path], mode: capture.CaptureMode
             ) -> list[capture.CaptureResult]:  # fmt: skip
    results = []
    for name, d in zip(names, dirs, strict=True):
        ref = capture.load_reference(name)
        d.mkdir(parents=True, exist_ok=True)
        for f in ("capture.pcapng", "manifest.json"):
            src = ref.directory / f
            if src.resolve() != (d / f).resolve():
                shutil.copyfile(src, d / f)
        results.append(capture.CaptureResult.from_directory(d, mode))
    return results


def _choose_mode(mode: str) -> capture.CaptureMode:
    """private (live) or offline: the lab network needs namespaces, host mode cannot build it."""
    if mode == "host":
        raise capture.CaptureError(
            "the lab network is built in a private user + network namespace; host mode "
            "(host loopback) cannot carry it: use mode='private' or 'offline'"
        )
    chosen = capture.detect_mode(mode)
    if chosen.name == "host":  # auto picked host: private was not possible, go offline
        why = chosen.unavailable.get("private", "private namespaces are not available")
        offline_why = capture._offline_unavailable()
        if offline_why is not None:
            raise capture.CaptureError(f"no way to get packets: private: {why}; {offline_why}")
        return capture.CaptureMode(
            "offline",
            "the lab network needs a private namespace, using the shipped reference captures",
            {"private": why, "host": "host loopback cannot carry a two-host network"},
        )
    return chosen


def run_scenarios(
    names: Sequence[str], out: str | Path, *, mode: str = "auto", port: int = DEFAULT_PORT,
    pause: float = PAUSE,
) -> list[capture.CaptureResult]:  # fmt: skip
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
        _get(name)
    dirs = [Path(out) / name for name in names]
    chosen = _choose_mode(mode)
    if chosen.name == "offline":
        return _offline(names, dirs, chosen)
    _run_private(names, dirs, chosen, port, pause)
    return [capture.CaptureResult.from_directory(d, chosen) for d in dirs]


def run_scenario(
    name: str,
    out: str | Path | None = None,
    *,
    mode: str = "auto",
    port: int = DEFAULT_PORT,
    pause: float = PAUSE,
) -> capture.CaptureResult:
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
    _get(name)
    directory = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"labchat-{name}-"))
    chosen = _choose_mode(mode)
    if chosen.name == "offline":
        return _offline([name], [directory], chosen)[0]
    _run_private([name], [directory], chosen, port, pause)
    return capture.CaptureResult.from_directory(directory, chosen)


# --------------------------------------------------------------------------------------------
# A handshake by hand
# --------------------------------------------------------------------------------------------

#: The crafting client's source port and initial sequence number (fixed: easy to follow).
CRAFT_SPORT = 40000
CRAFT_ISN = 1000


def handshake_by_hand(
    server: str = SERVER_IP,
    port: int = DEFAULT_PORT,
    *,
    sport: int = CRAFT_SPORT,
    isn: int = CRAFT_ISN,
    line: bytes = b"PING by hand\n",
    iface: str = CLIENT_IFACE,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Open a TCP connection with scapy, one segment at a time, and talk labchat/1 over it.

    Runs on the client host (a process in the client's namespace). No socket is involved: the
    segments are built by hand and sent through a packet socket, so the client's kernel knows
    nothing about this connection. It answers the server's SYN-ACK with a RST (RFC 9293
    section 3.10.7.1: a segment for a connection that does not exist), unless a firewall rule
    drops the client's outgoing RSTs.

    Returns:
        What happened: ``synack`` fields, the ``lines`` the server sent, ``rst_seen`` (the
        server reset us) and ``kernel_rsts`` (RSTs the client's kernel got onto the wire).
    """
    import logging

    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    from scapy.config import conf
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer, send, sr1

    conf.verb = 0
    got: list[Any] = []
    arrived = threading.Event()

    def keep(pkt: Any) -> None:
        got.append(pkt)
        arrived.set()

    def ours(pkt: Any) -> bool:
        return TCP in pkt and pkt[TCP].sport == port and pkt[TCP].dport == sport

    def kernel_rst(pkt: Any) -> bool:  # the client's kernel, not us: we never send RST here
        return TCP in pkt and pkt[TCP].sport == sport and "R" in str(pkt[TCP].flags)

    rsts: list[Any] = []
    started = threading.Event()
    sniffer = AsyncSniffer(
        iface=iface, store=False, started_callback=started.set,
        prn=lambda p: keep(p) if ours(p) else (rsts.append(p) if kernel_rst(p) else None),
    )  # fmt: skip
    sniffer.start()
    started.wait(timeout)
    ip = IP(dst=server)
    out: dict[str, Any] = {"sport": sport, "isn": isn, "sent": [], "lines": [], "rst_seen": False}

    def tx(seg: Any) -> None:
        out["sent"].append(seg.sprintf("%TCP.flags% seq=%TCP.seq% ack=%TCP.ack%")
                           + (f" len={len(seg[Raw].load)}" if Raw in seg else ""))  # fmt: skip
        send(seg)

    # 1. SYN -> SYN-ACK. sr1 sends and waits for the answer.
    syn = ip / TCP(sport=sport, dport=port, flags="S", seq=isn, options=[("MSS", 1460)])
    out["sent"].append(syn.sprintf("%TCP.flags% seq=%TCP.seq%"))
    synack = sr1(syn, timeout=timeout)
    if synack is None or TCP not in synack:
        sniffer.stop()
        out["error"] = "no SYN-ACK"
        return out
    out["synack"] = {
        "flags": str(synack[TCP].flags), "seq": synack[TCP].seq, "ack": synack[TCP].ack,
        "window": synack[TCP].window, "options": [str(o[0]) for o in synack[TCP].options],
    }  # fmt: skip
    mine, theirs = isn + 1, synack[TCP].seq + 1
    # 2. ACK: the handshake is complete (for the server).
    tx(ip / TCP(sport=sport, dport=port, flags="A", seq=mine, ack=theirs))
    # 3. A labchat/1 line.
    tx(ip / TCP(sport=sport, dport=port, flags="PA", seq=mine, ack=theirs) / Raw(line))
    mine += len(line)
    # 4. Read what the server sends (HELLO, then PONG), acknowledging each segment.
    buffer = b""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline and buffer.count(b"\n") < 2 and not out["rst_seen"]:
        arrived.wait(0.05)
        arrived.clear()
        for pkt in got[seen:]:
            seen += 1
            seg = pkt[TCP]
            if "R" in str(seg.flags):
                out["rst_seen"] = True
                break
            data = bytes(seg.payload) if Raw in seg else b""
            if data and seg.seq == theirs:
                buffer += data
                theirs += len(data)
                tx(ip / TCP(sport=sport, dport=port, flags="A", seq=mine, ack=theirs))
    out["lines"] = [x.decode(errors="replace") for x in buffer.split(b"\n") if x]
    # 5. Close: our FIN, the server's FIN, our last ACK.
    if not out["rst_seen"] and "synack" in out:
        tx(ip / TCP(sport=sport, dport=port, flags="FA", seq=mine, ack=theirs))
        mine += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            arrived.wait(0.05)
            arrived.clear()
            fin = next((p for p in got[seen:] if "F" in str(p[TCP].flags)), None)
            if fin is not None:
                theirs = fin[TCP].seq + len(bytes(fin[TCP].payload)) + 1
                tx(ip / TCP(sport=sport, dport=port, flags="A", seq=mine, ack=theirs))
                break
    time.sleep(0.1)
    sniffer.stop()
    out["kernel_rsts"] = len(rsts)
    return out


def _craft_main(argv: Sequence[str]) -> int:
    """``python -c`` entry point on the client host: run `handshake_by_hand`, print JSON."""
    port = int(argv[0]) if argv else DEFAULT_PORT
    print(json.dumps(handshake_by_hand(SERVER_IP, port)))
    return 0


def _craft(net: LabNetwork, work: Path, *, port: int, pause: float, firewall: bool) -> ScenarioRun:
    from labchat.auth import UserStore
    from labchat.server import Server

    users = UserStore(work / "users.json")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_PKG_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    code = (
        "import sys; from labchat.network import _craft_main; sys.exit(_craft_main(sys.argv[1:]))"
    )
    with net.server():
        server = Server(SERVER_IP, port, plain=True, users=users).start()
    with server:
        time.sleep(pause)
        # A whole process on the client host: scapy reads that host's routes and interfaces.
        proc = net.client_command(
            [sys.executable, "-c", code, str(port)], capture_output=True, text=True,
            timeout=60, env=env,
        )  # fmt: skip
        time.sleep(pause)
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise NetworkError(f"crafting the handshake failed: {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    transcript = [{"from": "client", "line": "PING by hand"}]
    transcript += [{"from": "server", "line": x} for x in result.get("lines", [])]
    if firewall:
        notes = (
            "scapy sends SYN, ACK and a PING line; the client's kernel would answer the "
            "SYN-ACK with RST (it has no socket on that port), but the rule "
            f"'{_match(Drop('rst', 0, C2S, 'egress'), port)[0]} drop' in its output hook stops "
            "it, so the server's HELLO and PONG arrive."
        )
    else:
        notes = (
            "No firewall rule: the client's kernel answers the SYN-ACK with RST, the server "
            "forgets the half-open connection, and resets the crafted ACK and PING too."
        )
    return ScenarioRun(
        transcript=transcript,
        server={
            "host": SERVER_IP,
            "port": port,
            "role": "server",
            "program": "labchat serve --plain",
        },
        clients=[{"role": "scapy", "host": CLIENT_IP, "firewall": firewall, **result}],
        notes=notes,
    )


def craft_handshake(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """scapy does the three-way handshake and a PING by hand; a rule drops the kernel's RST."""
    return _craft(net, work, port=port, pause=pause, firewall=True)


def craft_handshake_rst(
    net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE
) -> ScenarioRun:
    """The same without the firewall rule: the client's kernel resets the crafted connection."""
    return _craft(net, work, port=port, pause=pause, firewall=False)


SCENARIOS["craft-handshake"] = NetworkScenario(
    "craft-handshake", craft_handshake,
    "two hosts: scapy's handshake and PING by hand; the client's RSTs dropped",
    _drops(Drop("rst", 0, C2S, at="egress")),
)  # fmt: skip
SCENARIOS["craft-handshake-rst"] = NetworkScenario(
    "craft-handshake-rst", craft_handshake_rst,
    "two hosts: scapy's handshake without the rule: the client's kernel sends RST",
    _drops(),
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# python -m labchat.network
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labchat.network [list | features | NAME... | --all] [--out DIR] [--mode M]``.

    Errors are one line on stderr and exit status 2.
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m labchat.network",
        description="Capture the lab network's scenarios (two hosts, a 1500-byte link), "
        "list them, or show which shaping features this kernel has.",
    )
    parser.add_argument("targets", nargs="*", metavar="NAME", help="scenario, 'list' or 'features'")
    parser.add_argument("--all", action="store_true", help="every scenario, into DIR/<name>/")
    parser.add_argument("--out", metavar="DIR", help="output directory")
    parser.add_argument("--mode", choices=("auto", "private", "offline"), default="auto")
    args = parser.parse_args(argv)
    if args.targets == ["list"]:
        for s in SCENARIOS.values():
            shipped = (capture.reference_dir() / s.name / "capture.pcapng").is_file()
            print(f"  {s.name:<20} {s.description} [{'reference' if shipped else 'no reference'}]")
        return 0
    if args.targets == ["features"]:
        print(json.dumps(features(), indent=2))
        return 0
    names = list(SCENARIOS) if args.all else args.targets
    unknown = [n for n in names if n not in SCENARIOS]
    if not names or unknown or not args.out:
        if unknown:
            why = f"unknown scenario {unknown[0]!r}"
        elif not names:
            why = "name scenarios (or --all)"
        else:
            why = "--out DIR is required"
        print(f"labchat.network: error: {why}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    try:
        results = run_scenarios(names, args.out, mode=args.mode)
    except (capture.CaptureError, NetworkError, OSError) as exc:
        print(f"labchat.network: error: {exc}", file=sys.stderr)
        return 2
    print(f"capture mode: {results[0].mode.name} ({results[0].mode.reason})")
    for r in results:
        print(f"{r.scenario}: {r.manifest['capture']['packets']} packets -> {r.pcap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
