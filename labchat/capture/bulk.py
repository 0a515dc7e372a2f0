"""Bulk transfer on the routed lab network: a 3 MB upload through a 20 Mbit/s bottleneck.

``bulk-upload`` and ``bulk-upload-reno`` run on `labchat.capture.router.RoutedNetwork`: the
client uploads `BULK_BYTES` to a sink on the server through the router, whose link towards
the server lets `BULK_RATE` through and queues at most `BULK_QUEUE` bytes (``tc tbf``). The
sender's congestion window fills that queue until it overflows; the losses and the sender's
answer to them are the lesson. The two scenarios differ only in the congestion control the
client's socket uses (``TCP_CONGESTION``): CUBIC (Linux's usual default, RFC 9438) or Reno
(RFC 5681).

While the data flows, a `labchat.capture.tcpinfo.Sampler` polls the client socket's
``TCP_INFO`` and keeps a row each time the kernel's state changes (about one per ACK): cwnd,
ssthresh, SRTT, RTTVAR, RTO, segments in flight, the peer's window. The rows are kept beside
the capture as ``tcp_info.csv``, with the capture's clock (seconds since the epoch), so they
can be drawn on the same time axis as the packets.
"""

from __future__ import annotations

import platform
import socket
import time
from pathlib import Path

from .netns import LabNetwork, NetworkError, qdisc_available
from .scenarios import Peer, ScenarioRun
from .shaping import Shaping
from .tcpinfo import Sampler, write_csv

__all__ = [
    "BULK_BYTES",
    "BULK_DELAY_MS",
    "BULK_QUEUE",
    "BULK_RATE",
    "bulk_shaping",
    "bulk_upload",
    "bulk_upload_reno",
]

#: The bottleneck's rate: 20 Mbit/s, one 1514-byte frame every 0.6 ms.
BULK_RATE = "20mbit"
#: The bottleneck's queue: 60,000 bytes, about 40 full frames or 24 ms at 20 Mbit/s. Deep
#: enough for a visible sawtooth, shallow enough to overflow a few times in one upload.
BULK_QUEUE = 60_000
#: How much the client uploads: 3 MB, about 1.3 s at 20 Mbit/s.
BULK_BYTES = 3_000_000
#: One-way delay where the kernel has sch_netem (a 20 ms round trip); none elsewhere.
BULK_DELAY_MS = 10.0
# Socket timeout of each step: the upload itself takes 1.3 s on an idle machine.
_TIMEOUT = 30.0


def bulk_shaping(port: int) -> Shaping:
    """The routed network's link: `BULK_RATE`, a `BULK_QUEUE`-byte queue, and a delay of
    `BULK_DELAY_MS` each way if (and only if) this kernel has ``sch_netem``."""
    delay = BULK_DELAY_MS if qdisc_available("netem") else None
    return Shaping(rate=BULK_RATE, queue_bytes=BULK_QUEUE, delay_ms=delay)


def _payload(size: int) -> bytes:
    line = b"labchat bulk upload: the same 64-byte line again and again .....\n"
    return (line * (size // len(line) + 1))[:size]


def _upload(net: LabNetwork, work: Path, *, port: int, pause: float, cc: str) -> ScenarioRun:
    payload = _payload(BULK_BYTES)
    received = 0

    def body(conn: socket.socket) -> None:
        nonlocal received
        conn.settimeout(_TIMEOUT)
        while chunk := conn.recv(262144):
            received += len(chunk)
        conn.sendall(f"OK {received}\n".encode())

    with net.server():
        peer = Peer.serving(net.server_ip, port, body, name="lab-bulk-sink")
    with net.client():
        sock = socket.socket()
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        except OSError as exc:
            raise NetworkError(f"congestion control {cc!r} is not available here: {exc}") from None
        # A fixed, large send buffer (Linux caps it at 2 x net.core.wmem_max, 416 KiB by
        # default): the kernel then holds about 170 ms of the upload and keeps the link busy
        # on its own, even when a busy machine does not schedule this program for a while.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BULK_BYTES)
        used = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        used_cc = used.split(b"\0", 1)[0].decode()
        sock.settimeout(_TIMEOUT)
        sock.connect((net.server_ip, port))
        time.sleep(pause)
        t0 = time.monotonic()
        with Sampler(sock) as sampler:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while data := sock.recv(4096):
                answer += data
        took = time.monotonic() - t0
        info_size = len(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 512))
    peer.finish(_TIMEOUT)
    if received != len(payload):
        raise NetworkError(f"bulk upload: the server received {received} of {len(payload)} bytes")
    samples = work / "tcp_info.csv"
    write_csv(samples, sampler.rows)
    time.sleep(pause)
    delay = net.shaping.delay_ms
    return ScenarioRun(
        transcript=[
            {"from": "client", "line": f"<{len(payload)} bytes in one sendall()>"},
            {"from": "server", "line": answer.decode().strip()},
        ],
        server={"host": net.server_ip, "port": port, "role": "server", "received": received},
        clients=[
            {
                "role": "client",
                "host": net.client_ip,
                "sent": len(payload),
                "seconds": round(took, 3),
                "congestion_control": used_cc,
                "tcp_info": {
                    "file": "tcp_info.csv",
                    "rows": len(sampler.rows),
                    "poll_interval_s": sampler.interval,
                    "tcp_info_bytes": info_size,
                    "kernel": platform.release(),
                    "clock": "seconds since the epoch, the capture's clock",
                },
            }
        ],  # fmt: skip
        notes=(
            f"{len(payload)} bytes uploaded with {used_cc} through a {BULK_RATE}/s bottleneck "
            f"with a {BULK_QUEUE}-byte queue"
            + (f" and {delay:g} ms of delay each way" if delay else ", and no added delay")
            + ": the congestion window grows until the queue overflows, the sender halves "
            "(Reno) or cuts to 0.7 (CUBIC) its window and grows it again. tcp_info.csv has the "
            "kernel's own view of the sender, sampled about once per ACK."
        ),
        files={"tcp_info.csv": samples},
    )


def bulk_upload(net: LabNetwork, work: Path, *, port: int, pause: float) -> ScenarioRun:
    """Upload `BULK_BYTES` with CUBIC through the bottleneck; sample TCP_INFO all along."""
    return _upload(net, work, port=port, pause=pause, cc="cubic")


def bulk_upload_reno(net: LabNetwork, work: Path, *, port: int, pause: float) -> ScenarioRun:
    """The same upload with Reno: the window halves at each loss."""
    return _upload(net, work, port=port, pause=pause, cc="reno")
