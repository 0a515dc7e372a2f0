"""Flow control and small writes on the two-host lab network: zero windows, Nagle, keepalive.

Three scenarios for notebook 09, each ``func(net, work, *, port, pause) -> ScenarioRun`` on a
started `labchat.capture.netns.LabNetwork`, captured on the server's interface:

``zero-window``
    The server stops reading. Its receive buffer fills, the window it advertises shrinks to
    zero, and the client's kernel probes the closed window on its persist timer, backing off
    (RFC 9293 3.8.6.1). When the server reads again, a window update lets the data flow.
``nagle``
    Two connections that each make `NAGLE_ROUNDS` small requests written in two parts
    (write, write, read): the first with Nagle's algorithm (RFC 896, the default), the second
    with ``TCP_NODELAY``. Once the server delays its ACKs (it answers every request, so Linux
    treats the connection as interactive), Nagle holds each second write until the first is
    acknowledged: a delayed ACK later.
``keepalive``
    An idle connection whose client turned keepalive on with one-second timers
    (``TCP_KEEPIDLE``/``TCP_KEEPINTVL``): an empty probe with an old sequence number every
    second, each answered by an ACK.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from .netns import LabNetwork, NetworkError
from .scenarios import PAUSE, TIMEOUT, Peer, ScenarioRun

__all__ = [
    "KEEPALIVE_IDLE",
    "KEEPALIVE_PROBES",
    "NAGLE_ROUNDS",
    "ZW_BYTES",
    "ZW_RCVBUF",
    "ZW_STALL",
    "ZW_SYSCTLS",
    "keepalive",
    "nagle",
    "zero_window",
]

#: zero-window: the server's receive buffer (SO_RCVBUF, fixed before listen()), how much the
#: client sends, and how long the server does not read. 1.6 s leaves room for three probes:
#: the persist timer starts at the RTO (200 ms on Linux) and doubles (0.2, 0.6, 1.4 s).
ZW_RCVBUF = 16384
ZW_BYTES = 96 * 1024
ZW_STALL = 1.6
#: zero-window runs the client without tail loss probes (net.ipv4.tcp_early_retrans = 0): a
#: receiver whose buffer is full holds its last ACK back for a delayed-ACK timeout, longer
#: than the probe timeout, and the probe would resend the last segment, a retransmission
#: that has nothing to do with flow control.
ZW_SYSCTLS = {"client": {"net.ipv4.tcp_early_retrans": "0"}}


def _read_all(conn: socket.socket) -> int:
    n = 0
    while chunk := conn.recv(65536):
        n += len(chunk)
    return n


def zero_window(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """The server stops reading: zero window, persist probes backing off, window update."""
    payload = (b"flow control: a receiver that stops reading\n" * (ZW_BYTES // 44 + 1))[:ZW_BYTES]
    seen: dict[str, float | int] = {}

    def body(conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT + ZW_STALL)
        first = conn.recv(1)  # wait for the data to start, then stop reading
        seen["stalled_at"] = time.monotonic()
        time.sleep(ZW_STALL)
        seen["reads_again_at"] = time.monotonic()
        seen["received"] = len(first) + _read_all(conn)
        conn.sendall(f"OK {seen['received']}\n".encode())

    with net.server():
        peer = Peer.serving(net.server_ip, port, body, rcvbuf=ZW_RCVBUF, name="lab-stalled")
    with net.client():
        sock = socket.create_connection((net.server_ip, port), timeout=TIMEOUT + ZW_STALL)
    with sock:
        time.sleep(pause)
        t0 = time.monotonic()
        sock.sendall(payload)  # blocks while the window is closed
        blocked = time.monotonic() - t0
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(4096).decode().strip()
    peer.finish(TIMEOUT + ZW_STALL)
    if seen.get("received") != len(payload):
        raise NetworkError(f"zero-window: the server received {seen.get('received')} bytes")
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": f"<{len(payload)} bytes in one sendall()>"},
            {"from": "server", "line": answer},
        ],
        server={
            "host": net.server_ip,
            "port": port,
            "role": "server",
            "rcvbuf": ZW_RCVBUF,
            "stops_reading_for_s": ZW_STALL,
        },  # fmt: skip
        clients=[
            {
                "role": "client",
                "host": net.client_ip,
                "sent": len(payload),
                "sendall_seconds": round(blocked, 3),
            }
        ],  # fmt: skip
        notes=(
            f"The server reads one byte, then nothing for {ZW_STALL:g} s: its window shrinks "
            "to zero, the client probes it on the persist timer (200 ms, then doubling), and "
            "the server's window update restarts the flow when it reads again."
        ),
    )


#: nagle: requests per connection, and the two writes of each request.
NAGLE_ROUNDS = 8
_HEAD, _BODY = b"SIZE 6\n", b"hello\n"


def nagle(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """Write-write-read requests, with Nagle and then with TCP_NODELAY; time each."""
    rounds: dict[str, list[float]] = {}

    def serve(conn: socket.socket) -> None:
        buf = b""
        while True:
            while buf.count(b"\n") < 2:  # a request is two lines: head, then body
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
            buf = buf.split(b"\n", 2)[2]
            conn.sendall(b"OK\n")

    for label, nodelay in (("nagle", False), ("nodelay", True)):
        with net.server():
            peer = Peer.serving(net.server_ip, port, serve, name=f"lab-{label}")
        with net.client():
            sock = socket.create_connection((net.server_ip, port), timeout=TIMEOUT)
        with sock:
            if nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            time.sleep(pause)
            times = []
            for _ in range(NAGLE_ROUNDS):
                t0 = time.perf_counter()
                sock.sendall(_HEAD)
                sock.sendall(_BODY)
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(64)
                    if not chunk:
                        raise NetworkError("nagle: the server closed early")
                    reply += chunk
                times.append(time.perf_counter() - t0)
                time.sleep(0.002)
        peer.finish()
        rounds[label] = times
        time.sleep(pause)
    ms = {k: [round(t * 1000, 3) for t in v] for k, v in rounds.items()}
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": f"{NAGLE_ROUNDS} x ({_HEAD!r}, {_BODY!r}) per connection"},
            {"from": "server", "line": "OK after each request"},
        ],
        server={"host": net.server_ip, "port": port, "role": "server"},
        clients=[
            {
                "role": "nagle",
                "host": net.client_ip,
                "TCP_NODELAY": False,
                "round_trip_ms": ms["nagle"],
            },
            {
                "role": "nodelay",
                "host": net.client_ip,
                "TCP_NODELAY": True,
                "round_trip_ms": ms["nodelay"],
            },
        ],  # fmt: skip
        notes=(
            "Connection 0 uses Nagle's algorithm: once the server delays its ACKs, the second "
            "small write of each request waits for the ACK of the first (a delayed-ACK "
            "timeout, 40 ms on Linux). Connection 1 sets TCP_NODELAY: both writes leave at "
            "once and a request takes well under a millisecond."
        ),
    )


#: keepalive: the client's timers (seconds; Linux's defaults are 7200, 75 and 9) and how
#: many probes the capture waits for.
KEEPALIVE_IDLE = 1
KEEPALIVE_INTERVAL = 1
KEEPALIVE_COUNT = 3
KEEPALIVE_PROBES = 2


def keepalive(net: LabNetwork, work: Path, *, port: int, pause: float = PAUSE) -> ScenarioRun:
    """An idle connection with one-second keepalive timers: a probe and its ACK every second."""
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT + KEEPALIVE_PROBES * KEEPALIVE_IDLE)
        line = conn.recv(4096)
        conn.sendall(b"OK " + line)
        _read_all(conn)  # idle until the client closes
        done.set()

    with net.server():
        peer = Peer.serving(net.server_ip, port, serve, name="lab-idle")
    with net.client():
        sock = socket.create_connection((net.server_ip, port), timeout=TIMEOUT)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
        time.sleep(pause)
        sock.sendall(b"are you there?\n")
        answer = sock.recv(4096).decode().strip()
        # Idle: each probe is answered, and the next one comes a whole KEEPIDLE later.
        time.sleep(KEEPALIVE_PROBES * KEEPALIVE_IDLE + 0.3)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)
    done.wait(TIMEOUT)
    peer.finish()
    time.sleep(pause)
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": "are you there?"},
            {"from": "server", "line": answer},
        ],
        server={"host": net.server_ip, "port": port, "role": "server"},
        clients=[
            {
                "role": "client",
                "host": net.client_ip,
                "SO_KEEPALIVE": True,
                "TCP_KEEPIDLE": KEEPALIVE_IDLE,
                "TCP_KEEPINTVL": KEEPALIVE_INTERVAL,
                "TCP_KEEPCNT": KEEPALIVE_COUNT,
            }
        ],  # fmt: skip
        notes=(
            f"After {KEEPALIVE_IDLE} s without traffic the client's kernel sends a keepalive "
            "probe: no data, sequence number one below the next byte, so the server must "
            "answer with an ACK. It does, and the next probe comes one idle period later."
        ),
    )
