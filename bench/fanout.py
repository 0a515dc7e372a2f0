"""Room fan-out load generator: N members in one room (labchat) or one channel (Redis).

Members live in worker processes (multiprocessing). Each worker multiplexes its TLS sockets
with `selectors` (non-blocking `ssl.SSLSocket`s), so 1000 members need 4 processes, not 1000
threads. Some members also send: at a fixed rate each, or "as fast as they can" with at most
`window` of their own messages in flight (sent but not yet seen back on their own
subscription), which keeps the server's queues bounded.

Every message carries (round, sender, sequence number, send time). Each member checks that it
sees every sender's sequence 0, 1, 2, ... exactly once, so loss and duplication are counted
exactly, and records send-to-receipt latency in a mergeable log histogram. Senders and
receivers share CLOCK_MONOTONIC (one machine), so latencies are comparable across processes.

Redis is driven with the same code: members SUBSCRIBE to one channel; a sender publishes on a
second connection (a RESP2 connection in subscribe mode cannot PUBLISH). RESP is spoken by hand.
"""

from __future__ import annotations

import heapq
import multiprocessing as mp
import os
import selectors
import socket
import ssl
import time
from array import array
from dataclasses import dataclass, field

from bench.common import HOST, PASSWORD, Hist, percentile_from_hist, user_name

CHANNEL = b"room"
SETUP_TIMEOUT = 120.0


def _resp(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class _Conn:
    __slots__ = ("sock", "idx", "inbuf", "out", "ready", "next", "dead", "want_write", "pub")

    def __init__(self, sock: ssl.SSLSocket, idx: int, n_sids: int) -> None:
        self.sock = sock
        self.idx = idx
        self.inbuf = b""
        self.out = b""
        self.ready = False
        self.next = array("i", bytes(4 * n_sids))
        self.dead: str | None = None
        self.want_write = False
        self.pub: _Conn | None = None  # Redis: the member's PUBLISH connection


@dataclass
class _RoundStats:
    hist: Hist = field(default_factory=Hist)
    deliveries: int = 0
    lost: int = 0
    dup: int = 0
    stale: int = 0
    first: float = 0.0
    last: float = 0.0


class Worker:
    """One load-generator process: members *indices*, talking to *kind* at *port*."""

    def __init__(self, kind: str, port: int, ca: str, indices: list[int], n_sids: int) -> None:
        self.kind = kind
        self.port = port
        self.ca = ca
        self.indices = indices
        self.n_sids = n_sids
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.round = -1
        self.stats = _RoundStats()
        self.own: dict[int, int] = {}  # sender idx -> own messages seen back this round

    # -- connections -------------------------------------------------------------------

    def _open(self) -> ssl.SSLSocket:
        raw = socket.create_connection((HOST, self.port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.ctx.wrap_socket(raw, server_hostname=HOST)
        return sock

    def connect(self, senders: set[int]) -> None:
        for idx in self.indices:
            sock = self._open()
            if self.kind == "labchat":
                sock.sendall(b"LOGIN %s %s\n" % (user_name(idx).encode(), PASSWORD.encode()))
            else:
                sock.sendall(_resp(b"SUBSCRIBE", CHANNEL))
            sock.setblocking(False)
            conn = _Conn(sock, idx, self.n_sids)
            self.conns[idx] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            if self.kind == "redis" and idx in senders:
                pub = _Conn(self._open(), -1, 0)
                pub.sock.setblocking(False)
                pub.ready = True
                conn.pub = pub
                self.sel.register(pub.sock, selectors.EVENT_READ, pub)

    # -- I/O ---------------------------------------------------------------------------

    def _send(self, conn: _Conn, data: bytes) -> None:
        if conn.dead:
            return
        if conn.out:
            conn.out += data
            return
        try:
            n = conn.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            n = 0
        except OSError as exc:
            conn.dead = f"send: {exc}"
            return
        if n < len(data):
            conn.out = data[n:]
            self._want_write(conn, True)

    def _want_write(self, conn: _Conn, on: bool) -> None:
        if conn.want_write != on:
            conn.want_write = on
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
            self.sel.modify(conn.sock, events, conn)

    def _flush(self, conn: _Conn) -> None:
        data, conn.out = conn.out, b""
        self._want_write(conn, False)
        self._send(conn, data)

    def _read(self, conn: _Conn) -> None:
        chunks = []
        while True:
            try:
                data = conn.sock.recv(262144)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except ssl.SSLWantWriteError:
                break
            except OSError as exc:
                conn.dead = f"recv: {exc}"
                break
            if not data:
                conn.dead = conn.dead or "EOF"
                break
            chunks.append(data)
        if conn.dead:
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
        if not chunks or conn.idx < 0:  # a Redis publisher: replies are ":N" counts, ignored
            return
        now = time.monotonic()
        buf = conn.inbuf + b"".join(chunks)
        if self.kind == "labchat":
            self._lines(conn, buf, now)
        else:
            self._resp_frames(conn, buf, now)

    def _lines(self, conn: _Conn, buf: bytes, now: float) -> None:
        lines = buf.split(b"\n")
        conn.inbuf = lines.pop()
        for line in lines:
            if line.startswith(b"MSG "):
                self._message(conn, line.split(b" ", 2)[2], now)
            elif line.startswith(b"OK"):
                conn.ready = True
            elif line.startswith(b"PING"):
                self._send(conn, b"PONG" + line[4:].rstrip(b"\r") + b"\n")
            elif line.startswith((b"ERR", b"BYE")):
                conn.dead = line.decode(errors="replace")

    def _resp_frames(self, conn: _Conn, buf: bytes, now: float) -> None:
        # Pub/sub pushes are arrays of bulk strings and integers; no payload holds CRLF.
        tokens = buf.split(b"\r\n")
        tail = tokens.pop()
        i, n = 0, len(tokens)
        while i < n:
            head = tokens[i]
            if not head.startswith(b"*"):
                i += 1  # not expected; skip
                continue
            count = int(head[1:])
            j, items = i + 1, []
            while len(items) < count and j < n:
                t = tokens[j]
                if t.startswith(b"$"):
                    if j + 1 >= n:
                        j = n + 1
                        break
                    items.append(tokens[j + 1])
                    j += 2
                else:
                    items.append(t)
                    j += 1
            if len(items) < count or j > n:
                break  # incomplete frame: keep it
            if items[0] == b"message":
                self._message(conn, items[2], now)
            elif items[0] == b"subscribe":
                conn.ready = True
            i = j
        conn.inbuf = b"\r\n".join(tokens[i:] + [tail])

    def _message(self, conn: _Conn, payload: bytes, now: float) -> None:
        rnd, sid, seq, sent_ns = payload.split(b" ")
        st = self.stats
        if int(rnd) != self.round:
            st.stale += 1
            return
        sid, seq = int(sid), int(seq)
        expected = conn.next[sid]
        if seq == expected:
            conn.next[sid] = seq + 1
        elif seq > expected:
            st.lost += seq - expected
            conn.next[sid] = seq + 1
        else:
            st.dup += 1
            return
        st.deliveries += 1
        st.hist.add(now - int(sent_ns) / 1e9)
        if not st.first:
            st.first = now
        st.last = now
        if sid == conn.idx:
            self.own[sid] = self.own.get(sid, 0) + 1

    def poll(self, timeout: float) -> None:
        for key, events in self.sel.select(timeout):
            conn = key.data
            if events & selectors.EVENT_WRITE and conn.out:
                self._flush(conn)
            if events & selectors.EVENT_READ:
                self._read(conn)

    # -- phases ------------------------------------------------------------------------

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if all(c.ready or c.dead for c in self.conns.values()):
                return
            self.poll(0.05)
        raise TimeoutError("members not logged in / subscribed in time")

    def settle(self, quiet: float = 0.3, limit: float = 60.0) -> None:
        """Read until nothing arrives for *quiet* seconds (labchat's JOIN storm ends)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not self.sel.select(quiet):
                return
            self.poll(0)

    def run_round(
        self,
        rnd: int,
        t0: float,
        duration: float,
        senders: list[int],
        rate: float | None,
        window: int,
    ) -> dict[int, int]:
        """Send for *duration* seconds from *t0*; returns messages sent per sender."""
        self.round = rnd
        self.stats = _RoundStats()
        self.own = {}
        for conn in self.conns.values():
            conn.next = array("i", bytes(4 * self.n_sids))
        sent = {s: 0 for s in senders}
        t_end = t0 + duration
        heap: list[tuple[float, int]] = []
        if rate:
            total = max(1, len(senders))
            for k, s in enumerate(senders):
                # Stagger senders evenly over one period so the total rate is smooth.
                heap.append((t0 + (k / total) / rate, s))
            heapq.heapify(heap)
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            if now < t0:
                self.poll(t0 - now)
                continue
            if rate:
                while heap and heap[0][0] <= now:
                    due, s = heapq.heappop(heap)
                    self._send_one(s, sent)
                    if due + 1.0 / rate < t_end:
                        heapq.heappush(heap, (due + 1.0 / rate, s))
                timeout = max(0.0, min(heap[0][0] if heap else t_end, t_end) - time.monotonic())
            else:
                for s in senders:
                    while sent[s] - self.own.get(s, 0) < window:
                        if self.conns[s].dead:
                            break
                        self._send_one(s, sent)
                timeout = max(0.0, t_end - time.monotonic())
            self.poll(timeout)
        return sent

    def _send_one(self, s: int, sent: dict[int, int]) -> None:
        conn = self.conns[s]
        payload = b"%d %d %d %d" % (self.round, s, sent[s], time.monotonic_ns())
        if self.kind == "labchat":
            self._send(conn, b"SAY " + payload + b"\n")
        else:
            assert conn.pub is not None
            self._send(conn.pub, _resp(b"PUBLISH", CHANNEL, payload))
        sent[s] += 1

    def drain(self, expect: dict[int, int], limit: float) -> dict:
        """Read until every member saw every expected message (or *limit* seconds)."""
        deadline = time.monotonic() + limit

        def complete(conn: _Conn) -> bool:
            return all(conn.next[s] >= n for s, n in expect.items())

        waiting = [c for c in self.conns.values() if not c.dead]
        while waiting and time.monotonic() < deadline:
            self.poll(0.05)
            waiting = [c for c in waiting if not c.dead and not complete(c)]
        st = self.stats
        tail = 0
        for conn in self.conns.values():
            for s, n in expect.items():
                if conn.next[s] < n:
                    tail += n - conn.next[s]
        dead = sorted({c.dead for c in self.conns.values() if c.dead})
        return {
            "deliveries": st.deliveries,
            "lost": st.lost + tail,
            "gaps": st.lost,
            "dup": st.dup,
            "stale": st.stale,
            "first": st.first,
            "last": st.last,
            "hist": st.hist.counts,
            "max": st.hist.max,
            "dead": len([c for c in self.conns.values() if c.dead]),
            "dead_reasons": dead[:3],
        }

    def close(self) -> None:
        for conn in self.conns.values():
            for c in (conn, conn.pub):
                if c is not None:
                    try:
                        c.sock.close()
                    except OSError:
                        pass
        self.sel.close()


def _worker_main(pipe, kind, port, ca, indices, n_sids, senders) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    w = Worker(kind, port, ca, indices, n_sids)
    try:
        w.connect(set(senders))
        w.wait_ready(time.monotonic() + SETUP_TIMEOUT)
        pipe.send(("ready", sum(1 for c in w.conns.values() if c.dead)))
        while True:
            while not pipe.poll(0):
                w.poll(0.05)
            cmd = pipe.recv()
            if cmd[0] == "settle":
                w.settle()
                pipe.send(("settled",))
            elif cmd[0] == "round":
                _, rnd, t0, duration, all_senders, rate, window = cmd
                mine = [s for s in all_senders if s in w.conns]
                pipe.send(("sent", w.run_round(rnd, t0, duration, mine, rate, window)))
                expect, limit = pipe.recv()
                pipe.send(("stats", w.drain(expect, limit)))
            elif cmd[0] == "quit":
                break
    except Exception as exc:  # report, don't hang the orchestrator
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        w.close()
        pipe.close()


class Generator:
    """Members 0..n-1 spread round-robin over worker processes; grows with `add`."""

    def __init__(self, kind: str, port: int, ca: str, max_members: int) -> None:
        self.kind = kind
        self.port = port
        self.ca = str(ca)
        self.max_members = max_members
        self.workers: list[tuple[mp.Process, object]] = []
        self.members = 0
        self._round = 0
        self._mp = mp.get_context("fork")

    def add(self, n: int, processes: int, senders: range | list[int] = ()) -> None:
        """Connect members self.members .. self.members+n-1 (and log in / subscribe)."""
        lo, hi = self.members, self.members + n
        sender_set = set(senders)
        pipes = []
        for w in range(processes):
            indices = list(range(lo + w, hi, processes))
            if not indices:
                continue
            parent, child = self._mp.Pipe()
            proc = self._mp.Process(
                target=_worker_main,
                args=(child, self.kind, self.port, self.ca, indices, self.max_members,
                      sorted(sender_set.intersection(indices))),
                daemon=True,
            )  # fmt: skip
            proc.start()
            child.close()
            self.workers.append((proc, parent))
            pipes.append(parent)
        dead = 0
        for pipe in pipes:
            msg = self._recv(pipe, SETUP_TIMEOUT + 10)
            dead += msg[1]
        if dead:
            raise RuntimeError(f"{dead} members failed to log in")
        self.members = hi
        self.settle()

    def settle(self) -> None:
        for _, pipe in self.workers:
            pipe.send(("settle",))
        for _, pipe in self.workers:
            self._recv(pipe, 90)

    @staticmethod
    def _recv(pipe, timeout: float):
        if not pipe.poll(timeout):
            raise TimeoutError("load generator worker did not answer")
        msg = pipe.recv()
        if msg[0] == "error":
            raise RuntimeError(f"load generator worker failed: {msg[1]}")
        return msg

    def run(
        self,
        duration: float,
        senders: list[int],
        rate: float | None,
        window: int = 16,
        drain: float = 10.0,
    ) -> dict:
        """One measured round. rate = messages/s per sender, or None for as fast as possible."""
        self._round += 1
        t0 = time.monotonic() + 0.2
        for _, pipe in self.workers:
            pipe.send(("round", self._round, t0, duration, senders, rate, window))
        expect: dict[int, int] = {}
        for _, pipe in self.workers:
            expect.update(self._recv(pipe, duration + 30)[1])
        for _, pipe in self.workers:
            pipe.send((expect, drain))
        parts = [self._recv(pipe, drain + 30)[1] for _, pipe in self.workers]
        return summarize(parts, t0, duration, self.members, sum(expect.values()), rate, senders)

    def close(self) -> None:
        for _proc, pipe in self.workers:
            try:
                pipe.send(("quit",))
            except OSError:
                pass
        for proc, pipe in self.workers:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            pipe.close()
        self.workers = []

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summarize(parts, t0, duration, members, sent, rate, senders) -> dict:
    hist = [sum(col) for col in zip(*(p["hist"] for p in parts), strict=True)]
    deliveries = sum(p["deliveries"] for p in parts)
    last = max((p["last"] for p in parts if p["last"]), default=t0)
    span = max(last - t0, 1e-9)
    return {
        "members": members,
        "senders": len(senders),
        "rate_per_sender": rate,
        "duration": duration,
        "sent": sent,
        "expected": sent * members,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / span,
        "messages_per_s": sent / span,
        "lost": sum(p["lost"] for p in parts),
        "gaps": sum(p["gaps"] for p in parts),
        "dup": sum(p["dup"] for p in parts),
        "stale": sum(p["stale"] for p in parts),
        "dead": sum(p["dead"] for p in parts),
        "dead_reasons": sorted({r for p in parts for r in p["dead_reasons"]})[:3],
        "p50_ms": percentile_from_hist(hist, 0.50) * 1e3,
        "p99_ms": percentile_from_hist(hist, 0.99) * 1e3,
        "max_ms": max((p["max"] for p in parts), default=float("nan")) * 1e3,
    }


def processes_for(n: int) -> int:
    cores = os.cpu_count() or 2
    if n <= 50:
        return 1
    if n <= 200:
        return 2
    return max(2, min(4, 2 * cores))


def fanout_once(
    kind: str,
    port: int,
    ca: str,
    n: int,
    *,
    senders: int,
    rate: float | None,
    duration: float,
    window: int = 16,
) -> dict:
    """Connect *n* members, run one round, close. Convenience for the smoke test."""
    with Generator(kind, port, ca, n) as gen:
        gen.add(n, processes_for(n), range(senders))
        return gen.run(duration, list(range(senders)), rate, window)
