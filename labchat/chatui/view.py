"""What the chat shows: one `Line` per thing that happened, with its kind, time and text.

The session turns server events into `Line` objects (`line_for_event`); the terminal
application styles them by kind, the plain line mode prints their text. Everything that came
from the network has gone through `labchat.client.format_event`, which escapes control
characters, before it reaches a `Line`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from labchat import protocol as p
from labchat.client import format_event

__all__ = ["KINDS", "STYLE", "Line", "line_for_event", "safe"]

#: The kinds of line, each with its own style: someone's message, your own, a private line
#: to you, your private line to someone, a notice (joins, leaves, who, pong), an error.
KINDS = ("msg", "own", "priv", "priv-out", "notice", "error")

#: prompt_toolkit style classes for each kind (``class:line.own``) and the other parts.
STYLE = {
    "time": "#888888",
    "line.msg": "",
    "line.own": "#5f87d7 bold",
    "line.priv": "#d75fd7 bold",
    "line.priv-out": "#af87af",
    "line.notice": "#808080 italic",
    "line.error": "#ff5f5f bold",
    "prompt": "bold",
    "bottom-toolbar": "noreverse #aaaaaa bg:#262626",
    "bottom-toolbar.down": "noreverse #ffaf5f bg:#3a1c00",
}


def safe(text: str) -> str:
    """*text* with every control character shown escaped (ESC as ``\\x1b``), for a terminal."""
    escape = getattr(p, "escape_controls", None)
    if escape is not None:
        return escape(text)
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)  # TODO server


@dataclass(frozen=True)
class Line:
    """One line of the chat as shown.

    Attributes:
        kind: One of `KINDS`.
        text: The text, safe for a terminal (no control characters).
        when: Seconds since the epoch, for the HH:MM stamp.
    """

    kind: str
    text: str
    when: float = field(default_factory=time.time)

    def stamp(self) -> str:
        """The local time as ``HH:MM``."""
        return time.strftime("%H:%M", time.localtime(self.when))


def line_for_event(event: p.ServerMessage, me: str | None) -> Line:
    """How one server event is shown to *me*.

    Args:
        event: What `labchat.client.Client.recv` returned.
        me: The logged-in user name (its own messages get their own style).

    Returns:
        The line, its text escaped by `labchat.client.format_event`.
    """
    text = format_event(event)
    if isinstance(event, p.Msg):
        kind = "own" if event.user == me else "msg"
    elif isinstance(event, p.Priv):
        kind = "priv"
    elif isinstance(event, p.Err):
        kind = "error"
    else:
        kind = "notice"
    return Line(kind, text)
