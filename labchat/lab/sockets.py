"""Sockets in your own kernel: states as ``ss -tan`` shows them, ephemeral ports, SO_REUSEADDR.

Notebook 09 runs these on ``127.0.0.1`` in the learner's own network namespace (not in a
capture), so what they show is the learner's kernel at work:

* `socket_states` opens a listener and three connections and leaves one socket in each of the
  states a connection passes through (LISTEN, ESTAB, FIN-WAIT-2, CLOSE-WAIT, TIME-WAIT), then
  reads the socket table: with ``ss -tan`` where iproute2 is installed, from
  ``/proc/net/tcp`` (what ``ss`` reads) where it is not.
* `ephemeral_port_range` is where a client's port comes from when it does not bind one.
* `keepalive_settings` are the keepalive timers of sockets that do not set their own.
* `reuse_address` closes a server's connection from the server side (TIME-WAIT on the
  server's port) and then tries to bind that port again, without and with ``SO_REUSEADDR``.

Everything is Linux-specific (``/proc``); on other systems the functions say so and return
None.
"""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tcpstate import tcp_sockets

__all__ = [
    "IANA_EPHEMERAL",
    "KEEPALIVE_DEFAULTS",
    "SS_STATES",
    "ReuseResult",
    "SocketStates",
    "ephemeral_port_range",
    "keepalive_settings",
    "reuse_address",
    "socket_states",
    "socket_table",
]

#: RFC 6335's dynamic ports, which BSD, macOS and Windows use for clients.
IANA_EPHEMERAL = (49152, 65535)
#: /proc/net/tcp's state names (include/net/tcp_states.h) -> ss's.
SS_STATES = {
    "ESTABLISHED": "ESTAB", "SYN_SENT": "SYN-SENT", "SYN_RECV": "SYN-RECV",
    "FIN_WAIT1": "FIN-WAIT-1", "FIN_WAIT2": "FIN-WAIT-2", "TIME_WAIT": "TIME-WAIT",
    "CLOSE": "UNCONN", "CLOSE_WAIT": "CLOSE-WAIT", "LAST_ACK": "LAST-ACK", "LISTEN": "LISTEN",
    "CLOSING": "CLOSING", "NEW_SYN_RECV": "SYN-RECV",
}  # fmt: skip


def ephemeral_port_range() -> tuple[int, int]:
    """The ports this kernel gives clients that do not bind one (both ends included).

    Linux: ``net.ipv4.ip_local_port_range`` (32768-60999 unless changed); elsewhere RFC 6335's
    49152-65535.
    """
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if path.is_file():
        lo, hi = (int(x) for x in path.read_text().split())
        return lo, hi
    return IANA_EPHEMERAL


#: Keepalive timers when nobody changed them: Linux's defaults, which are RFC 1122's
#: (4.2.3.6: no probe before two hours of silence) and BSD's.
KEEPALIVE_DEFAULTS = {"time": 7200, "intvl": 75, "probes": 9}


def keepalive_settings() -> dict[str, int]:
    """This kernel's keepalive timers for sockets that do not set their own.

    Returns:
        ``{"time": s, "intvl": s, "probes": n}``: seconds of silence before the first probe
        (``net.ipv4.tcp_keepalive_time``, a socket's ``TCP_KEEPIDLE``), seconds between
        unanswered probes (``tcp_keepalive_intvl``, ``TCP_KEEPINTVL``), and how many
        unanswered probes end the connection (``tcp_keepalive_probes``, ``TCP_KEEPCNT``).
        Outside Linux, `KEEPALIVE_DEFAULTS`.
    """
    out = dict(KEEPALIVE_DEFAULTS)
    for key in out:
        path = Path(f"/proc/sys/net/ipv4/tcp_keepalive_{key}")
        if path.is_file():
            out[key] = int(path.read_text())
    return out


def socket_table(ports: Iterable[int]) -> list[dict[str, Any]] | None:
    """This namespace's IPv4 TCP sockets on any of ``ports`` (local or remote), ss's way.

    Returns:
        ``[{"state": "TIME-WAIT", "local": (ip, port), "peer": (ip, port)}, ...]`` sorted by
        local port, or None where there is no ``/proc/net/tcp`` (not Linux).
    """
    rows = tcp_sockets(list(ports))
    if rows is None:
        return None
    out = [{"state": SS_STATES.get(r["state"], r["state"]), "local": r["local"],
            "peer": r["remote"]} for r in rows]  # fmt: skip
    return sorted(out, key=lambda r: (r["local"][1], r["peer"][1]))


def _ss_text(port: int) -> str | None:
    """``ss -tan`` limited to one port, as the learner would type it; None without iproute2."""
    ss = shutil.which("ss", path="/usr/bin:/bin:/usr/sbin:/sbin")
    if ss is None:
        return None
    cmd = [ss, "-tan", f"( sport = :{port} or dport = :{port} )"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    return proc.stdout if proc.returncode == 0 else None


@dataclass
class SocketStates:
    """What `socket_states` left behind and saw.

    Attributes:
        port: the listener's port (an ephemeral one the kernel chose).
        client_ports: the three clients' ports, in the order they connected.
        rows: the socket table for ``port`` (see `socket_table`).
        ss: ``ss -tan`` limited to the port, or None where ``ss`` is not installed.
        ephemeral: `ephemeral_port_range`.
    """

    port: int
    client_ports: list[int]
    rows: list[dict[str, Any]]
    ss: str | None
    ephemeral: tuple[int, int]
    states: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{'State':<11} {'Local Address:Port':<22} Peer Address:Port"]
        for r in self.rows:
            local, peer = f"{r['local'][0]}:{r['local'][1]}", f"{r['peer'][0]}:{r['peer'][1]}"
            lines.append(f"{r['state']:<11} {local:<22} {peer}")
        return "\n".join(lines)


def socket_states(settle: float = 2.0) -> SocketStates | None:
    """Leave one socket in each state of a connection's life, and read the socket table.

    A listener (LISTEN) on 127.0.0.1 and three clients: one connected and idle (ESTAB at
    both ends), one whose client called ``shutdown(SHUT_WR)`` and whose server did not close
    (client FIN-WAIT-2, server CLOSE-WAIT), one closed by its client first (client TIME-WAIT,
    server gone). Everything is closed again before this returns; the TIME-WAIT socket stays
    in the kernel for 60 s.

    Args:
        settle: how long to wait, at most, for the FINs to be exchanged.

    Returns:
        `SocketStates`; ``states`` names each socket: ``listener``, ``open client``, ``open
        server``, ``half-closed client``, ``half-closed server``, ``closed client``. None
        where there is no /proc/net/tcp (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    opened: list[socket.socket] = []
    try:
        lst = socket.socket()
        opened.append(lst)
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        port = lst.getsockname()[1]
        pairs = []
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            s, _ = lst.accept()
            opened += [c, s]
            pairs.append((c, s))
        client_ports = [c.getsockname()[1] for c, _ in pairs]
        (_, _), (half_c, _), (done_c, done_s) = pairs
        half_c.shutdown(socket.SHUT_WR)  # FIN: client FIN-WAIT-2, server CLOSE-WAIT
        done_c.close()  # the client closes first ...
        done_s.settimeout(2)
        done_s.recv(1)  # ... the server reads EOF ...
        done_s.close()  # ... and closes: the client's socket waits in TIME-WAIT
        deadline = time.monotonic() + settle
        while True:
            rows = socket_table([port]) or []
            states = {r["state"] for r in rows}
            if {"TIME-WAIT", "FIN-WAIT-2", "CLOSE-WAIT"} <= states or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        text = _ss_text(port)
    finally:
        for sock in opened:
            sock.close()
    names = {(port, 0): "listener"}
    for cport, what in zip(client_ports, ("open", "half-closed", "closed"), strict=True):
        names[(cport, port)] = f"{what} client"
        names[(port, cport)] = f"{what} server"
    found = {names[key]: r["state"] for r in rows
             if (key := (r["local"][1], r["peer"][1])) in names}  # fmt: skip
    return SocketStates(port, client_ports, rows, text, ephemeral_port_range(), found)


@dataclass
class ReuseResult:
    """What `reuse_address` saw.

    Attributes:
        port: the server's port.
        time_wait: the server side's state after it closed first (``TIME-WAIT``).
        without: the error binding the port again without SO_REUSEADDR (``[Errno 98] ...``),
            or None if that worked.
        with_reuse: the error binding it with SO_REUSEADDR, or None if that worked.
    """

    port: int
    time_wait: str | None
    without: str | None
    with_reuse: str | None


def _bind_error(port: int, reuse: bool) -> str | None:
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return f"[Errno {exc.errno}] {exc.strerror}"
    return None


def reuse_address() -> ReuseResult | None:
    """A server restarts on a port that has a connection in TIME-WAIT.

    The server's listener sets SO_REUSEADDR (as servers do: Python's ``socketserver``,
    nginx, ...), a client connects, the server closes first and its side of the connection
    waits in TIME-WAIT on the server's port. The listener closes too (the server "stops"),
    then a new listener tries to bind the same address: without SO_REUSEADDR, and with it.
    Linux allows the bind only when both the TIME-WAIT socket and the new one have
    SO_REUSEADDR.

    Returns:
        `ReuseResult`, or None where there is no /proc/net/tcp (not Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    with socket.socket() as lst:
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2) as client:
            server, _ = lst.accept()
            server.close()  # the server closes first ...
            client.settimeout(2)
            client.recv(1)  # ... the client reads EOF and closes too
    deadline = time.monotonic() + 2
    state = None
    while time.monotonic() < deadline:
        rows = socket_table([port]) or []
        state = next((r["state"] for r in rows if r["local"][1] == port), None)
        if state == "TIME-WAIT":
            break
        time.sleep(0.01)
    return ReuseResult(port, state, _bind_error(port, False), _bind_error(port, True))
