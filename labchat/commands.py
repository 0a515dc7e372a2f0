"""What the server does with each client line: the command rules, without any I/O.

`Commands` takes the `Room`, the `Authenticator` and, per call, the member that sent the line
and a `reply` callback. It never touches a socket: the server's session thread passes its own
outbox as the reply callback and writes the outbox once the line is handled, and the tests
(tests/test_commands.py) pass a list. What a command does to *other* members goes through the
room, which queues their lines and wakes their threads.

Operators (teachers: `labchat adduser --operator`) also have KICK, MUTE, UNLOCK and
THROTTLED (docs/protocol.md, "Moderation").

A line comes in as a framing event from `labchat.protocol.LineReader`; `handle_frame` turns
it into a command (or an `ERR`), and `handle` carries the command out. QUIT is not carried
out here: `handle` returns a `Hangup`, and the caller says goodbye and closes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from . import protocol as p
from .auth import Authenticator
from .room import Member, Room

__all__ = ["Caller", "Commands", "Hangup", "Reply"]

log = logging.getLogger("labchat.server")

#: How a command answers its own sender: called with each reply, in order.
Reply = Callable[[p.ServerMessage], None]


class Caller(Member, Protocol):
    """The member a line came from: a room member that also knows where it connects from."""

    #: The client's address, as budgets and login throttling count it.
    source: str
    #: The common name of the client's certificate (mutual TLS), else None.
    cert_name: str | None

    def tls_summary(self) -> str:
        """``"TLSv1.3 TLS_AES_256_GCM_SHA384"``, or ``"plaintext"``, for the login log line."""


_OPERATOR_VERBS = {p.Kick: "KICK", p.Mute: "MUTE", p.Unlock: "UNLOCK", p.ListThrottled: "THROTTLED"}


@dataclass(frozen=True)
class Hangup:
    """Returned by `Commands.handle` when the connection must end.

    Attributes:
        reason: Why, for the server's log.
        farewell: The last line to send before closing (None: close without a word).
    """

    reason: str
    farewell: p.ServerMessage | None = None


class Commands:
    """The labchat/1 command rules for one room.

    Args:
        room: The room the commands act on.
        auth: Decides LOGIN attempts (it throttles and hashes; it may block for a while).
        require_cert_user: A LOGIN must name the account of the caller's client certificate
            (`Caller.cert_name`); mutual TLS then proves who logs in, not only that the
            client holds some certificate of the lab CA.
    """

    def __init__(
        self,
        room: Room,
        auth: Authenticator,
        *,
        require_cert_user: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self.auth = auth
        self.require_cert_user = require_cert_user
        self.clock = clock

    def handle_frame(self, caller: Caller, event: p.FrameEvent, reply: Reply) -> Hangup | None:
        """Handle one framed line: parse it, then carry it out or answer with `ERR`.

        Args:
            caller: Who sent the line.
            event: What `LineReader.feed` made of it.
            reply: Receives every reply to *caller*, in order.

        Returns:
            A `Hangup` if the connection must end now, else None.
        """
        if isinstance(event, p.LineTooLong):
            reply(p.Err("too-long", f"lines are limited to {event.limit} bytes"))
            return None
        if isinstance(event, p.BadEncoding):
            reply(p.Err("encoding", "lines must be UTF-8"))
            return None
        try:
            command = p.parse_command(event.text)
        except p.RemoteProtocolError as exc:
            log.info("%s %s: %s", caller.label(), exc.code, exc.text)
            reply(p.Err(exc.code, exc.text))
            return None
        return self.handle(caller, command, reply)

    def handle(self, caller: Caller, command: p.Command, reply: Reply) -> Hangup | None:
        """Carry out one parsed command for *caller*.

        Args:
            caller: Who sent the command.
            command: The parsed command.
            reply: Receives every reply to *caller*, in order.

        Returns:
            A `Hangup` if the connection must end now (QUIT), else None.
        """
        match command:
            case p.Ping(token):
                reply(p.Pong(token))
            case p.Pong():
                pass  # answering our idle PING; the input itself reset the timer
            case p.Quit():
                return Hangup("quit", p.Bye("see you"))
            case p.Login(user, password):
                self._login(caller, user, password, reply)
            case _ if caller.user is None:
                reply(p.Err("not-logged-in", "LOGIN <user> <password> first"))
            case p.Say() | p.Tell() if left := self.room.muted_for(caller.user, self.clock()):
                reply(p.Err("muted", f"you are muted for another {math.ceil(left)} s"))
            case p.Say(text):
                self.room.say(caller, text)
            case p.Tell(user, text):
                if self.room.tell(caller, user, text):
                    reply(p.Ok())
                else:
                    reply(p.Err("no-such-user", f"{user} is not logged in"))
            case p.Who():
                reply(p.Users(tuple(self.room.who())))
            case p.Kick() | p.Mute() | p.Unlock() | p.ListThrottled():
                self._moderate(caller, command, reply)
        return None

    def _moderate(self, caller: Caller, command: p.Command, reply: Reply) -> None:
        """The operator (teacher) commands. Everyone else gets `ERR forbidden`."""
        if not caller.operator:
            verb = _OPERATOR_VERBS[type(command)]
            reply(p.Err("forbidden", f"only an operator may use {verb}"))
            return
        match command:
            case p.Kick(user, reason):
                why = f"kicked by {caller.user}" + (f": {reason}" if reason else "")
                if self.room.kick(user, p.Err("kicked", why)) is None:
                    reply(p.Err("no-such-user", f"{user} is not logged in"))
                    return
                log.warning("%s kicked %s (%s)", caller.label(), user, reason or "no reason")
                reply(p.Ok(f"{user} kicked"))
            case p.Mute(user, seconds):
                if self.room.member(user) is None:
                    reply(p.Err("no-such-user", f"{user} is not logged in"))
                    return
                length = p.DEFAULT_MUTE_SECONDS if seconds is None else seconds
                self.room.mute(user, self.clock() + length if length else None)
                log.warning("%s muted %s for %g s", caller.label(), user, length)
                reply(p.Ok(f"{user} muted for {length:g} s" if length else f"{user} unmuted"))
            case p.Unlock(target):
                if target.startswith("@"):
                    cleared = self.auth.unlock(source=target[1:])
                elif p.valid_username(target):
                    cleared = self.auth.unlock(user=target)
                else:
                    reply(p.Err("syntax", "usage: UNLOCK <user> or UNLOCK @<address>"))
                    return
                log.warning("%s unlocked %s (%d cleared)", caller.label(), target, cleared)
                reply(p.Ok(f"{target} unlocked ({cleared} cool-downs cleared)"))
            case p.ListThrottled():
                reply(
                    p.Throttled(
                        tuple(
                            f"{entry.account or ''}@{entry.source}={math.ceil(entry.retry_after)}"
                            for entry in self.auth.throttled()
                        )
                    )
                )

    def _login(self, caller: Caller, user: str, password: str, reply: Reply) -> None:
        if caller.user is not None:
            reply(p.Err("syntax", f"already logged in as {caller.user}"))
            return
        source = caller.source
        if self.require_cert_user and caller.cert_name != user:
            # Checked before any hash: the certificate is already proven, the password is not
            # needed to say no, and the answer tells the client nothing it does not know.
            log.warning("login as %r refused for certificate %r", user[:32], caller.cert_name)
            reply(
                p.Err("auth", f"your client certificate is for {caller.cert_name}; log in as that")
            )
            return
        # An invalid name gets the same answer as a wrong password (Authenticator.login).
        outcome = self.auth.login(user, password, source)
        if outcome.throttled:
            log.warning("login throttled for %r from %s", user[:32], source)
            reply(
                p.Err("throttled", f"too many failed logins; retry in {outcome.retry_after:.0f} s")
            )
            return
        if not outcome.ok:
            log.warning("login failed for %r from %s", user[:32], source)
            reply(p.Err("auth", "invalid user name or password"))
            return
        caller.operator = outcome.operator
        replaced = self.room.join(caller, user)
        if replaced is not None:
            log.warning("%s took over from %s", caller.label(), replaced.label())
        log.info("%s logged in (%s)", caller.label(), caller.tls_summary())
