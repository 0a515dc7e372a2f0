"""One client connection of the labchat server: the thread that owns its socket.

Only the session's own thread reads or writes its socket (OpenSSL objects are not
thread-safe: CPython gh-151508, gh-143756). Other threads append encoded lines to its
bounded `Outbox` and wake it through a socketpair; the thread waits in `poll` on its socket
and that pipe, flushes the outbox, reads what arrived, hands each framed line to the
server's `Commands`, and keeps the deadlines (`SessionTimers`).
"""

from __future__ import annotations

import logging
import secrets
import select
import socket
import ssl
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from . import protocol as p
from .limits import Limits

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Outbox", "Session", "SessionTimers", "TokenBucket", "Waiter"]

log = logging.getLogger("labchat.server")

# The first byte of every TLS connection is a handshake record (content type 22, RFC 8446
# section 5.1). Peeking at it lets the server tell a learner who points `nc` at the TLS port
# (or a TLS client at a plaintext port) what went wrong, instead of failing silently.
_TLS_HANDSHAKE_BYTE = 0x16


class SessionTimers:
    """The four deadlines of a session's loop, worked out in one place.

    * login: `login_timeout` after the connection started, until a LOGIN succeeds;
    * line: `line_timeout` after a line was started, until it is finished;
    * idle: `idle_timeout` after the last input, when the server sends PING;
    * ping: `ping_timeout` after that PING, unless some input arrived.

    Args:
        limits: The server's limits.
        start: When the connection started (monotonic seconds).
    """

    def __init__(self, limits: Limits, start: float) -> None:
        self.limits = limits
        self.connected = start
        self.last_input = start
        self.line_started: float | None = None
        self.ping_sent: float | None = None

    def next(self, *, logged_in: bool) -> tuple[float, str]:
        """The earliest deadline and its name: ``"login"``, ``"line"``, ``"idle"``, ``"ping"``."""
        limits = self.limits
        deadlines = []
        if not logged_in:
            deadlines.append((self.connected + limits.login_timeout, "login"))
        if self.line_started is not None:
            deadlines.append((self.line_started + limits.line_timeout, "line"))
        if self.ping_sent is None:
            deadlines.append((self.last_input + limits.idle_timeout, "idle"))
        else:
            deadlines.append((self.ping_sent + limits.ping_timeout, "ping"))
        return min(deadlines)

    def input(self, now: float, *, in_line: bool) -> None:
        """Bytes arrived: the client is alive; *in_line*: a line is still unfinished."""
        self.last_input, self.ping_sent = now, None
        self.line_started = (self.line_started or now) if in_line else None

    def hold(self, now: float) -> None:
        """Flood control is holding lines back, so the server is the one not reading: the
        idle and line timers must not run against the client meanwhile."""
        self.last_input = now
        if self.line_started is not None:
            self.line_started = now


class Outbox:
    """Bytes waiting to be written to one client, bounded in size. Safe from any thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, *, force: bool = False) -> bool:
        """Queue *data*; return False (and queue nothing) if it would exceed the limit.

        *force* queues it anyway without counting it against the limit: lines handed over
        from a replaced connection (at most two outboxes' worth) must not get the new
        connection dropped as a slow consumer before it has written anything.
        """
        with self._lock:
            if force:
                self._chunks.append(data)
                return True
            if self._size + len(data) > self.limit:
                return False
            self._chunks.append(data)
            self._size += len(data)
            return True

    def take(self) -> bytes:
        """Everything queued, as one buffer: one write (and one TLS record) per wake-up."""
        with self._lock:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return data

    def __len__(self) -> int:
        """Bytes queued and counted against the limit."""
        with self._lock:
            return self._size


class TokenBucket:
    """Flood control: *burst* lines at once, then *rate* lines per second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


class Waiter:
    """A wait for "woken up, or the socket is readable", built once per session (and once
    for the accept loop).

    A fresh poll object per loop turn costs two `register()` calls; the session loop turns
    once per delivered line, so it keeps two: one watching the wake-up pipe and the socket,
    one (used while flood control holds lines back) watching the pipe only.
    """

    def __init__(self, wake: socket.socket, sock: socket.socket) -> None:
        self._wake, self._sock = wake, sock
        self._wake_fd, self._sock_fd = wake.fileno(), sock.fileno()
        self._both = self._wake_only = None
        if hasattr(select, "poll"):
            self._both, self._wake_only = select.poll(), select.poll()
            for poller in (self._both, self._wake_only):
                poller.register(self._wake_fd, select.POLLIN)
            self._both.register(self._sock_fd, select.POLLIN)

    def wait(self, with_sock: bool, timeout: float | None) -> tuple[bool, bool]:
        """Block up to *timeout* seconds (None: no limit); return (woken, socket readable).

        select() only takes descriptors below FD_SETSIZE (1024); 512 clients need about 1,500
        (a socket and a wake-up pair each), so poll() is used where there is one.
        """
        if self._both is None:  # no poll() (Windows): select() on the two sockets
            socks = [self._wake, self._sock] if with_sock else [self._wake]
            ready = select.select(socks, [], [], timeout)[0]
            return self._wake in ready, self._sock in ready
        poller = self._both if with_sock else self._wake_only
        woken = readable = False
        for fd, _ in poller.poll(None if timeout is None else timeout * 1000):
            if fd == self._wake_fd:
                woken = True
            else:
                readable = True  # POLLIN, or POLLHUP/POLLERR: recv() will say which
        return woken, readable


def _wait_io(sock: socket.socket, writing: bool, timeout: float) -> bool:
    """Wait up to *timeout* seconds until *sock* is writable (or readable); True if it is."""
    if not hasattr(select, "poll"):
        lists = ([], [sock], []) if writing else ([sock], [], [])
        return any(select.select(*lists, timeout))
    poller = select.poll()
    poller.register(sock, select.POLLOUT if writing else select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _close_gently(sock: socket.socket, linger: float) -> None:
    """Send our FIN, discard what the peer sent (for up to *linger* seconds, until its FIN),
    then close: a close with unread bytes would be a RST that can destroy our last line."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        deadline = time.monotonic() + linger
        while True:
            try:
                if not sock.recv(65536):
                    break  # the peer's FIN: nothing more can arrive
            except (BlockingIOError, InterruptedError):
                left = deadline - time.monotonic()
                if left <= 0 or not _wait_io(sock, False, left):
                    break
    except (OSError, ValueError):
        pass
    sock.close()


class _Closing(Exception):
    """Raised inside a session thread to end it; carries the ERR line to send, if any."""

    def __init__(self, reason: str, farewell: p.ServerMessage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.farewell = farewell


class Session:
    """One client connection. Only its own thread reads or writes its socket."""

    # Bytes per recv: a few TLS records' worth. Bigger reads don't help a line protocol.
    RECV_SIZE = 16 * 1024

    def __init__(self, server: Server, sock: socket.socket, peer: tuple, source: str) -> None:
        self.server = server
        self.limits = server.limits
        self.raw = sock
        self.sock: socket.socket = sock
        self.peer = peer
        self.source = source  # the address budgets and login throttling count (source_of)
        self.counted_pending = True  # counts against max_pending_per_source (server's lock)
        self.started = time.monotonic()  # accepted: every pre-login deadline counts from here
        self.user: str | None = None
        self.operator = False  # set at login from the users file
        self.cert_name: str | None = None  # the client certificate's CN, with mutual TLS
        self.outbox = Outbox(self.limits.outbox_bytes)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False  # a wake-up byte is in the pipe (see wake)
        # Set from other threads: why this session must end, and its last line.
        self._stop: tuple[str, p.ServerMessage | None] | None = None
        self._slow = False
        self._handshaking = True
        # What is being written (see _flush and hand_over): the chunk taken from the outbox
        # and how much of it the socket has taken. The lock makes "take from the outbox and
        # remember it" one step for hand_over, which runs in the thread of the new login.
        self._write_lock = threading.Lock()
        self._inflight = b""
        self._sent = 0
        self._handed_over = False
        self._write_broken = False  # a write was given up half way: no farewell after it
        self.thread = threading.Thread(
            target=self.run, name=f"labchat-session-{peer[0]}:{peer[1]}", daemon=True
        )

    # -- called from other threads ---------------------------------------------------------

    def queue(self, data: bytes, *, force: bool = False) -> None:
        """Queue *data* without waking the thread (the room calls `wake()` afterwards; the
        session's own replies need no wake-up, its thread writes them next). *force*: see
        `Outbox.put`."""
        if self._slow:
            return
        if not self.outbox.put(data, force=force):
            # Redis and IRC servers drop a client whose output backs up rather than let it
            # hold memory or stall the room. Everything already queued stays in order.
            self._slow = True

    def wake(self) -> None:
        """Make the session's thread flush its outbox soon (after `queue()`). Never blocks."""
        # One wake-up byte is enough until the owner drains it: skipping the send() when one
        # is already pending saves a system call (and a GIL hand-off) per queued line while
        # the room fans out to busy members. Callers queue *before* calling wake(); the owner
        # clears the flag after draining the pipe and before taking the outbox (_drain_wake).
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake-pending (pipe full) or closing

    def request_stop(self, reason: str) -> None:
        """Ask the session to say BYE and close (server shutdown)."""
        self.close_soon(reason, p.Bye(reason))

    def close_soon(self, reason: str, farewell: p.ServerMessage | None) -> None:
        """Ask the session to send *farewell* (if any) and close. Never blocks."""
        if self._stop is None:
            self._stop = (reason, farewell)
        self.wake()

    def hand_over(self, farewell: p.ServerMessage) -> bytes:
        """Give up this connection to a new login of the same user (see `Room.join`).

        Returns every line not yet completely written to this connection: the rest of the
        chunk being written, from the start of its first line not fully taken by the socket,
        then everything still queued. The session takes nothing more from its outbox; it
        finishes the write it is in the middle of if the connection takes it (TLS cannot drop
        half a record), sends *farewell* and closes. A line may so reach both connections,
        but none reaches neither. If this connection had fallen so far behind that lines were
        dropped (slow consumer), an `ERR slow-consumer` line at the end says so.
        """
        with self._write_lock:
            self._handed_over = True
            chunk, sent = self._inflight, self._sent
            start = chunk.rfind(b"\n", 0, sent) + 1 if sent < len(chunk) else len(chunk)
            unsent = chunk[start:] + self.outbox.take()
        if self._slow:
            unsent += p.encode(
                p.Err(
                    "slow-consumer",
                    f"your previous connection fell more than {self.limits.outbox_bytes} bytes "
                    "behind; lines after that were not kept",
                )
            )
        if unsent:
            log.info("%s: %d unsent bytes move to the new connection", self.label(), len(unsent))
        self.close_soon("replaced by a new login", farewell)
        return unsent

    def interrupt(self) -> None:
        """Break a thread stuck in a handshake or blocking read. Only shuts the raw fd down:
        the kernel call is thread-safe, unlike touching the SSL object."""
        try:
            self.raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- what the commands need (labchat.commands.Caller) ----------------------------------

    def label(self) -> str:
        """``user@host:port`` once logged in, ``host:port`` before: for log lines."""
        where = f"{self.peer[0]}:{self.peer[1]}"
        return f"{self.user}@{where}" if self.user else where

    # -- the session thread ----------------------------------------------------------------

    def run(self) -> None:
        reason = "closed"
        farewell_sent = False
        try:
            self._handshake()
            self._handshaking = False
            # From here on the socket is non-blocking, set once: the loop waits in poll() with
            # its own deadlines. A socket with a timeout costs an ioctl per settimeout() and,
            # for TLS, a poll() before every SSL_write (CPython's _ssl checks writability
            # first), each one a GIL hand-off; the loop turns once per delivered line.
            self.sock.setblocking(False)
            self._write(self.server.hello)
            self._loop()
        except _Closing as closing:
            reason = closing.reason
            if closing.farewell is not None:
                farewell_sent = self._write_best_effort(p.encode(closing.farewell))
        except ssl.SSLError as exc:
            reason = f"TLS error: {exc.reason or exc}"
        except TimeoutError:
            reason = "timed out"
        except OSError as exc:
            reason = f"connection error: {exc.strerror or exc}"
        except Exception:  # a bug must not take the server down with it
            log.exception("session %s crashed", self.label())
            reason = "internal error"
        finally:
            self._finish(reason, farewell_sent)

    def _handshake(self) -> None:
        """Peek at the first byte, then do the TLS handshake, all before one deadline.

        The deadline is `handshake_timeout` after the connection was accepted, whatever the
        client sends: a per-read timeout would let a client that trickles one byte every few
        seconds hold its slot for ever. At most `max_handshakes_per_source` handshakes per
        address run at once; the others wait here, within the same deadline.
        """
        if not self.server.tls:
            return
        deadline = self.started + self.limits.handshake_timeout
        if not self.server.handshake_slots.acquire(self.source, deadline):
            raise _Closing("handshake timeout (waiting behind this address's handshakes)")
        try:
            self._handshake_before(deadline)
        finally:
            self.server.handshake_slots.release(self.source)
        # DEBUG, not INFO: the version and cipher go on the login line, so a connection
        # logs connect, login and disconnect (three lines, not four; each one is a
        # LogRecord, a formatted time and a write() on the handshake's critical path).
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s TLS handshake done: %s", self.label(), self.tls_summary())

    def _handshake_before(self, deadline: float) -> None:
        self.raw.setblocking(False)
        if not _wait_io(self.raw, False, max(0.0, deadline - time.monotonic())):
            raise _Closing("handshake timeout (nothing sent)")
        first = self.raw.recv(1, socket.MSG_PEEK)
        if not first:
            raise _Closing("closed before the TLS handshake")
        if first[0] != _TLS_HANDSHAKE_BYTE:
            # Plaintext (nc, a browser's GET /) on the TLS port: explain in plaintext.
            raise _Closing(
                "plaintext client on the TLS port",
                p.Err("syntax", "this port speaks TLS; use labchat chat or openssl s_client"),
            )
        assert self.server.ssl_context is not None
        tls = self.server.ssl_context.wrap_socket(
            self.raw, server_side=True, do_handshake_on_connect=False
        )
        self.sock = tls
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writing = False
            except ssl.SSLWantWriteError:
                writing = True
            if not _wait_io(tls, writing, max(0.0, deadline - time.monotonic())):
                raise _Closing("handshake timeout")
        peer = tls.getpeercert()
        if peer:  # mutual TLS: the certificate's common name, for require_cert_user
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        self.cert_name = value

    def tls_summary(self) -> str:
        """``"TLSv1.3 TLS_AES_256_GCM_SHA384"`` after the handshake; "plaintext" without TLS."""
        if not isinstance(self.sock, ssl.SSLSocket):
            return "plaintext"
        cipher = self.sock.cipher()
        return f"{self.sock.version()} {cipher[0] if cipher else ''}".strip()

    def _loop(self) -> None:
        limits = self.limits
        reader = p.LineReader()
        bucket = TokenBucket(limits.flood_burst, limits.flood_rate)
        pending: deque[p.FrameEvent] = deque()
        timers = SessionTimers(limits, self.started)
        waiter = Waiter(self._wake_r, self.sock)
        is_tls = isinstance(self.sock, ssl.SSLSocket)

        while True:
            now = time.monotonic()
            if self._stop is not None:
                raise _Closing(*self._stop)
            if self._slow:
                raise _Closing(
                    "slow consumer",
                    p.Err("slow-consumer", f"more than {limits.outbox_bytes} bytes unread"),
                )
            self._flush()

            # Lines already read but held back by flood control go first.
            self._handle_pending(pending, bucket, now)
            if pending:
                # We do not read while lines are held back, so the rest of a partial line
                # cannot arrive and a PONG cannot be seen: the line and idle timers wait too.
                # Otherwise a paste of a few hundred lines ends in "ERR timeout".
                timers.hold(now)

            # The earliest deadline decides how long poll() may sleep.
            due, what = timers.next(logged_in=self.user is not None)
            wake_at = min(due, now + bucket.wait_time(now)) if pending else due
            wait = max(0.0, wake_at - now)

            # While lines are held back we stop reading: the client's own TCP window fills,
            # and nobody else waits for it.
            if not pending and is_tls and self.sock.pending():
                woken, readable = False, True  # decrypted bytes already buffered in OpenSSL
            else:
                woken, readable = waiter.wait(not pending, wait)
            if woken:
                self._drain_wake()

            now = time.monotonic()
            if readable:
                data = self._read()
                if data is None:
                    continue  # a TLS record still arriving
                if not data:
                    raise _Closing("peer closed the connection")
                pending.extend(reader.feed(data))
                timers.input(now, in_line=reader.in_line)
                self._handle_pending(pending, bucket, now)
                continue

            # Nothing to read: the earliest deadline may have passed. (Several at once are
            # handled one per turn, earliest first.)
            if now < due:
                continue
            if what == "login":
                raise _Closing("login timeout", p.Err("timeout", "no LOGIN in time"))
            if what == "line":
                raise _Closing("line timeout", p.Err("timeout", "line not finished in time"))
            if what == "ping":
                raise _Closing("idle timeout", p.Err("timeout", "no answer to PING"))
            timers.ping_sent = now  # "idle": ask whether the client is still there
            self._write(p.encode(p.Ping(secrets.token_hex(4))))

    def _handle_pending(
        self,
        pending: deque[p.FrameEvent],
        bucket: TokenBucket,
        now: float,
    ) -> None:
        while pending and bucket.take(now):
            was_in = self.user is not None
            hangup = self.server.commands.handle_frame(self, pending.popleft(), self._reply)
            if not was_in and self.user is not None:
                self.server.logged_in(self)  # no longer counts against its address's budget
            if hangup is not None:
                raise _Closing(hangup.reason, hangup.farewell)
            # Write replies as they come: the echoes of a burst must not fill our own
            # outbox and get a client that reads everything dropped as a slow consumer.
            self._flush()

    def _read(self) -> bytes | None:
        # Non-blocking: if only part of a TLS record has arrived, come back to the loop (and
        # the outbox) rather than wait for the rest; poll() says when more arrives.
        try:
            return self.sock.recv(self.RECV_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return None

    def _reply(self, message: p.ServerMessage) -> None:
        # Replies to our own commands only go into the outbox: this thread writes it as soon
        # as the command is handled, so waking ourselves would be a wasted system call.
        self.queue(p.encode(message))

    def _flush(self) -> None:
        with self._write_lock:
            if self._handed_over:
                return  # a new login has these lines (hand_over)
            data = self.outbox.take()
            if not data:
                return
            self._inflight, self._sent = data, 0
        self._write_inflight()

    def _write(self, data: bytes) -> None:
        """Write *data* (HELLO, PING) behind whatever is queued, through the same path."""
        self.queue(data, force=True)
        self._flush()

    def _write_inflight(self) -> None:
        # The socket is non-blocking. While the kernel's send buffer is full, wait for room in
        # short slices instead of one long wait: a write blocked on a client that does not
        # read must notice when its outbox overflows (queue() sets _slow from another
        # thread), or a new login takes the connection over, instead of sitting out the
        # whole write_timeout. Retrying send() with the same bytes after SSLWantWriteError is
        # what OpenSSL asks for (CPython sets SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER); a plain
        # socket reports what it sent. _sent only grows here, in the owner's thread.
        view = memoryview(self._inflight)
        deadline: float | None = None
        while self._sent < len(view):
            try:
                self._sent += self.sock.send(view[self._sent :])
                continue
            except (ssl.SSLWantWriteError, BlockingIOError):
                writing = True
            except ssl.SSLWantReadError:  # TLS 1.2 renegotiation: OpenSSL must read first
                writing = False
            now = time.monotonic()
            if deadline is None:
                deadline = now + self.limits.write_timeout
            ready = _wait_io(self.sock, writing, min(0.25, self.limits.write_timeout))
            if not ready and (self._slow or self._handed_over):
                # No ERR: the pipe is full and a record is half written. (Handed over: the
                # new connection has this chunk from its first unfinished line.)
                self._write_broken = True
                raise _Closing("slow consumer (not reading)" if self._slow else "replaced")
            if time.monotonic() >= deadline:
                self._write_broken = True
                raise _Closing("write timed out (client not reading)")

    def _write_best_effort(self, data: bytes) -> bool:
        """Write what is queued, then *data*, within about a second; True if it went out."""
        if self._write_broken:
            return False  # OpenSSL would refuse (or garble) a new write after a broken one
        try:
            self._flush_quick()
            self.sock.settimeout(1.0)
            self.sock.sendall(data)
        except (OSError, ValueError):
            return False
        return True

    def _flush_quick(self) -> None:
        with self._write_lock:
            data = b"" if self._handed_over else self.outbox.take()
        if data and not self._slow:
            self.sock.settimeout(1.0)
            self.sock.sendall(data)

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(4096)  # one read: a byte left over only means one more wake-up
        except (BlockingIOError, OSError):
            pass
        # Clear the flag only after the read: a byte sent before it is consumed by it, so a
        # deliver() that saw the flag still set queued its line before we take the outbox.
        self._wake_pending = False

    def _finish(self, reason: str, farewell_sent: bool = False) -> None:
        self.server.room.leave(self)
        log.info("%s disconnected: %s", self.label(), reason)
        tls_up = isinstance(self.sock, ssl.SSLSocket) and not self._handshaking
        if tls_up:
            # Send close_notify before the FIN (RFC 8446 section 6.1), so the client can tell
            # the end of the conversation from a truncation: without it OpenSSL 3 peers (e.g.
            # `openssl s_client`) report "unexpected eof while reading" and exit 1. Don't
            # wait for the peer's close_notify: non-blocking, best effort.
            try:
                if self.sock.gettimeout() != 0:  # already non-blocking after a handshake
                    self.sock.settimeout(0)
                self.sock.unwrap()
            except (OSError, ValueError):
                pass
        # Closing a socket with unread bytes makes the kernel send a RST instead of a FIN,
        # and a client that sees the RST first (nc does) throws away our last line, e.g. the
        # plaintext hint: the byte it peeked at is still unread. So: FIN first, then read
        # and discard until the client closes too. A plain goodbye before login (the hint,
        # ERR timeout on --plain) waits up to close_linger for the client's FIN; otherwise
        # only what has already arrived is dropped (with TLS, close_notify said goodbye).
        plain_goodbye = farewell_sent and not tls_up and self.user is None
        _close_gently(self.sock, self.limits.close_linger if plain_goodbye else 0.0)
        if self.raw is not self.sock:
            self.raw.close()  # detached by wrap_socket: its descriptor belongs to self.sock
        self._wake_r.close()
        self._wake_w.close()
        self.server.forget(self)

    def close_unstarted(self) -> None:
        """Release the sockets of a session whose thread never started."""
        for s in (self.raw, self._wake_r, self._wake_w):
            s.close()
