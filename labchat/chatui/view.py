"""What the chat shows: one `Line` per thing that happened, with its kind, time and text.

The session turns server events into `Line` objects (`line_for_event`); the terminal
application styles them by kind, the plain line mode prints their text. Everything that came
from the network goes through `safe` before it reaches a `Line`: no escape sequence, bare
carriage return or bidi override sent by anyone reaches the terminal (issue 12).
"""

from __future__ import annotations

import time
import unicodedata
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


# What is escaped: the control characters (C0, DEL, C1: category Cc), the line and paragraph
# separators (Zl, Zp), lone surrogates (Cs), and the invisible marks that reorder the text
# after them: the bidi embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574)
# and the ALM/LRM/RLM marks. TAB too: it moves the cursor. Other format characters, such as
# the zero-width joiner inside an emoji, are left alone.
_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_MOVERS = frozenset("\t\u061c\u200e\u200f") | frozenset(map(chr, range(0x202A, 0x202F)))
_MOVERS |= frozenset(map(chr, range(0x2066, 0x206A)))
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _hidden(ch: str) -> bool:
    return ch in _MOVERS or unicodedata.category(ch) in _CATEGORIES


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(text: str) -> str:
    """*text* from the network, safe to write to a terminal: every control character, and
    every character that moves the cursor or reorders the text, shown as an escape (ESC as
    ``\\x1b``, U+202E as ``\\u202e``) instead of acted on. Letters of every script, emoji
    and combining marks are left alone; backslashes are not doubled (the result is for
    reading, not parsing).

    Args:
        text: Any text.

    Returns:
        The text with those characters escaped (*text* itself if there are none).
    """
    if text.isprintable() and "\t" not in text:
        return text  # the common case: nothing to look at character by character
    return "".join(_escape(ch) if _hidden(ch) else ch for ch in text)


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
