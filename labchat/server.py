"""The labchat/1 server: blocking sockets, one thread per connection, one room.

How the pieces fit (docs/architecture.md has the picture):

* The accept loop only accepts. The TLS handshake runs in the connection's own thread, with a
  timeout, so one silent client cannot block everybody else's connect.
* Each connection's socket has exactly one owner: its `Session` thread reads it and writes it.
  OpenSSL objects are not thread-safe (CPython gh-151508, gh-143756), so other threads never
  touch an SSL socket; they append encoded lines to the session's bounded `Outbox` and wake
  the owner through a socketpair.
* The `Room` (labchat.room) holds one lock. Accepting a SAY, numbering it and putting it into
  every member's outbox happens under that lock, which gives every member the same total order.
* What each line means lives elsewhere, without I/O: the wire format in `labchat.protocol`, the
  command rules in `labchat.commands`, credentials in `labchat.auth`. A session only moves
  bytes, keeps the time, and hands each framed line to `Commands.handle_frame`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from pathlib import Path

from . import protocol as p
from .auth import Authenticator, UserStore
from .certs import lab_cert_paths
from .commands import Commands
from .limits import Limits
from .room import Room
from .session import Session, SessionTimers, Waiter
from .tls import server_context

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_USERS",
    "Limits",
    "Room",
    "Server",
    "Session",
    "SessionTimers",
    "SourceSlots",
    "source_of",
]

log = logging.getLogger("labchat.server")

DEFAULT_PORT = 5050
DEFAULT_USERS = Path("certs") / "users.json"


def source_of(peer: tuple) -> str:
    """The address a client is counted under, for budgets and login throttling.

    IPv4 addresses as they are (an IPv4-mapped IPv6 address as its IPv4 form); IPv6 by its
    /64 prefix, because one IPv6 host usually owns a whole /64 and could otherwise count as
    2**64 classmates. (OpenSSH groups addresses the same way for PerSourceMaxStartups with
    PerSourceNetBlockSize; IRC servers count IPv6 clones per /64.)
    """
    host = str(peer[0])
    if ":" not in host:
        return host  # IPv4, as the kernel wrote it: the common case, on every accept
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class SourceSlots:
    """At most *per_source* holders per source address at once; others wait, up to a deadline.

    Used for TLS handshakes in progress: one address cannot have more than a few handshakes
    costing CPU at a time, and its further connections wait their turn instead of crowding
    out everybody else's (they still count against max_pending_per_source).

    Args:
        per_source: Holders allowed per source.
    """

    def __init__(self, per_source: int) -> None:
        self.per_source = per_source
        self._busy: dict[str, int] = {}
        self._changed = threading.Condition()
        self._closed = False

    def acquire(self, source: str, deadline: float) -> bool:
        """Wait until *source* has a free slot (True) or *deadline* passes (False)."""
        with self._changed:
            while not self._closed and self._busy.get(source, 0) >= self.per_source:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            if self._closed:
                return False
            self._busy[source] = self._busy.get(source, 0) + 1
            return True

    def release(self, source: str) -> None:
        """Give back a slot taken by `acquire`."""
        with self._changed:
            left = self._busy[source] - 1
            if left:
                self._busy[source] = left
            else:
                del self._busy[source]
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiter: the server is shutting down."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class Server:
    """A labchat/1 chat server running in background threads.

    Use it as a context manager in notebooks and tests::

        with Server(port=0, certs_dir=tmp, users=tmp / "users.json") as server:
            host, port = server.address

    Leaving the block (or `close()`) sends BYE to every client, closes every socket and joins
    every thread.

    Args:
        host: Address to listen on (127.0.0.1 by default: a lab server is local unless a
            teacher chooses otherwise).
        port: Port to listen on; 0 picks a free one (see `address`).
        certs_dir: Directory with server.pem and server.key (made by `labchat certs`).
        certfile, keyfile: Explicit certificate and key, overriding certs_dir.
        users: Users file path, a `UserStore` or a ready `Authenticator`.
        plain: Serve plaintext labchat/1 (insecure; for the lesson on what plaintext exposes).
        tls_version: "1.2" or "1.3" to pin one version; None allows both.
        keylog: Write TLS secrets to this NSS key log file (lets Wireshark/scapy decrypt).
        client_ca: Require client certificates signed by this CA (mutual TLS).
        require_cert_user: With *client_ca*: a LOGIN must name the account that the client
            certificate's common name says (alice's certificate logs in as alice only).
        **limits: Any field of `Limits` (e.g. max_clients=10, idle_timeout=5).

    Raises:
        FileNotFoundError: the certificate or key is missing (run `labchat certs`).
        labchat.tls.KeyPermissionError: the server key is readable by others.
        ValueError: *require_cert_user* without *client_ca*.
        labchat.tls.KeylogError: *keylog* is a symbolic link, not yours, or readable by others.
        OSError: the address cannot be bound.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        certs_dir: str | os.PathLike = "certs",
        certfile: str | os.PathLike | None = None,
        keyfile: str | os.PathLike | None = None,
        users: str | os.PathLike | UserStore | Authenticator = DEFAULT_USERS,
        plain: bool = False,
        tls_version: str | None = None,
        keylog: str | os.PathLike | None = None,
        client_ca: str | os.PathLike | None = None,
        require_cert_user: bool = False,
        **limits: float,
    ) -> None:
        unknown = set(limits) - set(Limits.names())
        if unknown:
            raise TypeError(f"unknown server limit(s): {', '.join(sorted(unknown))}")
        if require_cert_user and (plain or client_ca is None):
            raise ValueError("require_cert_user needs TLS with client certificates (client_ca)")
        self.limits = Limits(**limits)  # type: ignore[arg-type]
        self.tls = not plain
        self.tls_version = tls_version
        self.ssl_context: ssl.SSLContext | None = None
        if self.tls:
            paths = lab_cert_paths(certs_dir)
            cert = Path(certfile or paths.server_cert)
            key = Path(keyfile or paths.server_key)
            for path in (cert, key):
                if not path.exists():
                    raise FileNotFoundError(
                        f"{path} not found: create the lab certificates with `labchat certs`"
                    )
            self.ssl_context = server_context(
                cert, key, tls_version=tls_version, keylog=keylog, client_ca=client_ca
            )
        if isinstance(users, Authenticator):
            self.auth = users
        else:
            store = users if isinstance(users, UserStore) else UserStore(users)
            self.auth = Authenticator(
                store,
                throttle=self.limits.throttle(),
                max_concurrent_hashes=self.limits.max_hashes,
                hashes_per_source=self.limits.hashes_per_source,
            )
        self.room = Room()
        self.commands = Commands(self.room, self.auth, require_cert_user=require_cert_user)
        self.handshake_slots = SourceSlots(self.limits.max_handshakes_per_source)
        self._pending: dict[str, int] = {}  # source -> sessions not logged in (under the lock)
        self._refused: dict[str, tuple[float, int]] = {}  # source -> (last warning, count)
        self.hello = p.encode(p.Hello(f"welcome to labchat on {self.describe()}"))
        self._host, self._port = host, port
        self._listener: socket.socket | None = None
        self._sessions: set[Session] = set()
        self._sessions_lock = threading.Lock()
        self._accept_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._rejecters = threading.BoundedSemaphore(32)
        self._busy_threads: set[threading.Thread] = set()
        self.address: tuple[str, int] = (host, port)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Server:
        """Bind, listen and start accepting in a background thread. Returns self."""
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._port))
            listener.listen(min(socket.SOMAXCONN, 1024))
        except OSError:
            listener.close()
            self._close_wake()
            raise
        self._listener = listener
        self.address = listener.getsockname()[:2]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="labchat-accept", daemon=True
        )
        self._accept_thread.start()
        log.info("listening on %s:%s (%s)", *self.address, self.describe())
        return self

    def describe(self) -> str:
        if not self.tls:
            return "plaintext, INSECURE"
        versions = f"TLS {self.tls_version}" if self.tls_version else "TLS 1.2-1.3"
        return versions

    def __enter__(self) -> Server:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, reason: str = "server shutting down") -> None:
        """Say BYE to every client, close every socket and join every thread."""
        if self._closing.is_set() and self._listener is None:
            return
        self._closing.set()
        self.handshake_slots.close()
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass
        if self._accept_thread is not None:
            self._accept_thread.join()
        with self._sessions_lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.request_stop(reason)
        deadline = time.monotonic() + 2.0
        for session in sessions:
            session.thread.join(max(0.0, deadline - time.monotonic()))
        for session in sessions:  # stuck in a handshake, a login hash or a blocked write
            if session.thread.is_alive():
                session.interrupt()
        for session in sessions:
            session.thread.join()
        with self._sessions_lock:
            busy, self._busy_threads = self._busy_threads, set()
        for thread in busy:  # each ends within its 2 s timeout
            thread.join()
        self._close_wake()
        log.info("server closed")

    def _close_wake(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    @property
    def client_count(self) -> int:
        with self._sessions_lock:
            return len(self._sessions)

    # -- accepting -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        # One poller for the loop's life (not one per accepted connection): the listener and
        # the close() wake-up pipe.
        waiter = Waiter(self._wake_r, listener)
        try:
            while not self._closing.is_set():
                woken, _ = waiter.wait(True, None)
                if woken:
                    break
                try:
                    sock, peer = listener.accept()
                except OSError as exc:  # e.g. EMFILE: say so, back off, keep serving
                    log.warning("accept failed: %s", exc)
                    time.sleep(0.05)
                    continue
                self._admit(sock, peer)
        finally:
            listener.close()
            self._listener = None

    def _admit(self, sock: socket.socket, peer: tuple) -> None:
        source = source_of(peer)
        with self._sessions_lock:
            over = self._pending.get(source, 0) >= self.limits.max_pending_per_source
            full = not over and len(self._sessions) >= self.limits.max_clients
            if not over and not full:
                session = Session(self, sock, peer, source)
                self._sessions.add(session)
                self._pending[source] = self._pending.get(source, 0) + 1
        if over:
            self._refuse_source(sock, source)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Bound the kernel's send buffer too: Linux grows it up to tcp_wmem's maximum (4 MiB)
        # for a client that does not read, which would hold megabytes per client before
        # outbox_bytes ever applies. The kernel doubles the value for its bookkeeping.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.outbox_bytes)
        if full:
            self._reject_busy(sock, peer)
            return
        log.info("connect from %s:%s", peer[0], peer[1])
        try:
            session.thread.start()
        except RuntimeError as exc:  # out of threads: refuse this one, keep serving the rest
            log.error("cannot start a thread for %s:%s: %s", peer[0], peer[1], exc)
            self.forget(session)
            session.close_unstarted()

    def _refuse_source(self, sock: socket.socket, source: str) -> None:
        # One address already has max_pending_per_source connections that have not logged
        # in: close this one at once, before any TLS work (a handshake to say "busy" would
        # cost the CPU that the budget is there to save). Like nginx's limit_conn, but only
        # for connections that have not logged in: students who are in are never evicted.
        # Without TLS the one line costs nothing, so it is said.
        if not self.tls:
            try:
                sock.setblocking(False)
                sock.send(p.encode(p.Err("busy", "too many connections from your address")))
            except OSError:
                pass
        sock.close()
        # One warning per address per 10 s, with a count: a flood must not flood the log.
        now = time.monotonic()
        last, count = self._refused.get(source, (0.0, 0))
        if now - last >= 10.0:
            log.warning(
                "refusing %s: %d connections not logged in yet (%d refused since last said)",
                source,
                self.limits.max_pending_per_source,
                count + 1,
            )
            self._refused[source] = (now, 0)
            if len(self._refused) > 1024:  # forget the quiet ones
                self._refused = {k: v for k, v in self._refused.items() if now - v[0] < 10.0}
        else:
            self._refused[source] = (last, count + 1)

    def _reject_busy(self, sock: socket.socket, peer: tuple) -> None:
        log.warning("refusing %s:%s: %d clients already", peer[0], peer[1], self.limits.max_clients)
        # The TLS handshake needed to say "busy" must not run in the accept loop; a few
        # short-lived threads do it, and past that the connection is simply closed.
        if not self._rejecters.acquire(blocking=False):
            sock.close()
            return
        thread = threading.Thread(target=self._busy_reply, args=(sock,), daemon=True)
        with self._sessions_lock:
            self._busy_threads = {t for t in self._busy_threads if t.is_alive()} | {thread}
        thread.start()

    def _busy_reply(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(2.0)
            conn = sock
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(sock, server_side=True)
            conn.sendall(p.encode(p.Err("busy", "server full, try again later")))
            conn.close()
        except (OSError, ValueError):
            pass
        finally:
            sock.close()
            self._rejecters.release()

    def logged_in(self, session: Session) -> None:
        """*session* has logged in: it no longer counts against its address's budget."""
        with self._sessions_lock:
            self._leave_pending(session)

    def forget(self, session: Session) -> None:
        """*session* has ended (called from its own thread, last)."""
        with self._sessions_lock:
            self._sessions.discard(session)
            self._leave_pending(session)

    def _leave_pending(self, session: Session) -> None:
        # Called with the sessions lock held; once per session (the flag makes it so).
        if session.counted_pending:
            session.counted_pending = False
            left = self._pending[session.source] - 1
            if left:
                self._pending[session.source] = left
            else:
                del self._pending[session.source]
