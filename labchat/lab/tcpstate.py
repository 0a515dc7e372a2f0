"""TCP state, read from the kernel: a listener that never accepts, and who ends in TIME_WAIT.

Notebooks 01 and 02 ask the kernel what state a socket is in, the way ``ss -tan`` does: by
reading ``/proc/net/tcp``. Both demos open their own loopback sockets in this network
namespace and close them again.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..capture.tcpinfo import STATES

__all__ = ["TCP_STATES", "connect_without_accept", "tcp_sockets", "time_wait_demo"]

#: Kernel TCP states as numbered in /proc/net/tcp (include/net/tcp_states.h).
TCP_STATES = STATES


def _hex_addr(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    ip = socket.inet_ntoa(int(addr, 16).to_bytes(4, "little"))
    return ip, int(port, 16)


def tcp_sockets(
    ports: Sequence[int] = (), *, table: str | Path = "/proc/net/tcp"
) -> list[dict[str, Any]] | None:
    """IPv4 TCP sockets of this network namespace from /proc/net/tcp (what ``ss -tan`` reads).

    Args:
        ports: keep only sockets whose local or remote port is one of these.
        table: the file to read (a saved copy of /proc/net/tcp, say).

    Returns:
        ``[{"local": (ip, port), "remote": (ip, port), "state": "TIME_WAIT"}, ...]``, or None
        where there is no /proc/net/tcp (not Linux).
    """
    path = Path(table)
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        local, remote = _hex_addr(parts[1]), _hex_addr(parts[2])
        if ports and local[1] not in ports and remote[1] not in ports:
            continue
        state = TCP_STATES.get(int(parts[3], 16), parts[3])
        rows.append({"local": local, "remote": remote, "state": state})
    return rows


def connect_without_accept(timeout: float = 2.0) -> dict[str, Any]:
    """Connect to a socket that listens but never calls accept(): does connect() succeed?

    Returns:
        ``{"connected": bool, "connect_ms": float, "accepted": 0, "kernel_state": str|None}``
        where kernel_state is the server side's state in /proc/net/tcp (Linux), taken while
        the connection waits, unaccepted, in the listen queue.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the backlog: completed handshakes waiting for accept()
        port = listener.getsockname()[1]
        with socket.socket() as client:
            client.settimeout(timeout)
            t0 = time.perf_counter()
            client.connect(("127.0.0.1", port))  # returns once SYN-ACK arrived and we ACKed
            elapsed = (time.perf_counter() - t0) * 1000
            cport = client.getsockname()[1]
            state = None
            rows = tcp_sockets([port])
            if rows is not None:
                server_side = [r for r in rows if r["local"][1] == port and r["remote"][1] == cport]
                state = server_side[0]["state"] if server_side else "not listed"
            client.sendall(b"hello, is anybody there?\n")  # queued by the kernel, unread
    return {"connected": True, "connect_ms": elapsed, "accepted": 0, "kernel_state": state}


def _wait_state(port: int, cport: int, want: str, timeout: float = 2.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = tcp_sockets([port]) or []
        rows = [r for r in rows if cport in (r["local"][1], r["remote"][1])]
        if any(r["state"] == want for r in rows):
            return rows
        time.sleep(0.01)
    return rows


def time_wait_demo(first_closer: str = "client") -> dict[str, Any] | None:
    """Open a loopback connection in this namespace, close it, and read who is in TIME_WAIT.

    Args:
        first_closer: ``"client"`` or ``"server"``: who calls close() first.

    Returns:
        ``{"first_closer": ..., "client": state, "server": state}`` where each state is that
        side's socket state in /proc/net/tcp right after both closed ("gone" when the socket
        no longer exists), or None where /proc/net/tcp does not exist (not Linux).
    """
    if tcp_sockets() is None:
        return None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=2)
        server, _ = listener.accept()
        server.settimeout(2)
        cport = client.getsockname()[1]
        first, second = (client, server) if first_closer == "client" else (server, client)
        first.close()  # FIN from the first closer
        assert second.recv(1) == b""  # the other side reads EOF ...
        second.close()  # ... and sends its FIN
        rows = _wait_state(port, cport, "TIME_WAIT")
    out: dict[str, Any] = {"first_closer": first_closer, "client": "gone", "server": "gone"}
    for r in rows:
        side = "client" if r["local"][1] == cport else "server"
        out[side] = r["state"]
    return out
