"""The one chat room: who is in it, and the total order of what they say. No sockets.

A `Room` holds its members (anything with `user`, `queue()` and `wake()`: the server's
sessions, or plain objects in tests) and one lock. Accepting a SAY, numbering it and putting
it into every member's outbox happens under that lock, so every member's outbox receives the
room's lines in the same order. Members are woken after the lock is released: a wake-up is a
system call that lets another thread take the GIL, and under the lock it would hold up every
other sender. The member whose own command caused a line is not woken at all: its own thread
is running and writes its outbox as soon as the command is handled.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from . import protocol as p

__all__ = ["Member", "Room"]


class Member(Protocol):
    """What the room needs from a member. Its methods are called from any thread."""

    user: str | None
    operator: bool

    def queue(self, data: bytes, *, force: bool = False) -> None:
        """Append encoded lines to the member's outbox; never blocks, never wakes. *force*
        queues beyond the outbox limit (lines handed over from a replaced connection)."""

    def wake(self) -> None:
        """Make the member's own thread flush its outbox soon; never blocks."""

    def hand_over(self, farewell: p.ServerMessage) -> bytes:
        """Stop writing to this member's connection, which a new login replaces: return
        every line not yet written to it (from the first one not completely written), then
        say *farewell* and close."""

    def close_soon(self, reason: str, farewell: p.ServerMessage | None) -> None:
        """End this member's connection soon, after *farewell* (KICK)."""

    def label(self) -> str:
        """``user@host:port``, for log lines and notices."""


class Room:
    """The one chat room. Its lock makes every member see the same order of messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}
        self._everyone: tuple[Member, ...] = ()  # _members' values, rebuilt on join/leave
        self._mutes: dict[str, float] = {}  # user -> when (monotonic) the mute ends
        self.accepted = 0  # SAY lines accepted so far (the room's sequence number)

    def names(self) -> list[str]:
        """The user names in the room, sorted."""
        with self._lock:
            return sorted(self._members)

    def who(self) -> list[str]:
        """The names as WHO shows them, sorted by name: operators as ``@name`` (the prefix
        IRC's NAMES reply gives channel operators, RFC 2812 section 5.1)."""
        with self._lock:
            return [
                f"@{name}" if self._members[name].operator else name
                for name in sorted(self._members)
            ]

    def member(self, user: str) -> Member | None:
        """The member logged in as *user*, or None."""
        with self._lock:
            return self._members.get(user)

    def join(self, member: Member, user: str) -> Member | None:
        """Add *member* as *user*; if *user* is in the room already, take its place.

        The `OK <user>` reply is queued under the room lock, so the newcomer sees it before
        any room message accepted after it joined. Taking over (a student whose Wi-Fi
        dropped logs in again): the old connection gets *no* more lines; every line it had
        not written yet is moved behind the newcomer's OK, which says how many follow, and
        the old connection gets `ERR replaced` and is closed. The others see nothing: the
        user never left, so there is no LEAVE and no JOIN.

        Returns:
            The member that was replaced, or None.
        """
        with self._lock:
            old = self._members.get(user)
            self._members[user] = member
            self._everyone = tuple(self._members.values())
            member.user = user
            if old is None:
                member.queue(p.encode(p.Ok(user)))
                woken = self._fan_out(p.encode(p.Join(user)), skip=member)
            else:
                unsent = old.hand_over(
                    p.Err("replaced", f"{user} logged in again on another connection")
                )
                count = unsent.count(b"\n")
                note = f"{user} (took over from {old.label()}; {count} unsent lines follow)"
                member.queue(p.encode(p.Ok(note)))
                member.queue(unsent, force=True)
                woken = ()
        _wake(woken, skip=member)
        return old

    def leave(self, member: Member) -> None:
        """Remove *member* (if it is still the one logged in under its name); tell the rest."""
        with self._lock:
            user = member.user
            if user is None or self._members.get(user) is not member:
                return
            del self._members[user]
            self._everyone = tuple(self._members.values())
            woken = self._fan_out(p.encode(p.Leave(user)))
        _wake(woken)

    def say(self, member: Member, text: str) -> None:
        """Relay `MSG <user> <text>` to every member, *member* included, in the room's order.

        Nothing happens if *member* is no longer the one in the room under its name (kicked,
        or replaced by a new login while its last lines were still being handled).
        """
        data = p.encode(p.Msg(member.user or "?", text))
        with self._lock:
            if not self._is_in(member):
                return
            self.accepted += 1
            woken = self._fan_out(data)
        _wake(woken, skip=member)

    def tell(self, sender: Member, user: str, text: str) -> bool:
        """Queue `PRIV <sender> <text>` for *user*; False if *user* is not in the room."""
        data = p.encode(p.Priv(sender.user or "?", text))
        with self._lock:
            target = self._members.get(user)
            if target is None or not self._is_in(sender):
                return False
            target.queue(data)
        if target is not sender:
            target.wake()
        return True

    def kick(self, user: str, farewell: p.ServerMessage) -> Member | None:
        """Remove *user* now (everyone else sees `LEAVE <user>`) and close its connection
        after *farewell*. Returns the member, or None if *user* is not in the room."""
        with self._lock:
            member = self._members.pop(user, None)
            if member is None:
                return None
            self._everyone = tuple(self._members.values())
            woken = self._fan_out(p.encode(p.Leave(user)))
        _wake(woken)
        member.close_soon("kicked", farewell)
        return member

    def mute(self, user: str, until: float | None) -> None:
        """Silence *user* until the monotonic time *until* (None: not any more). A mute
        belongs to the name, so logging in again does not end it."""
        with self._lock:
            if until is None:
                self._mutes.pop(user, None)
            else:
                self._mutes[user] = until

    def muted_for(self, user: str, now: float) -> float:
        """Seconds *user* stays muted (0.0: not muted). Ended mutes are forgotten here."""
        if not self._mutes:
            # Every SAY and TELL asks; almost nobody is muted. An empty dict is read safely
            # without the room lock, which say() and tell() take right after.
            return 0.0
        with self._lock:
            until = self._mutes.get(user)
            if until is None:
                return 0.0
            if until <= now:
                del self._mutes[user]
                return 0.0
            return until - now

    def _is_in(self, member: Member) -> bool:
        return member.user is not None and self._members.get(member.user) is member

    def _fan_out(self, data: bytes, skip: Member | None = None) -> tuple[Member, ...]:
        # Called with the lock held: only queue here, and let the caller wake the members
        # after releasing the lock (the order lives in the outboxes, so waking later is safe).
        members = self._everyone
        for member in members:
            if member is not skip:
                member.queue(data)
        return members


def _wake(members: Iterable[Member], skip: Member | None = None) -> None:
    for member in members:
        if member is not skip:
            member.wake()
