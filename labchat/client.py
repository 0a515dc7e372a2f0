"""The labchat/1 client: a blocking API for notebooks, tests and the terminal chat.

`Client` owns its socket in the calling thread. `format_event` shows one server event as
one line that is safe for any terminal. The terminal chat itself (`labchat chat`) is
`labchat.chatui`, built on these two.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from collections import deque

from . import protocol as p
from .tls import client_context

__all__ = [
    "ChatError",
    "Client",
    "ConnectionClosed",
    "LoginError",
    "format_event",
]

DEFAULT_CAFILE = os.path.join("certs", "ca.pem")


class ChatError(Exception):
    """The server answered a request with `ERR <code> <text>`."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}" if text else code)
        self.code = code
        self.text = text


class LoginError(ChatError):
    """The server refused a LOGIN (`auth` or `throttled`)."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection."""


class Client:
    """A blocking labchat/1 client.

    Example::

        with Client("127.0.0.1", port, cafile="certs/ca.pem") as chat:
            chat.login("alice", "correct horse")
            chat.say("hello")
            print(chat.recv(timeout=1))   # Msg(user='alice', text='hello')

    Args:
        host, port: The server.
        tls: Use TLS (the default). False speaks plaintext labchat/1.
        cafile: CA certificate that must have signed the server's (the lab CA by default).
        server_hostname: Name checked against the certificate; defaults to *host*.
        tls_version: "1.2" or "1.3" to pin one version.
        keylog: Append this connection's TLS secrets to an NSS key log file.
        insecure: Skip certificate and hostname verification (warns; see docs/security.md).
        certfile, keyfile: Client certificate for mutual TLS.
        timeout: Seconds for connecting, the handshake and each request.
        source_address: ``(host, port)`` to connect from, as in
            `socket.create_connection` (e.g. ``("127.0.0.7", 0)``: on Linux every 127.0.0.0/8
            address is the loopback, so one machine can play many students).

    Raises:
        ssl.SSLCertVerificationError: the server's certificate is not trusted or names
            another host.
        OSError: the connection failed (refused, unreachable, timed out).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5050,
        *,
        tls: bool = True,
        cafile: str | os.PathLike | None = DEFAULT_CAFILE,
        server_hostname: str | None = None,
        tls_version: str | None = None,
        keylog: str | os.PathLike | None = None,
        insecure: bool = False,
        certfile: str | os.PathLike | None = None,
        keyfile: str | os.PathLike | None = None,
        timeout: float = 10.0,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        self.timeout = timeout
        self.user: str | None = None
        self._events: deque[p.ServerMessage] = deque()
        self._reader = p.LineReader(p.MAX_SERVER_LINE_BYTES)
        self._frames: deque[p.Line | p.LineTooLong | p.BadEncoding] = deque()
        self._closed = False
        raw = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
        try:
            if tls:
                ctx = client_context(
                    cafile=None if insecure else cafile,
                    tls_version=tls_version,
                    keylog=keylog,
                    insecure=insecure,
                    certfile=certfile,
                    keyfile=keyfile,
                )
                self.sock: socket.socket = ctx.wrap_socket(
                    raw, server_hostname=server_hostname or host
                )
            else:
                self.sock = raw
            first = self._next(timeout)
        except BaseException:
            raw.close()
            raise
        if isinstance(first, p.Err):
            self.close()
            raise ChatError(first.code, first.text)
        if not isinstance(first, p.Hello):
            self.close()
            raise p.RemoteProtocolError("syntax", f"expected HELLO, got {first!r}")
        self.hello = first

    # -- context manager -----------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version ('TLSv1.3'), or None for plaintext."""
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    @property
    def alpn_protocol(self) -> str | None:
        """The server's ALPN choice ('labchat/1'); None if none, plaintext or closed."""
        return self.sock.selected_alpn_protocol() if isinstance(self.sock, ssl.SSLSocket) else None

    # -- requests --------------------------------------------------------------------------

    def login(self, user: str, password: str) -> str:
        """Log in as *user*.

        If *user* is logged in already (another tab, or a laptop whose Wi-Fi dropped), this
        login takes that session over: the old connection gets `ERR replaced` and is closed,
        and whatever the server had not yet sent it comes here instead.

        Returns:
            The server's OK text after the user name: "" normally, or a note such as
            ``"(took over from alice@10.0.0.5:51234; 3 unsent lines follow)"``.

        Raises:
            LoginError: The server refused (wrong password, throttled, certificate mismatch).
        """
        self.send(p.Login(user, password))
        reply = self._wait_reply()
        if isinstance(reply, p.Err):
            raise LoginError(reply.code, reply.text)
        self.user = user
        assert isinstance(reply, p.Ok)
        return reply.detail.removeprefix(user).strip()

    def say(self, text: str) -> None:
        """Send a line to the room. The server echoes it back as a `Msg` to everyone."""
        self.send(p.Say(text))

    def tell(self, user: str, text: str) -> None:
        """Send a private line. Raises ChatError('no-such-user') if *user* is not in."""
        self.send(p.Tell(user, text))
        reply = self._wait_reply()
        if isinstance(reply, p.Err):
            raise ChatError(reply.code, reply.text)

    def who(self) -> list[str]:
        """The names of everybody logged in, sorted; operators (teachers) as ``@name``."""
        self.send(p.Who())
        reply = self._wait_reply((p.Users, p.Err))
        if isinstance(reply, p.Err):
            raise ChatError(reply.code, reply.text)
        assert isinstance(reply, p.Users)
        return list(reply.names)

    # -- operator (teacher) requests: ChatError("forbidden") for everybody else ------------

    def kick(self, user: str, reason: str = "") -> None:
        """Close *user*'s connection (they get ``ERR kicked by <you>: <reason>``).

        Raises:
            ChatError: ``forbidden`` (not an operator) or ``no-such-user``.
        """
        self._request(p.Kick(user, reason))

    def mute(self, user: str, seconds: float | None = None) -> None:
        """Refuse *user*'s SAY and TELL for *seconds* (default 300; 0 unmutes).

        Raises:
            ChatError: ``forbidden``, ``no-such-user`` or ``syntax`` (seconds out of range).
        """
        self._request(p.Mute(user, seconds))

    def unlock(self, target: str) -> None:
        """End the login cool-downs of account *target*, or of address ``@<address>``.

        Raises:
            ChatError: ``forbidden`` or ``syntax``.
        """
        self._request(p.Unlock(target))

    def throttled(self) -> list[tuple[str | None, str, int]]:
        """What is in a login cool-down: ``(account, address, seconds left)`` tuples, the
        account None for a whole address (``*`` for names that cannot exist).

        Raises:
            ChatError: ``forbidden``.
        """
        self.send(p.ListThrottled())
        reply = self._wait_reply((p.Throttled, p.Err))
        if isinstance(reply, p.Err):
            raise ChatError(reply.code, reply.text)
        assert isinstance(reply, p.Throttled)
        entries = []
        for entry in reply.entries:
            who, _, seconds = entry.rpartition("=")
            account, _, source = who.partition("@")
            entries.append((account or None, source, int(seconds)))
        return entries

    def _request(self, command: p.Command) -> str:
        self.send(command)
        reply = self._wait_reply()
        if isinstance(reply, p.Err):
            raise ChatError(reply.code, reply.text)
        assert isinstance(reply, p.Ok)
        return reply.detail

    def ping(self, token: str = "") -> float:
        """Round trip to the server in seconds."""
        token = token or f"t{time.monotonic_ns()}"
        start = time.perf_counter()
        self.send(p.Ping(token))
        self._wait_reply((p.Pong,), match=lambda e: e.token == token)
        return time.perf_counter() - start

    def quit(self) -> str:
        """Say QUIT, wait for BYE, close. Returns the server's goodbye text."""
        self.send(p.Quit())
        try:
            reply = self._wait_reply((p.Bye,))
            text = reply.text if isinstance(reply, p.Bye) else ""
            self._await_close(timeout=1.0)
        except ConnectionClosed:
            text = ""
        self.close()
        return text

    def _await_close(self, timeout: float) -> None:
        """After BYE the server closes first; wait (bounded) for its close_notify and FIN.

        Closing at once would race the server's close: its TLS close_notify could arrive at
        a socket we had already closed, and our kernel would answer with a RST. Waiting keeps
        the teardown the textbook one (server FIN first, server in TIME_WAIT).
        """
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                event = self._next(left)  # raises ConnectionClosed at the server's EOF
                if event is None:
                    return
                self._events.append(event)
        except ConnectionClosed:
            # Over TLS the EOF we saw is the server's close_notify; its FIN follows a moment
            # later. Wait for the FIN too (Linux reports it as POLLRDHUP), so our FIN is the
            # second one whatever the scheduling.
            rdhup = getattr(select, "POLLRDHUP", 0)
            if isinstance(self.sock, ssl.SSLSocket) and rdhup:
                poller = select.poll()
                poller.register(self.sock.fileno(), rdhup)
                poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
        except OSError:
            return

    def recv(self, timeout: float | None = None) -> p.ServerMessage | None:
        """The next event from the server (Msg, Priv, Join, Leave, ...), or None on timeout.

        Server PINGs are answered automatically and not returned.

        Raises:
            ConnectionClosed: the server closed the connection.
        """
        if self._events:
            return self._events.popleft()
        return self._next(timeout)

    def recv_all(self, timeout: float = 0.2) -> list[p.ServerMessage]:
        """Every event that arrives until *timeout* seconds pass with nothing new."""
        events = []
        while (event := self.recv(timeout)) is not None:
            events.append(event)
        return events

    def send(self, command: p.Command) -> None:
        """Send one command (see labchat.protocol)."""
        self.sock.sendall(p.encode(command, limit=p.MAX_LINE_BYTES))

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (for lessons on bad input)."""
        self.sock.sendall(data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- internals -------------------------------------------------------------------------

    def _wait_reply(self, kinds: tuple = (p.Ok, p.Err), match=lambda e: True) -> p.ServerMessage:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from the server within {self.timeout} s")
            event = self._next(left)
            if event is None:
                continue
            if isinstance(event, kinds) and match(event):
                return event
            if isinstance(event, p.Err) and p.Err in kinds:
                return event
            self._events.append(event)  # not ours: keep it, in order, for recv()

    def _next(self, timeout: float | None) -> p.ServerMessage | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._pop_line()
            if message is not None:
                if isinstance(message, p.Ping):
                    self.sock.sendall(p.encode(p.Pong(message.token)))
                    continue
                return message
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.sock.settimeout(left)  # 0 means: only what has already arrived
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                return None
            except ConnectionResetError as exc:
                raise ConnectionClosed("the server reset the connection") from exc
            if not data:
                raise ConnectionClosed("the server closed the connection")
            self._frames.extend(self._reader.feed(data))

    def _pop_line(self) -> p.ServerMessage | None:
        if not self._frames:
            return None
        frame = self._frames.popleft()
        if isinstance(frame, p.LineTooLong):
            return p.Err("too-long", f"the server sent a line over {frame.limit} bytes")
        if isinstance(frame, p.BadEncoding):
            return p.Err("encoding", "the server sent a line that is not UTF-8")
        return p.parse_server_line(frame.text)


# --------------------------------------------------------------------------- showing events


def format_event(event: p.ServerMessage) -> str:
    """How the terminal chat shows one server event: one line, safe for any terminal.

    Every field that came from the network goes through `labchat.protocol.escape_controls`,
    so an escape sequence or a bidi override sent by anyone (or by an old or hostile server)
    is shown as ``\\x1b[2J`` instead of clearing the screen.

    Args:
        event: A message from `Client.recv`.

    Returns:
        The line to print, without a newline.
    """
    e = p.escape_controls
    match event:
        case p.Msg(user, text):
            return f"<{e(user)}> {e(text)}"
        case p.Priv(sender, text):
            return f"*{e(sender)}* {e(text)}"
        case p.Join(user):
            return f"-- {e(user)} joined"
        case p.Leave(user):
            return f"-- {e(user)} left"
        case p.Users(names):
            return "-- in the room: " + (" ".join(e(n) for n in names) or "(nobody)")
        case p.Err(code, text):
            return f"!! {e(code)}: {e(text)}"
        case p.Bye(text):
            return f"-- server says bye: {e(text)}"
        case p.Ok(detail):
            return f"-- ok {e(detail)}" if detail else "-- delivered"
        case p.Throttled(entries):
            return "-- throttled: " + (", ".join(e(x) for x in entries) or "nothing")
        case _:
            return f"-- {event!r}"  # repr() escapes every control character itself
