"""labchat.chatui without a terminal: /commands, completion, history paths, and `ChatSession`
against real servers on 127.0.0.1 (its thread owns the socket; it reconnects with backoff)."""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

import pytest
from conftest import PASSWORDS
from helpers import TIMEOUT, wait_until

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.chatui import ChatSession, is_terminal
from labchat.chatui import commands as c
from labchat.chatui.history import data_dir, history_file
from labchat.chatui.view import KINDS, STYLE, Line, line_for_event, safe
from labchat.client import Client
from labchat.server import Server

pytestmark = pytest.mark.usefixtures("no_thread_leak")


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("typed", "action"),
    [
        ("hello", c.Say("hello")),
        ("//who is there", c.Say("/who is there")),
        ("/who", c.Who()),
        ("/tell bob psst, hi", c.Tell("bob", "psst, hi")),
        ("/ping", c.Ping()),
        ("/help", c.Help()),
        ("/quit", c.Quit()),
        ("/kick bob spamming", c.Kick("bob", "spamming")),
        ("/kick bob", c.Kick("bob")),
        ("/mute bob 30", c.Mute("bob", 30.0)),
        ("/mute bob", c.Mute("bob")),
        ("/unlock bob", c.Unlock("bob")),
        ("   ", None),
    ],
)
def test_parse(typed: str, action: object) -> None:
    assert c.parse(typed) == action


@pytest.mark.parametrize(
    ("typed", "fragment"),
    [
        ("/tell bob", "usage: /tell NAME text"),
        ("/tell", "usage: /tell NAME text"),
        ("/mute bob soon", "usage: /mute NAME [seconds]"),
        ("/mute bob -1", "usage: /mute NAME [seconds]"),
        ("/who me", "usage: /who"),
        ("/unlock", "usage: /unlock NAME"),
        ("/dance", "unknown command /dance; /help lists them"),
    ],
)
def test_parse_says_how_to_write_it(typed: str, fragment: str) -> None:
    usage = c.parse(typed)
    assert isinstance(usage, c.Usage) and fragment in usage.message


def test_complete_commands_then_names() -> None:
    names = ["alice", "bob", "bobby", "carol"]
    assert c.complete("/t", names) == ["/tell", "/throttled"]
    assert c.complete("/te", names) == ["/tell"]
    assert c.complete("/", names)[:3] == ["/help", "/kick", "/mute"]
    assert c.complete("/tell b", names) == ["bob", "bobby"]
    assert c.complete("/tell bob he", names) == []  # free text after the name
    assert c.complete("/ping x", names) == []
    assert c.complete("car", names) == ["carol"]  # addressing someone in a line
    assert c.complete("hi b", names) == ["bob", "bobby"]
    assert c.complete("", names) == []


def test_help_lists_every_command() -> None:
    text = "\n".join(c.help_lines())
    for command in c.COMMANDS:
        assert command.usage in text
    assert "(operators)" in text and "Up/Down history" in text
    assert "/kick" not in "\n".join(c.help_lines(operator=False))


# --------------------------------------------------------------------------- history, mode


def test_data_dir_follows_each_platform(tmp_path) -> None:
    home = str(tmp_path)
    assert data_dir({"HOME": home}, "linux") == tmp_path / ".local/share/labchat"
    assert data_dir({"HOME": home, "XDG_DATA_HOME": "/x/y"}, "linux") == Path("/x/y/labchat")
    assert data_dir({"HOME": home, "XDG_DATA_HOME": "rel"}, "linux").parent.name == "share"
    assert data_dir({"HOME": home}, "darwin") == tmp_path / "Library/Application Support/labchat"
    assert data_dir({"HOME": home, "APPDATA": home + "/R"}, "win32") == tmp_path / "R/labchat"


def test_history_file_per_user_mode_0600(tmp_path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    alice, bob = history_file("alice", env), history_file("bob", env)
    assert alice == tmp_path / "data/labchat/history/alice" and alice != bob
    assert oct(alice.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ValueError):
        history_file("..", env)


def test_is_terminal_needs_two_terminals_that_can_draw() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert is_terminal(Tty(), Tty(), {"TERM": "xterm-256color"})
    assert not is_terminal(io.StringIO(), Tty(), {"TERM": "xterm"})  # piped input
    assert not is_terminal(Tty(), io.StringIO(), {"TERM": "xterm"})  # output to a file
    assert not is_terminal(Tty(), Tty(), {"TERM": "dumb"})  # Emacs' shell


def test_line_for_event_kinds() -> None:
    assert line_for_event(p.Msg("alice", "hi"), "alice").kind == "own"
    assert line_for_event(p.Msg("bob", "hi"), "alice") == Line("msg", "<bob> hi", ANY_TIME)
    assert line_for_event(p.Priv("bob", "psst"), "alice").kind == "priv"
    assert line_for_event(p.Err("auth", "no"), "alice").kind == "error"
    assert line_for_event(p.Join("bob"), "alice").kind == "notice"
    assert Line("msg", "x", when=0).stamp().count(":") == 1


def test_each_kind_of_line_has_its_own_style() -> None:
    styles = [STYLE[f"line.{kind}"] for kind in KINDS]
    assert len(set(styles)) == len(KINDS)  # own, private, notice, error: each distinct
    assert "bold" in STYLE["line.error"] and STYLE["time"]


class _AnyTime(float):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, float)

    __hash__ = float.__hash__


ANY_TIME = _AnyTime()


# --------------------------------------------------------------------------- ChatSession


class Screen:
    """What a session showed, collected from its thread."""

    def __init__(self) -> None:
        self.lines: queue.Queue[Line] = queue.Queue()
        self.seen: list[Line] = []
        self.ended = threading.Event()

    def on_line(self, line: Line) -> None:
        self.lines.put(line)

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> Line:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"{text!r} not shown; shown: {self.seen}") from None
            self.seen.append(line)
            if text in line.text:
                return line


def start_session(server: Server, lab_certs, *, backoff=(0.05, 0.1), **kw) -> tuple:
    screen = Screen()
    address = server.address  # a restarted server comes back on the same port

    def connect() -> Client:
        return Client(*address, cafile=lab_certs.ca_cert, timeout=TIMEOUT)

    client = connect()
    client.login("alice", PASSWORDS["alice"])
    session = ChatSession(
        connect, "alice", PASSWORDS["alice"], on_line=screen.on_line,
        on_end=screen.ended.set, where="the lab", backoff=backoff, **kw,
    )  # fmt: skip
    session.start(client)
    return session, screen


def test_session_says_tells_pings_and_quits_in_order(make_server, connect, lab_certs) -> None:
    server = make_server()
    bob = connect(server, user="bob")
    session, screen = start_session(server, lab_certs)
    try:
        wait_until(lambda: session.names == {"alice", "bob"}, what="names from WHO")
        session.submit(c.Say("hello"))
        assert screen.wait_for("<alice> hello").kind == "own"
        session.submit(c.Tell("bob", "psst"))
        assert screen.wait_for("-> *bob* psst").kind == "priv-out"
        session.submit(c.Ping())
        assert screen.wait_for("ms round trip").kind == "notice"
        session.submit(c.Tell("nobody", "x"))
        assert screen.wait_for("no-such-user").kind == "error"
        bob.say("bye alice")
        screen.wait_for("<bob> bye alice")
        session.submit(c.Who())
        session.stop()  # QUIT after the WHO: its answer is shown before the goodbye
        screen.wait_for("-- in the room: alice bob")
        screen.wait_for("-- bye")
        assert session.join(TIMEOUT) and session.exit_code == 0
        assert screen.ended.is_set()
    finally:
        session.stop()
        session.join(TIMEOUT)


def test_session_reconnects_with_backoff_and_logs_in_again(lab_certs, users, connect) -> None:
    server = Server("127.0.0.1", 0, certs_dir=lab_certs.directory, users=users).start()
    port = server.address[1]
    statuses: list = []
    session, screen = start_session(server, lab_certs, on_status=statuses.append)
    try:
        server.close()
        screen.wait_for("connection to the lab lost")
        screen.wait_for("cannot reconnect: ")  # it keeps trying, and says why it fails
        server = Server("127.0.0.1", port, certs_dir=lab_certs.directory, users=users).start()
        screen.wait_for("-- connected again to the lab as alice", timeout=3 * TIMEOUT)
        assert session.status.connected
        down = [s for s in statuses if not s.connected and s.retry_at is not None]
        assert down and all("disconnected from the lab" in s.text for s in down)
        bob = connect(server, user="bob")
        session.submit(c.Say("back again"))
        wait_until(lambda: p.Msg("alice", "back again") in bob.recv_all(0.2))
    finally:
        session.stop()
        session.join(TIMEOUT)
        server.close()


def test_session_ends_when_logging_in_again_is_refused(lab_certs, users) -> None:
    server = Server("127.0.0.1", 0, certs_dir=lab_certs.directory, users=users).start()
    port = server.address[1]
    session, screen = start_session(server, lab_certs)
    try:
        server.close()
        screen.wait_for("connection to the lab lost")
        UserStore(users).add("alice", "a-new-password-now", replace=True)
        server = Server("127.0.0.1", port, certs_dir=lab_certs.directory, users=users).start()
        # A refused login costs a full scrypt hash and the server's equal-time answer.
        refused = screen.wait_for("logging in again was refused: auth", timeout=3 * TIMEOUT)
        assert refused.kind == "error"
        assert session.join(TIMEOUT) and session.exit_code == 1
    finally:
        session.stop()
        session.join(TIMEOUT)
        server.close()


def test_session_without_reconnect_ends_with_exit_1(make_server, lab_certs) -> None:
    server = make_server()
    session, screen = start_session(server, lab_certs, reconnect=False)
    server.close()
    screen.wait_for("connection to the lab lost")
    assert session.join(TIMEOUT) and session.exit_code == 1


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain words, é, 😀", "plain words, é, 😀"),
        ("\x1b[2J\x1b]0;owned\x07 hi", "\\x1b[2J\\x1b]0;owned\\x07 hi"),
        ("quiz\r<teacher> Quiz time!", "quiz\\r<teacher> Quiz time!"),
        ("\u202eevil \x9b31m", "\\u202eevil \\x9b31m"),
        ("a\tb\x7fc\u2028d", "a\\tb\\x7fc\\u2028d"),
        ("👩\u200d💻 e\u0301", "👩\u200d💻 e\u0301"),  # a ZWJ emoji and a combining accent stay
    ],
)
def test_safe_escapes_what_would_steer_a_terminal(raw: str, shown: str) -> None:
    assert safe(raw) == shown
    assert safe(shown) == shown  # escaping twice changes nothing


def test_every_event_is_shown_escaped() -> None:
    events = [
        p.Msg("m\x1b", "\x1b[2J"),
        p.Priv("bob", "\u202eevil"),
        p.Join("\x1bx"),
        p.Leave("\x1bx"),
        p.Users(("alice", "\x9bbob")),
        p.Err("auth", "\x07"),
        p.Bye("\x1b"),
    ]
    for event in events:
        text = line_for_event(event, "alice").text
        assert text.isprintable(), (event, text)
        assert "\\x" in text or "\\u" in text


def test_connection_errors_escape_the_servers_words() -> None:
    from labchat.cli.errors import Target, connect_error
    from labchat.client import ChatError

    error = connect_error(ChatError("busy", "\x1b[2Jserver full"), Target("127.0.0.1", 5050))
    assert "\x1b" not in str(error) and "\\x1b[2Jserver full" in str(error)


def test_operator_commands_are_refused_to_a_student(make_server, lab_certs) -> None:
    server = make_server()
    session, screen = start_session(server, lab_certs)
    try:
        for action in (c.Kick("bob"), c.Mute("bob", 5), c.Unlock("bob"), c.Throttled()):
            session.submit(action)
            assert screen.wait_for("forbidden").kind == "error"
        session.submit(c.Say("still here"))
        screen.wait_for("<alice> still here")
    finally:
        session.stop()
        session.join(TIMEOUT)


def test_operator_commands_for_a_teacher(make_server, connect, lab_certs, users) -> None:
    UserStore(users).add("alice", PASSWORDS["alice"], replace=True, operator=True)
    server = make_server()
    bob, carol = connect(server, user="bob"), connect(server, user="carol")
    session, screen = start_session(server, lab_certs)
    try:
        wait_until(lambda: session.names >= {"bob", "carol"}, what="names from WHO")
        session.submit(c.Mute("bob", 120))
        assert screen.wait_for("-- bob muted for 120 s").kind == "notice"
        bob.recv_all(0.2)
        bob.say("hello?")
        assert bob.recv(TIMEOUT).code == "muted"  # type: ignore[union-attr]
        session.submit(c.Unmute("bob"))
        screen.wait_for("-- bob may speak again")
        session.submit(c.Kick("carol", "enough"))
        screen.wait_for("-- carol kicked")  # the room's "-- carol left" may come first
        assert "-- carol left" in [line.text for line in screen.seen]
        session.submit(c.Throttled())
        screen.wait_for("-- in a login cool-down: nobody")
        session.submit(c.Unlock("dave"))
        screen.wait_for("-- login cool-downs of dave ended")
    finally:
        session.stop()
        session.join(TIMEOUT)
        carol.close()
