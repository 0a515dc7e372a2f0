"""Helpers that keep the lab notebooks short: capture-and-load, environment checks, TCP state
demos, room measurements and a live room view for the classroom.

Nothing here is new protocol or analysis logic: each function strings together what
`capture`, `analysis`, `plots`, `server` and `client` already do, so a notebook cell stays one
or two lines. Every server and socket a helper opens, it closes again.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import platform
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import analysis, capture
from . import protocol as p
from .auth import UserStore
from .capture.pcapng import strip_secrets
from .certs import LabCertPaths, create_lab_certs
from .client import Client

__all__ = [
    "Captured",
    "LabFiles",
    "RoomStats",
    "TCP_STATES",
    "capture_scenario",
    "capture_scenarios",
    "connect_without_accept",
    "environment_report",
    "lab_files",
    "live_room_view",
    "measure_broadcast_latency",
    "plot_latency",
    "room_order_check",
    "running_server",
    "strip_keys",
    "tcp_sockets",
    "time_wait_demo",
]

# A library must not print its log records on stderr unasked (a notebook counts stderr as
# output, and nbval compares it). Python's "last resort" handler would print WARNING records
# of labchat.server (a failed login, say) when the application configured no logging; a
# NullHandler on the package logger stops that. `labchat serve` configures logging itself.
logging.getLogger("labchat").addHandler(logging.NullHandler())


# --------------------------------------------------------------------------------------------
# Files: certificates and users in a temporary directory
# --------------------------------------------------------------------------------------------


@dataclass
class LabFiles:
    """Throwaway lab certificates and users for one notebook.

    Attributes:
        directory: the temporary directory holding everything.
        certs: paths of ca.pem, ca.key, server.pem, server.key.
        users: the users store (users.json).
        passwords: user name -> password of the accounts created.
    """

    directory: Path
    certs: LabCertPaths
    users: UserStore
    passwords: dict[str, str]


def lab_files(
    directory: str | Path,
    passwords: dict[str, str] | None = None,
    *,
    fast_hash: bool = False,
) -> LabFiles:
    """Make lab certificates and a users file in ``directory`` (never the learner's certs/).

    Args:
        directory: a (temporary) directory; ``certs/`` and ``users.json`` go inside.
        passwords: accounts to create; alice and bob by default.
        fast_hash: hash with scrypt N=2**10, r=8, p=1 instead of the real cost. Only for
            load experiments with dozens of logins: the real cost (about 0.1 s a login on
            purpose) would dominate them. Never for a real users file.

    Returns:
        The paths and the store.
    """
    directory = Path(directory)
    passwords = dict(passwords or {"alice": "correct horse battery", "bob": "staple tuna lamp"})
    certs = create_lab_certs(directory / "certs", force=True)
    kw = {"n": 2**10, "r": 8, "p": 1} if fast_hash else {}
    users = UserStore(directory / "users.json", **kw)
    for name, password in passwords.items():
        users.add(name, password, replace=True)
    return LabFiles(directory, certs, users, passwords)


@contextlib.contextmanager
def running_server(files: LabFiles, **kwargs: Any) -> Iterator[Any]:
    """A started `Server` on 127.0.0.1 with a free port, using ``files``; closed on exit."""
    from .server import Server

    kwargs.setdefault("users", files.users)
    if not kwargs.get("plain"):
        kwargs.setdefault("certs_dir", files.certs.directory)
    with Server("127.0.0.1", 0, **kwargs) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Environment report
# --------------------------------------------------------------------------------------------


@dataclass
class EnvironmentReport:
    """Versions and the capture mode that works here (``print()`` it)."""

    versions: dict[str, str]
    mode: capture.CaptureMode | None
    error: str | None = None

    def __str__(self) -> str:
        lines = [f"{k:<12}{v}" for k, v in self.versions.items()]
        if self.mode is None:
            lines.append(f"{'capture':<12}none: {self.error}")
            return "\n".join(lines)
        lines.append(f"{'capture':<12}{self.mode.name}: {self.mode.reason}")
        for other in ("private", "host", "offline"):
            if other in self.mode.unavailable:
                lines.append(f"  not {other:<8}{self.mode.unavailable[other]}")
        return "\n".join(lines)


def environment_report() -> EnvironmentReport:
    """Python, OpenSSL, scapy and matplotlib versions, and which capture mode works here, why."""
    import matplotlib
    import scapy

    versions = {
        "Python": platform.python_version(),
        "OpenSSL": ssl.OPENSSL_VERSION,
        "scapy": scapy.__version__,
        "matplotlib": matplotlib.__version__,
        "libpcap": "found" if capture.libpcap_available() else "not found (Python filter)",
        "system": f"{platform.system()} {platform.release()}",
    }
    try:
        return EnvironmentReport(versions, capture.detect_mode())
    except (capture.CaptureError, ValueError) as exc:
        return EnvironmentReport(versions, None, str(exc))


# --------------------------------------------------------------------------------------------
# Capture a scenario and load it
# --------------------------------------------------------------------------------------------


@dataclass
class Captured:
    """A scenario's capture, loaded.

    Attributes:
        result: the files on disk and how they were made (``result.mode``).
        capture: the analysed capture without any key (the file's embedded key log removed):
            what an eavesdropper sees.
        conn: its first TCP connection.
    """

    result: capture.CaptureResult
    capture: analysis.Capture
    conn: analysis.Connection

    @property
    def mode(self) -> capture.CaptureMode:
        return self.result.mode

    @property
    def server_port(self) -> int:
        return int(self.result.manifest.get("server", {}).get("port", self.conn.server[1]))

    def decrypted(self) -> analysis.Capture:
        """The same capture loaded with its key log (TLS records decrypted)."""
        if self.result.keylog is None:
            raise ValueError(f"{self.result.scenario} has no key log (it is not TLS)")
        return analysis.load(
            self.result.pcap, keylog=self.result.keylog, tls_ports=[self.server_port]
        )

    def wire_bytes(self) -> bytes:
        """Every TCP payload byte in the capture, in capture order (what a sniffer sees)."""
        return b"".join(s.payload for c in self.capture.connections() for s in c.segments)


def strip_keys(pcapng: str | Path, out: str | Path) -> Path:
    """Copy a pcapng without its embedded TLS key log (`labchat.capture.pcapng.strip_secrets`)."""
    return strip_secrets(pcapng, out)


def _load(result: capture.CaptureResult) -> Captured:
    port = int(result.manifest.get("server", {}).get("port", 0)) or capture.DEFAULT_PORT
    # Only TLS scenarios get their port decoded as TLS: a plaintext chat on the same port
    # must stay plaintext (its lines are the lesson).
    wire = strip_keys(result.pcap, result.directory / "capture-nokeys.pcapng")
    cap = analysis.load(wire, tls_ports=[port] if result.manifest.get("tls") else [])
    return Captured(result, cap, cap.connection(0))


def capture_scenario(name: str, workdir: str | Path, *, mode: str = "auto") -> Captured:
    """Run (or, offline, load) one scenario into ``workdir/<name>`` and analyse it."""
    return _load(capture.run_scenario(name, Path(workdir) / name, mode=mode))


def capture_scenarios(
    names: Sequence[str], workdir: str | Path, *, mode: str = "auto"
) -> dict[str, Captured]:
    """Several scenarios at once (one private namespace for all: faster)."""
    results = capture.run_scenarios(list(names), workdir, mode=mode)
    return {r.scenario: _load(r) for r in results}


# --------------------------------------------------------------------------------------------
# TCP state: /proc/net/tcp, a listener that never accepts, TIME_WAIT
# --------------------------------------------------------------------------------------------

#: Kernel TCP states as numbered in /proc/net/tcp (include/net/tcp_states.h).
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}


def _hex_addr(text: str) -> tuple[str, int]:
    addr, port = text.split(":")
    ip = socket.inet_ntoa(int(addr, 16).to_bytes(4, "little"))
    return ip, int(port, 16)


def tcp_sockets(ports: Sequence[int] = ()) -> list[dict[str, Any]] | None:
    """IPv4 TCP sockets of this network namespace from /proc/net/tcp (what ``ss -tan`` reads).

    Args:
        ports: keep only sockets whose local or remote port is one of these.

    Returns:
        ``[{"local": (ip, port), "remote": (ip, port), "state": "TIME_WAIT"}, ...]``, or None
        where there is no /proc/net/tcp (not Linux).
    """
    path = Path("/proc/net/tcp")
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


# --------------------------------------------------------------------------------------------
# Many clients: total order, broadcast latency
# --------------------------------------------------------------------------------------------


def _client_kw(files: LabFiles) -> dict[str, Any]:
    return {"cafile": files.certs.ca_cert, "server_hostname": "localhost", "timeout": 10.0}


def room_order_check(
    server: Any, files: LabFiles, *, clients: int = 5, lines_each: int = 8
) -> dict[str, list[str]]:
    """Every client speaks at once; return the sequence of MSG lines each one saw.

    Each client runs in its own thread, which alone reads and writes its socket. All threads
    start talking together (a barrier), so the server gets the lines interleaved.

    Returns:
        user name -> the ``"user: text"`` lines that user received, in arrival order.
    """
    host, port = server.address
    names = [f"talker{i}" for i in range(clients)]
    for name in names:
        files.users.add(name, f"{name}-password", replace=True)
    want = clients * lines_each
    barrier = threading.Barrier(clients)
    seen: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def talk(name: str) -> None:
        try:
            with Client(host, port, **_client_kw(files)) as c:
                c.login(name, f"{name}-password")
                barrier.wait(10)
                for i in range(lines_each):
                    c.say(f"{name} line {i}")
                got: list[str] = []
                deadline = time.monotonic() + 10
                while len(got) < want and time.monotonic() < deadline:
                    e = c.recv(timeout=1)
                    if isinstance(e, p.Msg):
                        got.append(f"{e.user}: {e.text}")
                seen[name] = got
                barrier.wait(10)  # nobody leaves before everyone has everything
                c.quit()
        except BaseException as exc:  # reported in the caller's thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=talk, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return seen


@dataclass
class RoomStats:
    """Broadcast latency for one room size (milliseconds)."""

    clients: int
    samples: list[float] = field(default_factory=list)  # per message: until the LAST got it
    medians: list[float] = field(default_factory=list)  # per message: median receiver

    def row(self) -> dict[str, Any]:
        return {
            "clients in room": self.clients,
            "messages": len(self.samples),
            "median receiver (ms)": round(statistics.median(self.medians), 2),
            "last receiver, median (ms)": round(statistics.median(self.samples), 2),
            "last receiver, worst (ms)": round(max(self.samples), 2),
        }


class _Listener(threading.Thread):
    """One room member; this thread alone reads its socket and stamps each MSG's arrival."""

    def __init__(self, client: Client, arrivals: dict[str, list[float]], lock: threading.Lock,
                 cond: threading.Condition) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.client, self.arrivals, self.lock, self.cond = client, arrivals, lock, cond
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                e = self.client.recv(timeout=0.2)
            except (OSError, p.RemoteProtocolError):
                return
            if isinstance(e, p.Msg):
                now = time.perf_counter()
                with self.cond:
                    self.arrivals.setdefault(e.text, []).append(now)
                    self.cond.notify_all()


def measure_broadcast_latency(
    files: LabFiles, sizes: Sequence[int] = (2, 5, 10, 20, 40), *, messages: int = 10,
) -> list[RoomStats]:  # fmt: skip
    """Grow one room to each size and time how long a SAY takes to reach every member.

    A speaker (the calling thread, which owns its own socket) sends ``messages`` lines at
    each size and waits until every member has received each one. Members are clients, each
    owned by its own thread. The server's flood limit is lifted: this is a deliberate flood.

    Returns:
        One `RoomStats` per size.
    """
    from .server import Server

    sizes = sorted(sizes)
    need = max(sizes) - 1
    for i in range(need):
        files.users.add(f"member{i}", f"member{i}-password", replace=True)
    files.users.add("speaker", "speaker-password", replace=True)
    arrivals: dict[str, list[float]] = {}
    cond = threading.Condition()
    listeners: list[_Listener] = []
    out: list[RoomStats] = []
    limits = {"flood_burst": 10_000, "flood_rate": 10_000.0, "max_clients": max(sizes) + 8}
    with Server(
        "127.0.0.1", 0, certs_dir=files.certs.directory, users=files.users, **limits
    ) as server:
        host, port = server.address
        kw = _client_kw(files)
        try:
            with Client(host, port, **kw) as speaker:
                speaker.login("speaker", "speaker-password")
                for size in sizes:
                    while len(listeners) < size - 1:
                        i = len(listeners)
                        c = Client(host, port, **kw)
                        c.login(f"member{i}", f"member{i}-password")
                        t = _Listener(c, arrivals, threading.Lock(), cond)
                        listeners.append(t)
                        t.start()
                    stats = RoomStats(size)
                    for m in range(messages + 1):  # the first one warms up, not counted
                        token = f"n{size} m{m}"
                        t0 = time.perf_counter()
                        speaker.say(token)
                        with cond:
                            ok = cond.wait_for(
                                lambda tok=token, n=size - 1: len(arrivals.get(tok, [])) >= n, 10
                            )
                        if not ok:
                            raise TimeoutError(f"{token!r} did not reach all {size - 1} members")
                        while True:  # the speaker's own copy: read it, keep its socket drained
                            e = speaker.recv(timeout=5)
                            if isinstance(e, p.Msg) and e.text == token:
                                break
                        if m:
                            times = [(t - t0) * 1000 for t in arrivals[token]]
                            stats.samples.append(max(times))
                            stats.medians.append(statistics.median(times))
                    out.append(stats)
                speaker.quit()
        finally:
            for t in listeners:
                t.stop.set()
            for t in listeners:
                t.join(2)
                t.client.close()
    return out


def plot_latency(stats: Sequence[RoomStats], ax: Any = None) -> Any:
    """Broadcast latency against room size: median receiver and last receiver."""
    from matplotlib.figure import Figure

    if ax is None:
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    xs = [s.clients for s in stats]
    med = [statistics.median(s.medians) for s in stats]
    last = [statistics.median(s.samples) for s in stats]
    worst = [max(s.samples) for s in stats]
    ax.plot(xs, med, "o-", label="median receiver (median over messages)")
    ax.plot(xs, last, "s-", label="last receiver (median over messages)")
    ax.plot(xs, worst, "^:", color="#999999", label="last receiver, worst message")
    ax.set_xlabel("clients in the room")
    ax.set_ylabel("SAY -> MSG received (ms)")
    ax.set_title("Broadcast latency as the room grows (one server, thread per client)")
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


# --------------------------------------------------------------------------------------------
# Live room view (classroom)
# --------------------------------------------------------------------------------------------


class _KeepingSniffer(capture.Sniffer):
    """A `Sniffer` that also keeps the newest packets for the live view."""

    def __init__(self, *args: Any, keep: int = 400, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recent: deque[Any] = deque(maxlen=keep)

    def _seen(self, pkt: Any) -> None:
        super()._seen(pkt)
        self.recent.append(pkt)


def _live_capture_unavailable() -> str | None:
    forced = os.environ.get(capture.MODE_ENV, "").strip()
    if forced == "offline":
        return f"{capture.MODE_ENV}=offline: no live capture"
    if not sys.platform.startswith("linux"):
        return "live capture needs Linux packet sockets"
    try:
        capture.detect_mode("host")
    except capture.CaptureError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _newest_connection(packets: list[Any], port: int, tmp: Path) -> analysis.Connection | None:
    if not packets:
        return None
    path = capture.write_pcapng(tmp / "live.pcapng", packets)
    conns = analysis.load(path, tls_ports=[port]).connections()
    if not conns:
        return None
    conn = max(conns, key=lambda c: c.segments[-1].time if c.segments else -1)
    if conn.server[1] != port:
        # No SYN in the window: analysis guessed the roles from the port numbers (the lower
        # one as the server's). We know the server's port, so put the roles right.
        flip = {analysis.C2S: analysis.S2C, analysis.S2C: analysis.C2S}
        fixed = copy.copy(conn)
        fixed.client, fixed.server = conn.server, conn.client
        fixed.segments = [
            dataclasses.replace(x, direction=flip[x.direction]) for x in conn.segments
        ]
        conn = fixed
    return conn


def live_room_view(
    host: str,
    port: int,
    *,
    user: str,
    password: str,
    cafile: str | Path | None,
    server_hostname: str | None = None,
    duration: float = 5.0,
    refresh: float = 1.0,
    iface: str = "lo",
    ladder_segments: int = 10,
) -> dict[str, Any]:
    """Watch a chat room for ``duration`` seconds, redrawing one figure every ``refresh`` s.

    The view logs in as ``user`` (a teacher's account) and shows, readable on a projector:
    who is in the room (WHO), messages per second, the server's round-trip time (PING), and,
    where this machine may capture (host mode: root or CAP_NET_RAW), the newest TCP segments
    of the port as a ladder. Works for a server in this notebook or one on the LAN.

    Returns:
        A summary: ``{"refreshes", "members", "messages", "rtt_ms", "capture"}`` (``capture``
        says whether the ladder panel was live and, if not, why).
    """
    from IPython.display import display
    from matplotlib.figure import Figure

    from . import plots

    why_no_capture = _live_capture_unavailable()
    sniffer = None
    if why_no_capture is None:
        try:
            sniffer = _KeepingSniffer(iface, port).start()
        except capture.CaptureError as exc:
            why_no_capture = str(exc)
    handle = None
    times: list[float] = []
    rates: list[float] = []
    rtts: list[float] = []
    members: list[str] = []
    total = 0
    t_start = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="labchat-live-") as tmp, Client(
            host, port, cafile=cafile, server_hostname=server_hostname, timeout=5.0
        ) as watcher:  # fmt: skip
            watcher.login(user, password)
            t_last = t_start
            while True:
                # Ticks on a fixed schedule, so drawing time does not stretch the refresh
                # period; a tick that is already late still reads what has arrived.
                t_next = max(t_start + refresh * (len(times) + 1), time.monotonic() + 0.2 * refresh)
                count = 0
                while True:
                    left = t_next - time.monotonic()
                    e = watcher.recv(timeout=max(0.0, left))
                    if isinstance(e, p.Msg):
                        count += 1
                    elif e is None and left <= 0:
                        break
                total += count
                members = watcher.who()
                rtts.append(watcher.ping() * 1000)
                now = time.monotonic()
                times.append(now - t_start)
                rates.append(count / (now - t_last))
                t_last = now
                conn = None
                if sniffer is not None:
                    # Only the newest packets: decoding hundreds of TLS records every second
                    # would take longer than the refresh period.
                    conn = _newest_connection(list(sniffer.recent)[-4 * ladder_segments :],
                                              port, Path(tmp))  # fmt: skip
                fig = _draw_room(Figure, plots, members, times, rates, rtts, conn,
                                 ladder_segments, why_no_capture, host, port)  # fmt: skip
                if handle is None:
                    handle = display(fig, display_id=True)
                else:
                    handle.update(fig)
                if time.monotonic() - t_start >= duration:
                    break
            watcher.quit()
    finally:
        if sniffer is not None:
            with contextlib.suppress(capture.CaptureError):
                sniffer.stop(quiet=0.0)
    return {
        "refreshes": len(times),
        "members": members,
        "messages": total,
        "rtt_ms": rtts,
        "capture": "live" if why_no_capture is None else why_no_capture,
    }


def _draw_room(Figure, plots, members, times, rates, rtts, conn, nseg, why_no, host, port):  # noqa: ANN001
    fig = Figure(figsize=(13.0, 7.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.3])
    ax_who = fig.add_subplot(grid[0, 0])
    ax_rate = fig.add_subplot(grid[1, 0])
    ax_ladder = fig.add_subplot(grid[:, 1])
    fig.suptitle(f"labchat room on {host}:{port}  (t = {times[-1]:.0f} s)", fontsize=15)

    ax_who.set_axis_off()
    ax_who.set_title(f"In the room: {len(members)}", fontsize=14, loc="left")
    shown = members[:24]
    cols = 3 if len(shown) > 8 else 1
    per_col = -(-len(shown) // cols) if shown else 1
    for i, name in enumerate(shown):
        ax_who.text(i // per_col / cols, 1 - (i % per_col + 1) / (per_col + 1), name,
                    fontsize=13 if cols == 1 else 11, transform=ax_who.transAxes)  # fmt: skip
    if len(members) > len(shown):
        ax_who.text(0, 0, f"... and {len(members) - len(shown)} more", fontsize=11,
                    transform=ax_who.transAxes)  # fmt: skip

    ax_rate.plot(times, rates, "o-", color="#1f5fa8", label="messages/s")
    ax_rate.set_xlabel("seconds watched", fontsize=11)
    ax_rate.set_ylabel("messages per second", fontsize=11, color="#1f5fa8")
    ax_rate.set_ylim(bottom=0, top=max(rates + [1]) * 1.25)
    ax_rate.grid(True, alpha=0.3)
    ax_rtt = ax_rate.twinx()
    ax_rtt.plot(times, rtts, "s--", color="#b5461a", label="server round trip (ms)")
    ax_rtt.set_ylabel("PING round trip (ms)", fontsize=11, color="#b5461a")
    ax_rtt.set_ylim(bottom=0, top=max(rtts + [1]) * 1.25)
    ax_rate.set_title(f"{rates[-1]:.0f} msg/s, round trip {rtts[-1]:.1f} ms", fontsize=13,
                      loc="left")  # fmt: skip

    if conn is not None and conn.segments:
        newest = copy.copy(conn)
        newest.segments = conn.segments[-nseg:]
        plots.ladder(newest, ax_ladder, title=f"Newest {len(newest.segments)} segments")
    else:
        ax_ladder.set_axis_off()
        text = "no segments captured yet" if why_no is None else f"no live capture:\n{why_no}"
        ax_ladder.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11,
                       transform=ax_ladder.transAxes)  # fmt: skip
        ax_ladder.set_title("Newest segments", fontsize=13)
    return fig


class ChatBots:
    """A few scripted users chatting in the background (each bot thread owns its client).

    Use as a context manager: the bots log in on enter and leave on exit.
    """

    def __init__(self, server: Any, files: LabFiles, *, bots: int = 4, rate: float = 2.0):
        self.host, self.port = server.address
        self.files, self.rate = files, rate
        self.names = [f"bot{i}" for i in range(bots)]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sent = 0
        self.errors: list[str] = []
        self._ready = threading.Barrier(bots + 1)
        for n in self.names:
            files.users.add(n, f"{n}-password", replace=True)

    def _run(self, name: str) -> None:
        try:
            with Client(self.host, self.port, **_client_kw(self.files)) as c:
                c.login(name, f"{name}-password")
                self._ready.wait(10)
                i = 0
                while not self.stop.wait(1 / self.rate):
                    c.say(f"message {i} from {name}")
                    self.sent += 1
                    i += 1
                    c.recv_all(timeout=0)  # keep our own socket drained
                c.quit()
        except (OSError, threading.BrokenBarrierError, p.RemoteProtocolError) as exc:
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            self._ready.abort()

    def __enter__(self) -> ChatBots:
        for n in self.names:
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self.threads.append(t)
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)
