"""A TCP handshake by hand: scapy plays the client, segment by segment, against a real server.

`handshake_by_hand` runs on the client host of the lab network (a process in its namespace);
the ``craft-handshake`` scenarios run it against ``labchat serve --plain`` on the server host,
with and without a firewall rule that keeps the client kernel's RST off the wire.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .child import child_env
from .netns import CLIENT_IFACE, CLIENT_IP, DEFAULT_PORT, SERVER_IP, LabNetwork, NetworkError
from .scenarios import PAUSE, ScenarioRun
from .shaping import C2S, Drop, nft_match

__all__ = [
    "CRAFT_ISN",
    "CRAFT_SPORT",
    "craft_handshake",
    "craft_handshake_rst",
    "craft_main",
    "handshake_by_hand",
]

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


def craft_main(argv: Sequence[str]) -> int:
    """``python -c`` entry point on the client host: run `handshake_by_hand`, print JSON."""
    port = int(argv[0]) if argv else DEFAULT_PORT
    print(json.dumps(handshake_by_hand(SERVER_IP, port)))
    return 0


def _craft(net: LabNetwork, work: Path, *, port: int, pause: float, firewall: bool) -> ScenarioRun:
    from labchat.auth import UserStore
    from labchat.server import Server

    users = UserStore(work / "users.json")
    code = (
        "import sys; from labchat.capture.craft import craft_main; "
        "sys.exit(craft_main(sys.argv[1:]))"
    )
    with net.server():
        server = Server(SERVER_IP, port, plain=True, users=users).start()
    with server:
        time.sleep(pause)
        # A whole process on the client host: scapy reads that host's routes and interfaces.
        proc = net.client_command(
            [sys.executable, "-c", code, str(port)], capture_output=True, text=True,
            timeout=60, env=child_env(),
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
            f"'{nft_match(Drop('rst', 0, C2S, 'egress'), port)[0]} drop' in its output hook stops "
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
