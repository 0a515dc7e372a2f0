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

__all__ = ["DEFAULT_PORT", "DEFAULT_USERS", "Limits", "Room", "Server", "Session", "SessionTimers"]

log = logging.getLogger("labchat.server")

DEFAULT_PORT = 5050
DEFAULT_USERS = Path("certs") / "users.json"


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
        **limits: Any field of `Limits` (e.g. max_clients=10, idle_timeout=5).

    Raises:
        FileNotFoundError: the certificate or key is missing (run `labchat certs`).
        labchat.tls.KeyPermissionError: the server key is readable by others.
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
        **limits: float,
    ) -> None:
        unknown = set(limits) - set(Limits.names())
        if unknown:
            raise TypeError(f"unknown server limit(s): {', '.join(sorted(unknown))}")
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
            self.auth = Authenticator(store)
        self.room = Room()
        self.commands = Commands(self.room, self.auth)
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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Bound the kernel's send buffer too: Linux grows it up to tcp_wmem's maximum (4 MiB)
        # for a client that does not read, which would hold megabytes per client before
        # outbox_bytes ever applies. The kernel doubles the value for its bookkeeping.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.outbox_bytes)
        with self._sessions_lock:
            full = len(self._sessions) >= self.limits.max_clients
            if not full:
                session = Session(self, sock, peer)
                self._sessions.add(session)
        if full:
            self._reject_busy(sock, peer)
            return
        log.info("connect from %s:%s", peer[0], peer[1])
        try:
            session.thread.start()
        except RuntimeError as exc:  # out of threads: refuse this one, keep serving the rest
            log.error("cannot start a thread for %s:%s: %s", peer[0], peer[1], exc)
            self._forget(session)
            session.close_unstarted()

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

    def _forget(self, session: Session) -> None:
        with self._sessions_lock:
            self._sessions.discard(session)
