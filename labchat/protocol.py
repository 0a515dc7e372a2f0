"""The labchat/1 line protocol, sans-IO.

Bytes go in, events come out; events go in, bytes come out. Nothing here touches a socket,
so every rule of the protocol is tested in memory (see tests/test_protocol.py) and both the
server and the client share one definition of the wire format. The design follows
python-hyper/h11: events are frozen dataclasses, limits are named constants, and there are two
kinds of error -- the peer sent something wrong (`RemoteProtocolError`, which carries the
`ERR` code to answer with) and the caller asked for something impossible
(`LocalProtocolError`).

The wire format is written up for learners in docs/protocol.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "PROTOCOL",
    "MAX_LINE_BYTES",
    "MAX_SERVER_LINE_BYTES",
    "USERNAME_RE",
    "FORBIDDEN_RE",
    "ERROR_CODES",
    "LocalProtocolError",
    "RemoteProtocolError",
    "LineReader",
    "FrameEvent",
    "Line",
    "LineTooLong",
    "BadEncoding",
    "Login",
    "Say",
    "Tell",
    "Who",
    "Ping",
    "Pong",
    "Quit",
    "Kick",
    "Mute",
    "Unlock",
    "ListThrottled",
    "Hello",
    "Ok",
    "Err",
    "Msg",
    "Priv",
    "Users",
    "Bye",
    "Join",
    "Leave",
    "Throttled",
    "Command",
    "ServerMessage",
    "DEFAULT_MUTE_SECONDS",
    "MAX_MUTE_SECONDS",
    "encode",
    "encode_all",
    "parse_command",
    "parse_server_line",
    "valid_username",
    "find_forbidden",
    "escape_controls",
]

#: Protocol name and version, sent in the server's greeting.
PROTOCOL = "labchat/1"

#: Longest line a client may send, counting the terminating newline. IRC allows 512 bytes
#: (RFC 2812 section 2.3); we allow 1024 so a learner's sentence fits, while a line still fits
#: in one loopback segment and one TLS record, which keeps captures easy to read.
MAX_LINE_BYTES = 1024

#: Longest line the server sends. A relayed chat line carries a prefix (`MSG <user> ` is at
#: most 37 bytes) in front of up to MAX_LINE_BYTES of client text, so the server's limit is a
#: little larger than the client's.
MAX_SERVER_LINE_BYTES = MAX_LINE_BYTES + 64

#: User names are short, ASCII and safe to print in a log, a terminal or a capture.
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")

#: Code points no labchat/1 line may carry, anywhere (issue 11; docs/protocol.md, "Lines"):
#:
#: * C0 controls except TAB (U+0000-U+0008, U+000A-U+001F): ESC starts terminal escape
#:   sequences (clear the screen, move the cursor, set the window title); a bare CR or a
#:   BS redraws the start of a line; VT and FF are line breaks to `str.splitlines()`;
#: * DEL (U+007F) and the C1 controls (U+0080-U+009F): U+009B is a one-byte CSI on some
#:   terminals, U+0085 (NEL) another line break;
#: * the bidi embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069),
#:   which reorder what follows them on screen ("Trojan Source", CVE-2021-42574);
#: * the line and paragraph separators U+2028 and U+2029.
#:
#: TAB is allowed: it is how pasted code is indented, and it moves no cursor anywhere else.
FORBIDDEN_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

#: Every code an `ERR` line may carry (docs/protocol.md explains each).
ERROR_CODES = frozenset(
    {
        "auth",
        "not-logged-in",
        "unknown-command",
        "too-long",
        "encoding",
        "busy",
        "throttled",
        "timeout",
        "no-such-user",
        "syntax",
        "slow-consumer",
        "replaced",
        "forbidden",
        "muted",
        "kicked",
    }
)

#: How long `MUTE <user>` silences someone when no time is given: a few minutes of calm,
#: not the rest of the lesson.
DEFAULT_MUTE_SECONDS = 300
#: The longest mute: a day. Anything longer is a job for `labchat deluser`.
MAX_MUTE_SECONDS = 24 * 3600


class LocalProtocolError(ValueError):
    """The caller asked to send something labchat/1 cannot express (e.g. a newline in text)."""


class RemoteProtocolError(ValueError):
    """The peer sent something that is not valid labchat/1.

    Attributes:
        code: The `ERR` code a server answers with (one of ERROR_CODES).
        text: A human-readable explanation, safe to send back to the peer.
    """

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


def valid_username(name: str) -> bool:
    """Return True if *name* is a legal labchat/1 user name."""
    return USERNAME_RE.fullmatch(name) is not None


def find_forbidden(text: str) -> int | None:
    """Return the index of the first code point `FORBIDDEN_RE` refuses in *text*, or None."""
    match = FORBIDDEN_RE.search(text)
    return None if match is None else match.start()


# Shown escaped on a terminal besides FORBIDDEN_RE: TAB, and the Unicode "format" marks that
# reorder text without being the bidi controls above (Arabic letter mark, LRM, RLM).
_DISPLAY_EXTRA = frozenset("\t\u061c\u200e\u200f")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _needs_escape(ch: str) -> bool:
    return (
        FORBIDDEN_RE.match(ch) is not None
        or ch in _DISPLAY_EXTRA
        or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
    )


def _escape_one(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """Make *text* from the network safe to write to a terminal.

    Every control character, and every character that moves the cursor or reorders text,
    is written as a Python-style escape instead: ESC becomes ``\\x1b``, TAB ``\\t``, a
    bare CR ``\\r``, U+202E ``\\u202e``, so the reader sees that it was there but the
    terminal never acts on it. Everything else (letters of every script, emoji, combining
    marks, zero-width joiners) is left alone. Backslashes are not doubled: the result is for
    reading, not for parsing back.

    Clients call this on every field they display (`labchat.client.format_event` does);
    the server already refuses these characters (`FORBIDDEN_RE`), but a client must not
    trust that an old or hostile server did.

    Args:
        text: Any text, e.g. a field of a server message.

    Returns:
        The text with those characters escaped; *text* itself if there are none.
    """
    if text.isprintable() and "\t" not in text:
        return text  # the common case: nothing to look at character by character
    return "".join(_escape_one(ch) if _needs_escape(ch) else ch for ch in text)


# --------------------------------------------------------------------------- framing


@dataclass(frozen=True)
class Line:
    """One complete, decoded line, without its terminator."""

    text: str


@dataclass(frozen=True)
class LineTooLong:
    """A line went over the limit; its bytes up to the next newline are discarded."""

    limit: int


@dataclass(frozen=True)
class BadEncoding:
    """A complete line was not valid UTF-8; it is dropped."""

    raw: bytes


#: What `LineReader.feed` returns for each line.
FrameEvent = Line | LineTooLong | BadEncoding


class LineReader:
    """Split a byte stream into labchat/1 lines.

    Feed it bytes exactly as they came off the socket, split anywhere; it returns the same
    events whatever the split points (a property test checks this). A line longer than
    *max_line* yields one `LineTooLong` and everything up to the next newline is thrown away,
    so the buffer never holds more than *max_line* bytes.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    @property
    def partial(self) -> int:
        """Bytes of an unfinished line being held (0 when at a line boundary)."""
        return len(self._buffer)

    @property
    def in_line(self) -> bool:
        """True while the peer is in the middle of a line (held or being discarded)."""
        return bool(self._buffer) or self._discarding

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Add bytes; return the events for every line they complete."""
        events: list[FrameEvent] = []
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline + 1
            chunk = data[start:end]
            start = end
            if self._discarding:
                if newline >= 0:
                    self._discarding = False
                continue
            self._buffer += chunk
            if len(self._buffer) > self.max_line:
                # Over the limit, whether or not the newline came with it.
                events.append(LineTooLong(self.max_line))
                self._buffer.clear()
                self._discarding = newline < 0
                continue
            if newline >= 0:
                events.append(self._decode(bytes(self._buffer)))
                self._buffer.clear()
        return events

    @staticmethod
    def _decode(raw: bytes) -> FrameEvent:
        body = raw[:-1]
        if body.endswith(b"\r"):
            body = body[:-1]
        try:
            return Line(body.decode("utf-8"))
        except UnicodeDecodeError:
            return BadEncoding(raw)


# --------------------------------------------------------------------------- events

# Client -> server commands.


@dataclass(frozen=True)
class Login:
    user: str
    password: str

    def __repr__(self) -> str:  # never show a password in a log or a traceback
        return f"Login(user={self.user!r}, password='***')"


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Tell:
    user: str
    text: str


@dataclass(frozen=True)
class Who:
    pass


@dataclass(frozen=True)
class Ping:
    """`PING [token]`: from a client (answered by PONG) or from an idle-checking server."""

    token: str = ""


@dataclass(frozen=True)
class Pong:
    token: str = ""


@dataclass(frozen=True)
class Quit:
    pass


# Operator (teacher) commands; the server refuses them from other users (ERR forbidden).


@dataclass(frozen=True)
class Kick:
    """`KICK <user> [reason]`: close that user's connection (they may log in again)."""

    user: str
    reason: str = ""


@dataclass(frozen=True)
class Mute:
    """`MUTE <user> [seconds]`: refuse that user's SAY and TELL for a while; 0 unmutes."""

    user: str
    seconds: float | None = None  # None: DEFAULT_MUTE_SECONDS


@dataclass(frozen=True)
class Unlock:
    """`UNLOCK <user>` or `UNLOCK @<address>`: end that account's (or address's) login
    cool-downs now."""

    target: str


@dataclass(frozen=True)
class ListThrottled:
    """`THROTTLED`: which accounts and addresses are in a login cool-down."""


# Server -> client messages.


@dataclass(frozen=True)
class Hello:
    text: str
    version: str = PROTOCOL


@dataclass(frozen=True)
class Ok:
    detail: str = ""


@dataclass(frozen=True)
class Err:
    code: str
    text: str = ""


@dataclass(frozen=True)
class Msg:
    user: str
    text: str


@dataclass(frozen=True)
class Priv:
    sender: str
    text: str


@dataclass(frozen=True)
class Users:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Bye:
    text: str = ""


@dataclass(frozen=True)
class Join:
    user: str


@dataclass(frozen=True)
class Leave:
    user: str


@dataclass(frozen=True)
class Throttled:
    """`THROTTLED [entry ...]`, the answer to the operator's `THROTTLED`.

    Each entry is ``<account>@<address>=<seconds>`` for one account from one address, or
    ``@<address>=<seconds>`` for a whole address; seconds are whole, rounded up.
    """

    entries: tuple[str, ...] = ()


Command = Login | Say | Tell | Who | Ping | Pong | Quit | Kick | Mute | Unlock | ListThrottled
ServerMessage = Hello | Ok | Err | Msg | Priv | Users | Ping | Pong | Bye | Join | Leave | Throttled


# --------------------------------------------------------------------------- encoding


def _field(value: str, what: str) -> str:
    at = find_forbidden(value)  # CR and LF are forbidden code points too
    if at is not None:
        raise LocalProtocolError(
            f"{what} must not contain control characters (U+{ord(value[at]):04X} at {at})"
        )
    return value


def _word(value: str, what: str) -> str:
    if not value or " " in value:
        raise LocalProtocolError(f"{what} must be one non-empty word, got {value!r}")
    return _field(value, what)


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _text_of(event: Command | ServerMessage) -> str:
    match event:
        case Login(user, password):
            if not valid_username(user):
                raise LocalProtocolError(f"invalid user name {user!r}")
            return f"LOGIN {user} {_field(password, 'password')}"
        case Say(text):
            return _join("SAY", _field(text, "text"))
        case Tell(user, text):
            return _join("TELL", _word(user, "user"), _field(text, "text"))
        case Who():
            return "WHO"
        case Ping(token):
            return _join("PING", _field(token, "token"))
        case Pong(token):
            return _join("PONG", _field(token, "token"))
        case Quit():
            return "QUIT"
        case Kick(user, reason):
            return _join("KICK", _word(user, "user"), _field(reason, "reason"))
        case Mute(user, seconds):
            shown = "" if seconds is None else f"{seconds:g}"
            return _join("MUTE", _word(user, "user"), shown)
        case Unlock(target):
            return f"UNLOCK {_word(target, 'target')}"
        case ListThrottled():
            return "THROTTLED"
        case Throttled(entries):
            return " ".join(["THROTTLED", *(_word(e, "entry") for e in entries)])
        case Hello(text, version):
            return _join("HELLO", _word(version, "version"), _field(text, "text"))
        case Ok(detail):
            return _join("OK", _field(detail, "detail"))
        case Err(code, text):
            return _join("ERR", _word(code, "code"), _field(text, "text"))
        case Msg(user, text):
            return _join("MSG", _word(user, "user"), _field(text, "text"))
        case Priv(sender, text):
            return _join("PRIV", _word(sender, "sender"), _field(text, "text"))
        case Users(names):
            return " ".join(["USERS", *(_word(n, "name") for n in names)])
        case Bye(text):
            return _join("BYE", _field(text, "text"))
        case Join(user):
            return f"JOIN {_word(user, 'user')}"
        case Leave(user):
            return f"LEAVE {_word(user, 'user')}"
    raise LocalProtocolError(f"not a labchat/1 event: {event!r}")


def encode(event: Command | ServerMessage, *, limit: int | None = None) -> bytes:
    """Encode one event as a wire line (UTF-8, ending in ``\\n``).

    Args:
        event: Any command or server message.
        limit: Longest allowed line in bytes, newline included. Defaults to MAX_LINE_BYTES
            for client commands and MAX_SERVER_LINE_BYTES for server messages.

    Raises:
        LocalProtocolError: a field holds a line break, a word is empty or holds a space, or
            the line is longer than the limit.
    """
    data = (_text_of(event) + "\n").encode("utf-8")
    if limit is None:
        is_command = isinstance(event, Login | Say | Tell | Who | Quit | Kick | Mute | Unlock)
        limit = MAX_LINE_BYTES if is_command else MAX_SERVER_LINE_BYTES
    if len(data) > limit:
        raise LocalProtocolError(f"line of {len(data)} bytes is over the {limit}-byte limit")
    return data


# --------------------------------------------------------------------------- parsing


def _split_verb(text: str) -> tuple[str, str]:
    verb, _, rest = text.partition(" ")
    return verb.upper(), rest


def parse_command(text: str) -> Command:
    """Parse one client line (already framed and decoded) into a command.

    Verbs are case-insensitive so a learner typing into `nc` can write `login`.

    Raises:
        RemoteProtocolError: with code `encoding` (a forbidden code point), `syntax` or
            `unknown-command`.
    """
    at = find_forbidden(text)
    if at is not None:
        # Refused as a whole, before anything of it is relayed (issue 11): an ESC redraws a
        # classmate's terminal, a bare CR overwrites the start of a line, U+2028 and VT are
        # line breaks to str.splitlines(), U+202E reverses what follows. Only "\r\n" ends a
        # line; LineReader has stripped that CR already.
        raise RemoteProtocolError(
            "encoding",
            f"control character U+{ord(text[at]):04X} at column {at + 1} is not allowed",
        )
    if not text.strip():  # after: str.strip() also eats NEL, U+2028, VT and FF
        raise RemoteProtocolError("syntax", "empty line; try WHO, SAY <text> or QUIT")
    verb, rest = _split_verb(text)
    if verb == "LOGIN":
        user, _, password = rest.partition(" ")
        if not user or not password:
            raise RemoteProtocolError("syntax", "usage: LOGIN <user> <password>")
        return Login(user, password)
    if verb == "SAY":
        if not rest:
            raise RemoteProtocolError("syntax", "usage: SAY <text>")
        return Say(rest)
    if verb == "TELL":
        user, _, message = rest.partition(" ")
        if not user or not message:
            raise RemoteProtocolError("syntax", "usage: TELL <user> <text>")
        return Tell(user, message)
    if verb in ("WHO", "QUIT"):
        if rest.strip():
            raise RemoteProtocolError("syntax", f"usage: {verb}")
        return Who() if verb == "WHO" else Quit()
    if verb == "PING":
        return Ping(rest)
    if verb == "PONG":
        return Pong(rest)
    if verb in _OPERATOR_VERBS:
        return _parse_operator(verb, rest)
    shown = verb[:32] + ("..." if len(verb) > 32 else "")
    raise RemoteProtocolError("unknown-command", f"{shown!r} is not a labchat/1 command")


_OPERATOR_VERBS = ("KICK", "MUTE", "UNLOCK", "THROTTLED")


def _parse_operator(verb: str, rest: str) -> Command:
    first, _, tail = rest.partition(" ")
    if verb == "THROTTLED":
        if rest.strip():
            raise RemoteProtocolError("syntax", "usage: THROTTLED")
        return ListThrottled()
    if verb == "UNLOCK":
        if not first or tail:
            raise RemoteProtocolError("syntax", "usage: UNLOCK <user> or UNLOCK @<address>")
        return Unlock(first)
    if not first:
        usage = "KICK <user> [reason]" if verb == "KICK" else "MUTE <user> [seconds]"
        raise RemoteProtocolError("syntax", f"usage: {usage}")
    if verb == "KICK":
        return Kick(first, tail)
    if not tail.strip():
        return Mute(first)
    try:
        seconds = float(tail)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_MUTE_SECONDS:  # also NaN
        raise RemoteProtocolError(
            "syntax", f"usage: MUTE <user> [seconds], 0 to {MAX_MUTE_SECONDS} (0 unmutes)"
        )
    return Mute(first, seconds)


def parse_server_line(text: str) -> ServerMessage:
    """Parse one server line into a server message (the client side of the protocol).

    Raises:
        RemoteProtocolError: with code `syntax` when the server's line is not labchat/1.
    """
    verb, rest = text.partition(" ")[0], text.partition(" ")[2]
    first, _, tail = rest.partition(" ")
    if verb == "HELLO" and first:
        return Hello(tail, first)
    if verb == "OK":
        return Ok(rest)
    if verb == "ERR" and first:
        return Err(first, tail)
    if verb == "MSG" and first:
        return Msg(first, tail)
    if verb == "PRIV" and first:
        return Priv(first, tail)
    if verb == "USERS":
        return Users(tuple(rest.split()))
    if verb == "PING":
        return Ping(rest)
    if verb == "PONG":
        return Pong(rest)
    if verb == "BYE":
        return Bye(rest)
    if verb == "JOIN" and first:
        return Join(first)
    if verb == "LEAVE" and first:
        return Leave(first)
    if verb == "THROTTLED":
        return Throttled(tuple(rest.split()))
    raise RemoteProtocolError("syntax", f"not a labchat/1 server line: {text[:80]!r}")


def encode_all(events: Iterable[Command | ServerMessage]) -> bytes:
    """Encode several events into one buffer (one write, one TLS record where it fits)."""
    return b"".join(encode(e) for e in events)
