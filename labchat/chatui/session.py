"""The chat connection, owned by one thread: it alone reads and writes the (TLS) socket.

An ``ssl.SSLSocket`` must not be read in one thread while another writes it (GUIDE: OpenSSL
objects are not thread-safe; CPython gh-151508, gh-143756). So the terminal, whichever mode it
is in, never touches the socket: it hands what was typed to `ChatSession.submit`, which queues
it and wakes the session's thread through a socketpair, and it gets back `Line` and `Status`
objects through callbacks, called from that thread.

When the server goes away, the session says so and connects again with backoff (1, 2, 4, 8,
16, then every 30 s), logging in with the password it holds in memory; `retry_now` skips the
wait. A refused password ends the session: the account changed, and guessing is not ours to do.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from labchat import protocol as p
from labchat.client import ChatError, Client, ConnectionClosed, LoginError

from . import commands as c
from .view import Line, line_for_event, safe

__all__ = ["BACKOFF", "FINAL_ERRORS", "ChatSession", "SessionFactory", "Status"]

#: Seconds to wait before each reconnect attempt; the last one repeats. Doubling spreads a
#: classroom's reconnects after a server restart instead of 60 clients hitting it at once.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: ERR codes after which the server closes the connection and a reconnect would be wrong.
FINAL_ERRORS = frozenset({"kicked", "replaced"})
#: Seconds one wait for the socket or the keyboard may last before deadlines are checked.
_TICK = 1.0


#: Makes a `ChatSession` once the front end knows its callbacks: ``make(on_line=...,
#: on_status=..., on_end=..., reconnect=...)`` (`labchat.chatui.run_chat` binds the rest).
SessionFactory = Callable[..., "ChatSession"]


@dataclass(frozen=True)
class Status:
    """Whether the session is connected, for a status line.

    Attributes:
        connected: Logged in and chatting.
        text: What to show (``connected to 127.0.0.1:5050 as alice over TLSv1.3``, or why it
            is not and what happens next).
        retry_at: `time.monotonic` of the next reconnect attempt, if one is planned.
    """

    connected: bool
    text: str
    retry_at: float | None = None


def _names(listed: Iterable[str]) -> frozenset[str]:
    """User names from a WHO answer, where an operator is listed as ``@NAME``."""
    return frozenset(name.removeprefix("@") for name in listed)


class _RetryNow:
    pass


class _Stop:
    pass


class ChatSession:
    """One user's chat: the connection, its thread, reconnecting, and what is shown.

    Args:
        connect: Opens a new connection (not logged in); raises with a message that says why
            not (`labchat.cli.chat.open_client`).
        user: The user name to log in as.
        password: Its password, kept in memory to log in again after a reconnect.
        on_line: Called (from the session's thread) with each `Line` to show.
        on_status: Called (from the session's thread) when the connection comes or goes.
        on_end: Called (from the session's thread) once, when the session is over.
        reconnect: Connect again when the server goes away (False: end the session).
        where: ``host:port`` for the status line.
        backoff: Seconds before each reconnect attempt (`BACKOFF`).
    """

    def __init__(
        self,
        connect: Callable[[], Client],
        user: str,
        password: str,
        *,
        on_line: Callable[[Line], None],
        on_status: Callable[[Status], None] = lambda status: None,
        on_end: Callable[[], None] = lambda: None,
        reconnect: bool = True,
        where: str = "the server",
        backoff: Iterable[float] = BACKOFF,
    ) -> None:
        self._connect = connect
        self.user = user
        self._password = password
        self._on_line = on_line
        self._on_status = on_status
        self._on_end = on_end
        self.reconnect = reconnect
        self.where = where
        self._backoff = tuple(backoff)
        self._client: Client | None = None
        self._inbox: queue.Queue[object] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._last_failure = ""
        self._final = ""  # why the server ended this session for good, if it did
        self._quiet_users = 0  # WHO answers to take in without showing them
        self._thread: threading.Thread | None = None
        self._names: frozenset[str] = frozenset()
        self.status = Status(False, "not connected")
        #: 0 after /quit, Ctrl-D or Ctrl-C; 1 when the session ended on an error.
        self.exit_code = 0

    # -- what the terminal calls (any thread) ---------------------------------------------

    def start(self, client: Client) -> None:
        """Start the session's thread with *client*, already logged in as `user`."""
        self._client = client
        self._set_status(True)
        self._thread = threading.Thread(target=self._run, name="labchat-chat", daemon=True)
        self._thread.start()

    def submit(self, action: c.Action) -> None:
        """Queue what the person asked for; the session's thread carries it out in order."""
        self._put(action)

    def typed(self, text: str) -> bool:
        """Carry out a line as typed: a chat line or a /command (`commands.parse`); one that
        cannot be understood is shown with how to write it.

        Returns:
            True if the line asked to leave (/quit).
        """
        action = c.parse(text)
        if isinstance(action, c.Usage):
            self._show("error", f"!! {action.message}")
            return False
        if action is not None:
            self.submit(action)
        return isinstance(action, c.Quit)

    def retry_now(self) -> None:
        """Reconnect at once instead of waiting out the backoff."""
        self._put(_RetryNow())

    def stop(self) -> None:
        """Leave: say QUIT if connected (after everything queued before), then end."""
        self._put(_Stop())

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the session to end. Returns True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        """The session's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def names(self) -> frozenset[str]:
        """The user names last known to be in the room (for Tab completion)."""
        return self._names

    def _put(self, item: object) -> None:
        self._inbox.put(item)
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the session already ended
            pass

    # -- the session's thread ------------------------------------------------------------

    def _show(self, kind: str, text: str) -> None:
        self._on_line(Line(kind, text))

    def _set_status(self, connected: bool, text: str = "", retry_at: float | None = None) -> None:
        if connected and self._client is not None:
            tls = self._client.tls_version
            text = f"connected to {self.where} as {self.user}" + (
                f" over {tls}" if tls else " (plaintext)"
            )
        self.status = Status(connected, text, retry_at)
        self._on_status(self.status)

    def _run(self) -> None:
        try:
            attempt = 0
            fresh = True  # just connected: learn who is in the room first
            while True:
                if self._client is None:
                    outcome = self._reconnect(attempt)
                    if outcome is None:
                        return
                    attempt = 0 if outcome else attempt + 1
                    fresh = bool(outcome)
                    continue
                try:
                    if fresh:
                        self._learn_names()
                        fresh = False
                    if not self._pump():
                        return
                except (OSError, ConnectionClosed, TimeoutError, p.RemoteProtocolError) as exc:
                    if not self._lost(exc):
                        return
        except Exception as exc:  # a bug must not leave the terminal waiting forever
            self._show("error", f"!! the chat stopped: {type(exc).__name__}: {exc}")
            self.exit_code = 1
        finally:
            self._close()
            self._on_end()

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._wake_r.close()
        self._wake_w.close()

    def _pump(self) -> bool:
        """One turn: show what arrived, do what was asked, wait for more. False: ended."""
        client = self._client
        assert client is not None
        self._drain()
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if not self._do(item):
                return False
        if self._client is None:
            return True
        ready, _, _ = select.select([client.sock, self._wake_r], [], [], _TICK)
        if self._wake_r in ready:
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        return True

    def _learn_names(self) -> None:
        """Ask who is in the room, for Tab completion. The answer is not shown (nobody typed
        /who), and nothing waits for it: a server that never answers holds nothing up."""
        self._send(p.Who())
        self._quiet_users += 1

    def _drain(self) -> None:
        """Show every event already received (those a request's wait put aside first)."""
        assert self._client is not None
        while (event := self._client.recv(0)) is not None:
            self._event(event)

    def _send(self, command: p.Command) -> None:
        assert self._client is not None
        # Client.recv(0) leaves the socket non-blocking; a write must be allowed to wait.
        self._client.sock.settimeout(self._client.timeout)
        self._client.send(command)

    def _event(self, event: p.ServerMessage) -> None:
        if isinstance(event, p.Err) and event.code in FINAL_ERRORS:
            # Kicked by an operator, or this account logged in elsewhere: coming back by
            # ourselves would undo the kick, or take the other session over in turn.
            self._final = f"{safe(event.code)}: {safe(event.text)}"
        if isinstance(event, p.Bye):
            self._show("notice", line_for_event(event, self.user).text)
            raise ConnectionClosed("the server said goodbye")
        if isinstance(event, p.Join | p.Msg):
            self._names = self._names | {event.user}
        elif isinstance(event, p.Leave):
            self._names = self._names - {event.user}
        elif isinstance(event, p.Users):
            self._names = _names(event.names)
            if self._quiet_users:
                self._quiet_users -= 1
                return
        self._on_line(line_for_event(event, self.user))

    def _do(self, item: object) -> bool:
        """Carry out one queued item. False: the session is over."""
        if isinstance(item, _Stop | c.Quit):
            self._quit()
            return False
        if isinstance(item, _RetryNow):
            return True
        if isinstance(item, c.Help):
            for line in c.help_lines():
                self._show("notice", line)
            return True
        if self._client is None:
            self._show("error", "!! not connected: " + self.status.text)
            return True
        try:
            self._request(item)
        except ChatError as exc:
            self._drain()  # what arrived before the server's ERR comes first
            self._show("error", f"!! {safe(exc.code)}: {safe(exc.text)}")
        except p.LocalProtocolError as exc:
            self._show("error", f"!! not sent: {exc}")
        except TimeoutError as exc:
            self._show("error", f"!! {exc}")
        return True

    def _request(self, item: object) -> None:
        assert self._client is not None
        self._client.sock.settimeout(self._client.timeout)
        if isinstance(item, p.Say | p.Who):
            self._send(item)
        elif isinstance(item, c.Tell):
            self._client.tell(item.user, item.text)
            self._drain()  # what arrived before the server's OK comes first
            self._show("priv-out", f"-> *{item.user}* {safe(item.text)}")
        elif isinstance(item, c.Ping):
            rtt = self._client.ping()
            self._drain()
            self._show("notice", f"-- pong from {self.where}: {rtt * 1000:.1f} ms round trip")
        elif isinstance(item, c.Kick | c.Mute | c.Unmute | c.Unlock | c.Throttled):
            self._operator(item)

    def _operator(self, item: c.Kick | c.Mute | c.Unmute | c.Unlock | c.Throttled) -> None:
        """An operator's request, through the `Client` methods; the server checks the role."""
        client = self._client
        assert client is not None
        name = safe(getattr(item, "user", getattr(item, "target", "")))
        if isinstance(item, c.Kick):
            client.kick(item.user, item.reason)
            done = f"{name} kicked"
        elif isinstance(item, c.Mute):
            client.mute(item.user, item.seconds)
            done = f"{name} muted" + (f" for {item.seconds:g} s" if item.seconds else "")
        elif isinstance(item, c.Unmute):
            client.mute(item.user, 0)
            done = f"{name} may speak again"
        elif isinstance(item, c.Unlock):
            client.unlock(item.target)
            done = f"login cool-downs of {name} ended"
        else:
            entries = client.throttled()
            shown = [
                f"{safe(account) + ' from ' if account else ''}{safe(source)} ({left} s left)"
                for account, source, left in entries
            ]
            done = "in a login cool-down: " + (", ".join(shown) if shown else "nobody")
        self._drain()
        self._show("notice", f"-- {done}")

    def _quit(self) -> None:
        client = self._client
        if client is None:
            self._show("notice", "-- bye")
            return
        try:
            client.sock.settimeout(client.timeout)
            client.quit()  # the server's BYE text adds nothing a person needs here
        except (OSError, ConnectionClosed, TimeoutError):
            pass
        # Replies that came in while quit() waited for BYE, in order, before the last word.
        while True:
            try:
                event = client.recv(0)
            except (OSError, ConnectionClosed, ValueError):
                break
            if event is None:
                break
            self._on_line(line_for_event(event, self.user))
        self._client = None
        self._show("notice", "-- bye")

    # -- losing the connection, and getting it back ---------------------------------------

    def _lost(self, exc: BaseException) -> bool:
        """The connection broke. True: try again; False: the session is over."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._quiet_users = 0  # a WHO that was never answered is not waited for again
        why = str(exc) or type(exc).__name__
        if self._final:
            self._show("error", f"!! not connecting again ({self._final})")
            self.exit_code = 1
            return False
        if not self.reconnect:
            self._show("error", f"!! connection to {self.where} lost: {why}")
            self.exit_code = 1
            return False
        self._show(
            "error",
            f"!! connection to {self.where} lost: {why}; connecting again "
            "(Enter retries now, Ctrl-C quits)",
        )
        return True

    def _reconnect(self, attempt: int) -> bool | None:
        """Wait out the backoff, then connect and log in once.

        Returns:
            True if connected again, False if this attempt failed, None if the session ends.
        """
        delay = self._backoff[min(attempt, len(self._backoff) - 1)]
        retry_at = time.monotonic() + delay
        self._set_status(False, f"disconnected from {self.where}", retry_at)
        while (left := retry_at - time.monotonic()) > 0:
            select.select([self._wake_r], [], [], min(left, _TICK))
            if self._drain_while_down():
                break
            if self._stopping:
                self._show("notice", "-- bye")
                return None
        self._set_status(False, f"connecting to {self.where}...")
        try:
            client = self._connect()
        except Exception as exc:
            self._failed(f"cannot reconnect: {exc}")
            return False
        try:
            client.sock.settimeout(client.timeout)
            client.login(self.user, self._password)
        except LoginError as exc:
            client.close()
            if exc.code == "throttled":
                self._failed(f"logging in again: {safe(exc.text)}")
                return False
            self._show("error", f"!! logging in again was refused: {exc.code}: {exc.text}")
            self.exit_code = 1
            return None
        except (OSError, ConnectionClosed, ChatError, p.RemoteProtocolError) as exc:
            client.close()
            self._failed(f"cannot log in again: {safe(str(exc))}")
            return False
        self._last_failure = ""
        self._client = client
        self._set_status(True)
        self._show("notice", f"-- connected again to {self.where} as {self.user}")
        return True

    def _failed(self, why: str) -> None:
        """Show why an attempt failed, once while it keeps failing the same way."""
        if why != self._last_failure:
            self._last_failure = why
            self._show("error", f"!! {why}")

    def _drain_while_down(self) -> bool:
        """Handle what the terminal sent while disconnected. True: retry now."""
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        except OSError:
            return False
        retry = False
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return retry
            if isinstance(item, _RetryNow):
                retry = True
            elif isinstance(item, _Stop | c.Quit):
                self._stopping = True
                return False
            else:
                self._do(item)
