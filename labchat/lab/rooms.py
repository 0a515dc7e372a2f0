"""Many clients in one room: its total order, its broadcast latency, and bots to fill it.

Notebook 05 checks that every member sees the room's messages in one order
(`room_order_check`), measures how long a line takes to reach every member as the room grows
(`measure_broadcast_latency`, drawn by `labchat.plots.broadcast_latency`) and fills a room
with scripted users for the live view (`ChatBots`). Every client here is owned by one thread,
which alone reads and writes its socket, and every server and client is closed again.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import protocol as p
from ..client import Client
from .files import LabFiles, client_options

__all__ = ["ChatBots", "RoomStats", "measure_broadcast_latency", "room_order_check"]


def room_order_check(
    server: Any, files: LabFiles, *, clients: int = 5, lines_each: int = 8
) -> dict[str, list[str]]:
    """Every client speaks at once; return the sequence of MSG lines each one saw.

    Each client runs in its own thread, which alone reads and writes its socket. All threads
    start talking together (a barrier), so the server gets the lines interleaved.

    Args:
        server: a running `labchat.Server` (`labchat.lab.running_server`).
        files: its lab files; the talkers' accounts are added to ``files.users``.
        clients: how many talk at once.
        lines_each: how many lines each one says.

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
            with Client(host, port, **client_options(files)) as c:
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

    @property
    def median_receiver(self) -> float:
        """The median receiver's latency, median over the messages (ms)."""
        return statistics.median(self.medians)

    @property
    def last_receiver(self) -> float:
        """The last receiver's latency, median over the messages (ms)."""
        return statistics.median(self.samples)

    @property
    def worst(self) -> float:
        """The last receiver's latency for the slowest message (ms)."""
        return max(self.samples)

    def row(self) -> dict[str, Any]:
        """One table row (`labchat.analysis.Table`), rounded to 0.01 ms."""
        return {
            "clients in room": self.clients,
            "messages": len(self.samples),
            "median receiver (ms)": round(self.median_receiver, 2),
            "last receiver, median (ms)": round(self.last_receiver, 2),
            "last receiver, worst (ms)": round(self.worst, 2),
        }


class _Listener(threading.Thread):
    """One room member; this thread alone reads its socket and stamps each MSG's arrival."""

    def __init__(
        self, client: Client, arrivals: dict[str, list[float]], cond: threading.Condition
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.arrivals, self.cond = client, arrivals, cond
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

    Args:
        files: lab files; the speaker's and members' accounts are added to ``files.users``.
        sizes: room sizes (speaker included), measured smallest first.
        messages: lines timed at each size (one more is sent first to warm up).

    Returns:
        One `RoomStats` per size.

    Raises:
        TimeoutError: a line did not reach every member within 10 s.
    """
    from ..server import Server

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
        kw = client_options(files)
        try:
            with Client(host, port, **kw) as speaker:
                speaker.login("speaker", "speaker-password")
                for size in sizes:
                    while len(listeners) < size - 1:
                        i = len(listeners)
                        c = Client(host, port, **kw)
                        c.login(f"member{i}", f"member{i}-password")
                        t = _Listener(c, arrivals, cond)
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


class ChatBots:
    """A few scripted users chatting in the background (each bot thread owns its client).

    Use as a context manager: the bots log in on enter and leave on exit.

    Args:
        server: a running `labchat.Server`.
        files: its lab files; the bots' accounts are added to ``files.users``.
        bots: how many.
        rate: lines per second each bot says.
    """

    def __init__(self, server: Any, files: LabFiles, *, bots: int = 4, rate: float = 2.0):
        self.host, self.port = server.address
        self.files, self.rate = files, rate
        self.names = [f"bot{i}" for i in range(bots)]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sent = 0  # lines said by all bots (each bot thread counts under _count_lock)
        self._count_lock = threading.Lock()
        self.errors: list[str] = []
        self._ready = threading.Barrier(bots + 1)
        for n in self.names:
            files.users.add(n, f"{n}-password", replace=True)

    def _run(self, name: str) -> None:
        try:
            with Client(self.host, self.port, **client_options(self.files)) as c:
                c.login(name, f"{name}-password")
                self._ready.wait(10)
                i = 0
                while not self.stop.wait(1 / self.rate):
                    c.say(f"message {i} from {name}")
                    with self._count_lock:  # += from several threads is not atomic
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
