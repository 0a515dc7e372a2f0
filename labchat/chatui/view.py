"""What the chat shows: one `Line` per thing that happened, with its kind, time and text.

The session turns server events into `Line` objects (`line_for_event`); the terminal
application styles them by kind, the plain line mode prints their text. Everything that came
from the network goes through `safe` before it reaches a `Line`: no escape sequence, bare
carriage return or bidi override sent by anyone reaches the terminal (issue 12).
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


#: *text* from the network, safe to write to a terminal: the protocol's own escaping (every
#: control character, line separator and bidi control shown as ``\x1b``, ``\u202e``, ...).
safe = p.escape_controls


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
        The line, as `labchat.client.format_event` words it, escaped by `safe`.
    """
    text = safe(format_event(event))  # a line with the server's words in it: escape it whole
    if isinstance(event, p.Msg):
        kind = "own" if event.user == me else "msg"
    elif isinstance(event, p.Priv):
        kind = "priv"
    elif isinstance(event, p.Err):
        kind = "error"
    else:
        kind = "notice"
    return Line(kind, text)
