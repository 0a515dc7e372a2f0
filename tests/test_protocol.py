"""Tests for labchat.protocol: framing, parsing and encoding of labchat/1, all in memory."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labchat import protocol as p

# --------------------------------------------------------------------------- framing


def test_LineReader_splits_lines_and_keeps_partial() -> None:
    reader = p.LineReader()
    assert reader.feed(b"WHO\nSAY hi\nSAY par") == [p.Line("WHO"), p.Line("SAY hi")]
    assert reader.partial == len(b"SAY par")
    assert reader.in_line
    assert reader.feed(b"tial\n") == [p.Line("SAY partial")]
    assert reader.partial == 0
    assert not reader.in_line


def test_LineReader_accepts_crlf() -> None:
    reader = p.LineReader()
    assert reader.feed(b"WHO\r\nSAY a\r\n") == [p.Line("WHO"), p.Line("SAY a")]
    # Split between \r and \n: same result.
    assert reader.feed(b"SAY b\r") == []
    assert reader.feed(b"\n") == [p.Line("SAY b")]


def test_LineReader_empty_lines() -> None:
    assert p.LineReader().feed(b"\n\r\n") == [p.Line(""), p.Line("")]


def test_LineReader_limit_is_exactly_MAX_LINE_BYTES() -> None:
    assert p.MAX_LINE_BYTES == 1024
    reader = p.LineReader()
    fits = b"x" * (p.MAX_LINE_BYTES - 1) + b"\n"  # 1024 bytes counting the newline
    assert reader.feed(fits) == [p.Line("x" * (p.MAX_LINE_BYTES - 1))]
    fits_crlf = b"y" * (p.MAX_LINE_BYTES - 2) + b"\r\n"
    assert reader.feed(fits_crlf) == [p.Line("y" * (p.MAX_LINE_BYTES - 2))]
    too_long = b"z" * p.MAX_LINE_BYTES + b"\n"  # 1025 bytes
    assert reader.feed(too_long + b"WHO\n") == [p.LineTooLong(p.MAX_LINE_BYTES), p.Line("WHO")]


def test_LineReader_discards_rest_of_long_line_and_bounds_buffer() -> None:
    reader = p.LineReader()
    events = reader.feed(b"a" * 1500)
    assert events == [p.LineTooLong(p.MAX_LINE_BYTES)]
    assert reader.partial == 0 and reader.in_line  # discarding, holding nothing
    assert reader.feed(b"b" * 100_000) == []
    assert reader.partial == 0
    assert reader.feed(b"still the long line\nSAY next\n") == [p.Line("SAY next")]
    assert not reader.in_line


def test_LineReader_exactly_full_buffer_without_newline_waits() -> None:
    reader = p.LineReader()
    assert reader.feed(b"q" * p.MAX_LINE_BYTES) == []  # may still end with its newline...
    assert reader.feed(b"\n") == [p.LineTooLong(p.MAX_LINE_BYTES)]  # ...which makes 1025
    assert reader.feed(b"WHO\n") == [p.Line("WHO")]


def test_LineReader_custom_limit() -> None:
    reader = p.LineReader(max_line=8)
    assert reader.feed(b"1234567\n12345678\nok\n") == [
        p.Line("1234567"),
        p.LineTooLong(8),
        p.Line("ok"),
    ]


def test_LineReader_bad_utf8_is_BadEncoding_and_next_line_fine() -> None:
    reader = p.LineReader()
    events = reader.feed(b"SAY \xff\xfe\nSAY caf\xc3\xa9\n")
    assert events == [p.BadEncoding(b"SAY \xff\xfe\n"), p.Line("SAY caf\u00e9")]
    # A multi-byte character split across reads is fine.
    assert reader.feed(b"SAY \xc3") == []
    assert reader.feed(b"\xa9\n") == [p.Line("SAY \u00e9")]
    # A truncated sequence at the end of a line is not.
    assert isinstance(reader.feed(b"SAY \xc3\n")[0], p.BadEncoding)


# Byte streams built from pieces that exercise every branch: long runs, newlines, CR,
# invalid UTF-8, multi-byte characters.
_pieces = st.sampled_from(
    [b"\n", b"\r\n", b"\r", b"SAY hi", b"\xff", b"\xc3\xa9", b"x" * 300, b"y" * 1023, b" "]
)
_streams = st.one_of(
    st.binary(max_size=3000),
    st.lists(_pieces, max_size=30).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(data=_streams, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12))
def test_LineReader_split_points_do_not_matter(data: bytes, cuts: list[int]) -> None:
    whole = p.LineReader(max_line=p.MAX_LINE_BYTES).feed(data)
    reader = p.LineReader(max_line=p.MAX_LINE_BYTES)
    pieces = []
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, end in zip(bounds, bounds[1:], strict=False):
        pieces.extend(reader.feed(data[start:end]))
    assert pieces == whole
    assert reader.partial <= p.MAX_LINE_BYTES


@settings(max_examples=200, deadline=None)
@given(data=_streams)
def test_LineReader_byte_at_a_time_matches_whole(data: bytes) -> None:
    whole = p.LineReader(max_line=64).feed(data)
    reader = p.LineReader(max_line=64)
    events = []
    for i in range(len(data)):
        events.extend(reader.feed(data[i : i + 1]))
    assert events == whole


# --------------------------------------------------------------------------- commands

COMMANDS = [
    (p.Login("alice", "pass word"), b"LOGIN alice pass word\n"),
    (p.Say("hello world"), b"SAY hello world\n"),
    (p.Tell("bob", "psst, hi"), b"TELL bob psst, hi\n"),
    (p.Who(), b"WHO\n"),
    (p.Ping("tok"), b"PING tok\n"),
    (p.Ping(), b"PING\n"),
    (p.Pong("tok"), b"PONG tok\n"),
    (p.Pong(), b"PONG\n"),
    (p.Quit(), b"QUIT\n"),
    (p.Kick("bob"), b"KICK bob\n"),
    (p.Kick("bob", "spamming the room"), b"KICK bob spamming the room\n"),
    (p.Mute("bob"), b"MUTE bob\n"),
    (p.Mute("bob", 90.0), b"MUTE bob 90\n"),
    (p.Mute("bob", 0.5), b"MUTE bob 0.5\n"),
    (p.Unlock("alice"), b"UNLOCK alice\n"),
    (p.Unlock("@10.0.0.7"), b"UNLOCK @10.0.0.7\n"),
    (p.ListThrottled(), b"THROTTLED\n"),
]


@pytest.mark.parametrize(("command", "wire"), COMMANDS, ids=lambda v: repr(v)[:20])
def test_command_encode_and_parse_round_trip(command: p.Command, wire: bytes) -> None:
    assert p.encode(command) == wire
    assert p.parse_command(wire.decode().rstrip("\n")) == command


@pytest.mark.parametrize(
    "text", ["login alice pw", "Login alice pw", "LOGIN alice pw", "lOgIn alice pw"]
)
def test_parse_command_verbs_are_case_insensitive(text: str) -> None:
    assert p.parse_command(text) == p.Login("alice", "pw")


def test_parse_command_keeps_spaces_in_text() -> None:
    assert p.parse_command("SAY  two  spaces ") == p.Say(" two  spaces ")
    assert p.parse_command("TELL bob a b  c") == p.Tell("bob", "a b  c")
    assert p.parse_command("LOGIN alice my pass phrase") == p.Login("alice", "my pass phrase")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "syntax"),
        ("   ", "syntax"),
        ("LOGIN", "syntax"),
        ("LOGIN alice", "syntax"),
        ("LOGIN alice ", "syntax"),
        ("SAY", "syntax"),
        ("SAY ", "syntax"),
        ("TELL", "syntax"),
        ("TELL bob", "syntax"),
        ("TELL bob ", "syntax"),
        ("WHO extra", "syntax"),
        ("QUIT now", "syntax"),
        ("FOO", "unknown-command"),
        ("HELLO labchat/1", "unknown-command"),
        ("MSG alice hi", "unknown-command"),
        ("X" * 500, "unknown-command"),
        ("SAY a\rb", "encoding"),
        ("PING x\ry", "encoding"),
        ("LOGIN alice pass\rword", "encoding"),
        ("KICK", "syntax"),
        ("MUTE", "syntax"),
        ("MUTE bob soon", "syntax"),
        ("MUTE bob -5", "syntax"),
        ("MUTE bob 86401", "syntax"),
        ("MUTE bob inf", "syntax"),
        ("UNLOCK", "syntax"),
        ("UNLOCK alice bob", "syntax"),
        ("THROTTLED please", "syntax"),
        ("SAY \x1b[2J", "encoding"),
        ("TELL bob \u202eevil", "encoding"),
        ("SAY one\u2028two", "encoding"),
        ("LOGIN al\x1bice password", "encoding"),
    ],
)
def test_parse_command_errors_carry_ERR_code(text: str, code: str) -> None:
    with pytest.raises(p.RemoteProtocolError) as info:
        p.parse_command(text)
    assert info.value.code == code
    assert code in p.ERROR_CODES
    assert info.value.text
    assert len(info.value.text) < 200  # safe to echo back, whatever the peer sent
    # The explanation itself can go on the wire.
    p.encode(p.Err(info.value.code, info.value.text))


def test_Login_repr_hides_password() -> None:
    assert "secret" not in repr(p.Login("alice", "secret-pw"))


# --------------------------------------------------------------------------- server lines

SERVER_LINES = [
    (p.Hello("welcome", "labchat/1"), b"HELLO labchat/1 welcome\n"),
    (p.Ok("alice"), b"OK alice\n"),
    (p.Ok(), b"OK\n"),
    (p.Err("auth", "invalid user name or password"), b"ERR auth invalid user name or password\n"),
    (p.Err("busy"), b"ERR busy\n"),
    (p.Msg("alice", "hi there"), b"MSG alice hi there\n"),
    (p.Priv("bob", "psst"), b"PRIV bob psst\n"),
    (p.Users(("alice", "bob")), b"USERS alice bob\n"),
    (p.Users(()), b"USERS\n"),
    (p.Ping("abc"), b"PING abc\n"),
    (p.Pong("abc"), b"PONG abc\n"),
    (p.Bye("see you"), b"BYE see you\n"),
    (p.Bye(), b"BYE\n"),
    (p.Join("carol"), b"JOIN carol\n"),
    (p.Leave("carol"), b"LEAVE carol\n"),
    (p.Users(("@teacher", "alice")), b"USERS @teacher alice\n"),
    (
        p.Throttled(("alice@10.0.0.5=28", "@10.0.0.9=3")),
        b"THROTTLED alice@10.0.0.5=28 @10.0.0.9=3\n",
    ),
    (p.Throttled(()), b"THROTTLED\n"),
]


@pytest.mark.parametrize(("message", "wire"), SERVER_LINES, ids=lambda v: repr(v)[:20])
def test_server_line_encode_and_parse_round_trip(message: p.ServerMessage, wire: bytes) -> None:
    assert p.encode(message) == wire
    assert p.parse_server_line(wire.decode().rstrip("\n")) == message


@pytest.mark.parametrize("text", ["", "NOPE", "HELLO", "ERR", "MSG", "JOIN", "ok alice"])
def test_parse_server_line_rejects_garbage(text: str) -> None:
    with pytest.raises(p.RemoteProtocolError) as info:
        p.parse_server_line(text)
    assert info.value.code == "syntax"


def test_encode_all_is_concatenation() -> None:
    events = [p.Ok("alice"), p.Msg("alice", "hi"), p.Bye()]
    assert p.encode_all(events) == b"".join(p.encode(e) for e in events)


# --------------------------------------------------------------------------- local errors


@pytest.mark.parametrize(
    "event",
    [
        p.Say("two\nlines"),
        p.Say("carriage\rreturn"),
        p.Tell("bob", "a\nb"),
        p.Tell("bo b", "x"),
        p.Tell("", "x"),
        p.Login("alice", "pass\nword"),
        p.Login("bad name", "password"),
        p.Login("", "password"),
        p.Ping("a\nb"),
        p.Pong("a\rb"),
        p.Msg("alice", "x\ny"),
        p.Msg("al ice", "x"),
        p.Err("two words", "x"),
        p.Err("", "x"),
        p.Hello("hi\n", "labchat/1"),
        p.Users(("alice", "b ob")),
        p.Bye("x\r\n"),
        p.Say("escape \x1b[2J"),
        p.Msg("alice", "bidi \u202e"),
        p.Priv("bob", "nel \x85"),
        p.Join(""),
        p.Leave("a\nb"),
    ],
    ids=repr,
)
def test_encode_refuses_what_labchat1_cannot_express(event: object) -> None:
    with pytest.raises(p.LocalProtocolError):
        p.encode(event)  # type: ignore[arg-type]


def test_encode_refuses_non_events() -> None:
    with pytest.raises(p.LocalProtocolError):
        p.encode("SAY hi")  # type: ignore[arg-type]


def test_encode_limits() -> None:
    longest = p.Say("x" * (p.MAX_LINE_BYTES - len(b"SAY \n")))
    assert len(p.encode(longest)) == p.MAX_LINE_BYTES
    with pytest.raises(p.LocalProtocolError):
        p.encode(p.Say("x" * (p.MAX_LINE_BYTES - len(b"SAY \n") + 1)))
    # Multi-byte characters count in bytes.
    with pytest.raises(p.LocalProtocolError):
        p.encode(p.Say("\u00e9" * 511))
    # The relayed form of the longest SAY, with the longest user name, still fits a
    # server line.
    text = "x" * (p.MAX_LINE_BYTES - len(b"SAY \n"))
    assert len(p.encode(p.Msg("u" * 32, text))) <= p.MAX_SERVER_LINE_BYTES
    with pytest.raises(p.LocalProtocolError):
        p.encode(p.Ok("x"), limit=3)


def test_valid_username() -> None:
    assert p.valid_username("alice")
    assert p.valid_username("A.b_c-9")
    assert p.valid_username("u" * 32)
    assert not p.valid_username("u" * 33)
    assert not p.valid_username("")
    assert not p.valid_username("al ice")
    assert not p.valid_username("al\u00efce")
    assert not p.valid_username("alice\n")


# --------------------------------------------------------------------------- properties

_names = st.from_regex(p.USERNAME_RE, fullmatch=True)
# Free text: anything labchat/1 can carry (no line break, no forbidden code point).
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60).filter(
    lambda t: p.find_forbidden(t) is None
)
_nonempty_text = _text.filter(lambda t: t != "")
_codes = st.sampled_from(sorted(p.ERROR_CODES))

server_messages = st.one_of(
    st.builds(p.Hello, _text, st.sampled_from([p.PROTOCOL, "labchat/2", "x"])),
    st.builds(p.Ok, _text),
    st.builds(p.Err, _codes, _text),
    st.builds(p.Msg, _names, _text),
    st.builds(p.Priv, _names, _text),
    st.builds(p.Users, st.lists(_names, max_size=8).map(tuple)),
    st.builds(p.Ping, _text),
    st.builds(p.Pong, _text),
    st.builds(p.Bye, _text),
    st.builds(p.Join, _names),
    st.builds(p.Leave, _names),
    st.builds(
        p.Throttled, st.lists(_names.map(lambda n: f"{n}@10.0.0.1=5"), max_size=4).map(tuple)
    ),
)

commands = st.one_of(
    st.builds(p.Login, _names, _nonempty_text),
    st.builds(p.Say, _nonempty_text),
    st.builds(p.Tell, _names, _nonempty_text),
    st.just(p.Who()),
    st.builds(p.Ping, _text),
    st.builds(p.Pong, _text),
    st.just(p.Quit()),
    st.builds(p.Kick, _names, _text.filter(lambda t: t == t.strip())),
    st.builds(p.Mute, _names, st.none() | st.integers(0, p.MAX_MUTE_SECONDS).map(float)),
    st.builds(p.Unlock, _names | _names.map(lambda n: "@" + n)),
    st.just(p.ListThrottled()),
)


def _decode_one(wire: bytes) -> str:
    events = p.LineReader(p.MAX_SERVER_LINE_BYTES).feed(wire)
    assert len(events) == 1 and isinstance(events[0], p.Line), events
    return events[0].text


@settings(max_examples=300, deadline=None)
@given(server_messages)
def test_parse_server_line_inverts_encode(message: p.ServerMessage) -> None:
    assert p.parse_server_line(_decode_one(p.encode(message))) == message


@settings(max_examples=300, deadline=None)
@given(commands)
def test_parse_command_inverts_encode(command: p.Command) -> None:
    assert p.parse_command(_decode_one(p.encode(command))) == command


@settings(max_examples=200, deadline=None)
@given(st.lists(server_messages, max_size=10), st.data())
def test_stream_of_server_messages_survives_any_split(
    messages: list[p.ServerMessage], data: st.DataObject
) -> None:
    wire = p.encode_all(messages)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    reader = p.LineReader(p.MAX_SERVER_LINE_BYTES)
    frames = []
    bounds = sorted({0, len(wire), *cuts})
    for start, end in zip(bounds, bounds[1:], strict=False):
        frames.extend(reader.feed(wire[start:end]))
    assert [p.parse_server_line(f.text) for f in frames] == messages


_line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=200
)
_verbs = st.sampled_from(["SAY", "say", "TELL bob", "TELL", "PING", "PONG", "LOGIN alice", "WHO"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(_line_text, st.tuples(_verbs, _line_text).map(" ".join)))
def test_parse_command_result_can_always_be_answered(text: str) -> None:
    # Any framed line (no newline; everything else possible) either fails with an ERR code or
    # gives a command whose relayed form the server can encode: a command that parses but
    # cannot be answered would crash the session that received it.
    try:
        command = p.parse_command(text)
    except p.RemoteProtocolError as exc:
        assert exc.code in p.ERROR_CODES
        p.encode(p.Err(exc.code, exc.text))
        return
    match command:
        case p.Say(said):
            p.encode(p.Msg("u" * 32, said))
        case p.Tell(user, said):
            p.encode(p.Priv("u" * 32, said))
            p.encode(p.Err("no-such-user", f"{user} is not logged in"))
        case p.Ping(token):
            p.encode(p.Pong(token))


# --------------------------------------------------------------------------- clean text


_any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
_forbidden_char = st.sampled_from(
    [chr(c) for c in range(0x3000) if p.FORBIDDEN_RE.fullmatch(chr(c)) is not None]
)


@settings(max_examples=500, deadline=None)
@given(_verbs, _any_text)
def test_parse_command_never_returns_a_forbidden_code_point(verb: str, text: str) -> None:
    line = f"{verb} {text}"
    try:
        command = p.parse_command(line)
    except p.RemoteProtocolError as exc:
        if p.find_forbidden(line) is not None:
            assert exc.code == "encoding"
        return
    assert p.find_forbidden(line) is None
    for value in vars(command).values():
        assert p.FORBIDDEN_RE.search(str(value)) is None


@settings(max_examples=300, deadline=None)
@given(_any_text, _forbidden_char, _any_text)
def test_parse_command_refuses_every_forbidden_code_point(
    before: str, bad: str, after: str
) -> None:
    with pytest.raises(p.RemoteProtocolError) as info:
        p.parse_command(f"SAY {before}{bad}{after}")
    assert info.value.code == "encoding"
    p.encode(p.Err(info.value.code, info.value.text))  # the answer itself is clean


@pytest.mark.parametrize(
    "code",
    [*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F)]
    + [*range(0x2066, 0x206A), 0x2028, 0x2029, 0x85],
)
def test_FORBIDDEN_RE_is_the_issue_11_list(code: int) -> None:
    assert p.find_forbidden(f"ok{chr(code)}") == 2
    assert p.find_forbidden("tab\tis fine, and so is caf\u00e9 and \u65e5\u672c") is None


@settings(max_examples=500, deadline=None)
@given(_any_text)
def test_escape_controls_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = p.escape_controls(text)
    assert p.find_forbidden(shown) is None
    assert "\t" not in shown and "\x1b" not in shown
    assert all(unicodedata.category(ch) not in ("Cc", "Zl", "Zp") for ch in shown)
    if text.isprintable():
        assert shown == text  # ordinary text, of any script, is shown as it is


def test_escape_controls_examples() -> None:
    assert p.escape_controls("\x1b[2J\x1b]0;title\x07") == "\\x1b[2J\\x1b]0;title\\x07"
    assert p.escape_controls("a\tb\rc\nd") == "a\\tb\\rc\\nd"
    assert p.escape_controls("x\u202egnp.exe\u2028\x9b") == "x\\u202egnp.exe\\u2028\\x9b"
    family = "\U0001f468\u200d\U0001f469"  # emoji joined by ZWJ: left alone
    assert p.escape_controls(f"caf\u00e9 {family}") == f"caf\u00e9 {family}"
