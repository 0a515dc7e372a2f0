"""Lab-network scenarios on a lossy or slow link: a lost SYN, segment or FIN, a slow link.

Each one is ``func(net, work, *, port, pause) -> ScenarioRun``: it runs on a started
`labchat.capture.netns.LabNetwork` whose link `labchat.capture.network.SCENARIOS` shapes, with
a server on the server host (10.77.0.2) and a client on the client host (10.77.0.1).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .netns import CLIENT_IP, SERVER_IP, LabNetwork, NetworkError
from .scenarios import PAUSE, TIMEOUT, Peer, ScenarioRun

__all__ = [
    "BURST_BYTES",
    "LOST_SEGMENT",
    "SEGMENT",
    "SLOW_BYTES",
    "SLOW_RATE",
    "lost_fin",
    "lost_segment",
    "sink",
    "slow_link",
    "syn_retry",
]


def _readline(sock: socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def sink(
    net: LabNetwork, port: int, reply: bytes | None = None, rcvbuf: int | None = None
) -> Callable[[], int]:
    """On the server host: accept one connection, read until EOF, answer ``OK <bytes>``, close.

    Args:
        net: the lab network (its ``server_ip`` is where the sink listens).
        port: the port to listen on.
        reply: what to answer instead of ``OK <bytes>``.
        rcvbuf: the listener's SO_RCVBUF (see `labchat.capture.scenarios.listener`).

    Returns:
        A function that waits for the sink to finish and returns how many bytes it received.
    """
    received = 0

    def body(conn: socket.socket) -> None:
        nonlocal received
        while chunk := conn.recv(65536):
            received += len(chunk)
        conn.sendall(reply or f"OK {received}\n".encode())

    with net.server():
        peer = Peer.serving(net.server_ip, port, body, rcvbuf=rcvbuf, name="lab-sink")

    def finish() -> int:
        peer.finish(2 * TIMEOUT)
        return received

    return finish


def _send_and_close(
    net: LabNetwork, port: int, payload: bytes, pause: float, *,
    writes: Sequence[int] = (), gap: float = 0.0,
) -> bytes:  # fmt: skip
    """Client: connect, send ``payload``, half-close, read the answer to EOF.

    ``writes``: send the payload in writes of these many bytes, ``gap`` seconds apart, each
    sent at once (TCP_NODELAY); empty: one sendall().
    """
    with net.client():
        sock = socket.create_connection((net.server_ip, port), timeout=TIMEOUT)
    with sock:
        time.sleep(pause)
        if writes:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = 0
            for n in writes:
                sock.sendall(payload[sent : sent + n])
                sent += n
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
            sock = socket.create_connection((SERVER_IP, port), timeout=TIMEOUT)
        took = time.monotonic() - t0
        with sock:
            sock.settimeout(TIMEOUT)
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


#: TCP payload per full segment: MSS 1460 less the 12-byte timestamp option.
SEGMENT = 1448
BURST_BYTES = 20 * SEGMENT
LOST_SEGMENT = 3
# How the client writes the burst, in segments: the two before the loss; then the lost one and
# exactly three more (three duplicate ACKs); then the rest, six at a time. Each write is sent at
# once (TCP_NODELAY) and LS_GAP apart, so the client handles each group's ACKs before the next
# (one big sendall() keeps its socket locked while ACKs queue in its backlog).
LS_WRITES = (2, 4, 6, 6, 2)
LS_GAP = 0.005
# The server's receive buffer, fixed before listen(): its window is then at its final size (five
# segments) from the SYN-ACK on. Otherwise the window grows with the first ACKs, and Wireshark
# (like RFC 5681's definition) does not count an ACK that changes the window as a duplicate.
# (TCP_WINDOW_CLAMP does not do it: Linux 6.x recomputes the clamp from the buffer.)
LS_RCVBUF = 8192
#: lost-segment runs the client with tail loss probes off (net.ipv4.tcp_early_retrans = 0):
#: on a busy machine the server's last ACK can come later than the probe timeout (2 SRTT plus a
#: few ms), and a probe would resend the tail, a second and spurious "lost" segment.
LS_SYSCTLS = {"client": {"net.ipv4.tcp_early_retrans": "0"}}


def lost_segment(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """20 segments of data; the 3rd is lost: three duplicate ACKs with SACK, fast retransmit.

    Robust on a busy machine, which used to show fewer duplicate ACKs now and then: a receiver
    that is busy reading owns its socket, and Linux then queues arriving segments in the
    socket's backlog and merges neighbours there (tcp_add_backlog), so three out-of-order
    segments made one duplicate ACK. Here the server's first recv() asks for more than the
    data before the hole (SO_RCVLOWAT), so it sleeps until the retransmission fills the hole:
    the kernel answers each segment after the hole with its own ACK, and the window those
    ACKs carry does not move either (nothing is read in between).
    """
    lines = b"".join(f"{i:05d} of a burst of lines, MSS-sized segments\n".encode()
                     for i in range(BURST_BYTES // 40 + 1))  # fmt: skip
    payload = lines[:BURST_BYTES]
    before_hole = (LOST_SEGMENT - 1) * SEGMENT
    got = 0

    def body(conn: socket.socket) -> None:
        nonlocal got
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, before_hole + 1)
        got = len(conn.recv(65536))  # returns once the hole is filled
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        while chunk := conn.recv(65536):
            got += len(chunk)
        conn.sendall(f"OK {got}\n".encode())

    with net.server():
        peer = Peer.serving(net.server_ip, port, body, rcvbuf=LS_RCVBUF, name="lab-sink")
    writes = [n * SEGMENT for n in LS_WRITES]
    answer = _send_and_close(net, port, payload, pause, writes=writes, gap=LS_GAP)
    peer.finish(2 * TIMEOUT)
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": f"<{len(payload)} bytes in {len(LS_WRITES)} writes>"},
            {"from": "server", "line": answer.decode().strip()},
        ],
        server={
            "host": net.server_ip,
            "port": port,
            "role": "server",
            "received": got,
            "rcvbuf": LS_RCVBUF,
        },  # fmt: skip
        clients=[
            {
                "role": "client",
                "host": net.client_ip,
                "sent": len(payload),
                "writes_in_segments": list(LS_WRITES),
            }
        ],  # fmt: skip
        notes=(
            f"Data segment {LOST_SEGMENT} is lost on the link: the server ACKs each of the "
            "three segments after it with the same ACK number plus a SACK block; with three "
            "segments SACKed above the hole the client resends the missing one without "
            "waiting for its timer: fast retransmit (RFC 5681 3.2; Linux decides on its SACK "
            "scoreboard, RFC 6675, and with RACK, RFC 8985)."
        ),
    )


SLOW_RATE = "4mbit"
SLOW_BYTES = 96 * 1024


def slow_link(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """The server sends a large message over a 4 Mbit/s link: MSS-sized segments, paced."""
    request = b"send me the large message\n"
    payload = (b"a large message over a slow link. " * (SLOW_BYTES // 34 + 1))[:SLOW_BYTES]
    got: dict[str, Any] = {}

    def serve(conn: socket.socket) -> None:
        got["request"] = _readline(conn)
        conn.sendall(payload)  # the capture point is the sender's: RTTs are end to end

    with net.server():
        peer = Peer.serving(SERVER_IP, port, serve, name="lab-source")
    t0 = time.monotonic()
    with net.client():
        sock = socket.create_connection((SERVER_IP, port), timeout=TIMEOUT)
    with sock:
        time.sleep(pause)
        sock.sendall(request)
        received = 0
        while data := sock.recv(65536):
            received += len(data)
    took = time.monotonic() - t0
    peer.finish()
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
    finish = sink(net, port, reply=b"bye\n")
    answer = _send_and_close(net, port, request, pause)
    finish()
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
