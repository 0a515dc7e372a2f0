"""`labchat chat` as people use it: in a terminal (tmux), and from a pipe (issue 12).

In tmux, the terminal application: typing while messages arrive leaves the input line intact;
history with Up/Down, kept per user; Tab completion; the client reconnecting after a server
restart (and Enter retrying at once); Ctrl-C; control characters from the network shown
escaped. From a pipe, plain line mode: every reply printed before the program ends.
"""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSWORDS
from helpers import ROOT, TIMEOUT, python_env, wait_until
from tmuxterm import TMUX, Tmux

from labchat import protocol as p
from labchat.server import Server

pytestmark = pytest.mark.usefixtures("no_thread_leak")

needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="needs tmux (apt-get install tmux; .ci/run installs it)"
)


def chat_argv(port: int, ca: Path | None, user: str = "alice", *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "labchat", "chat", "--port", str(port), "--user", user]
    return argv + (["--ca", str(ca)] if ca else []) + list(extra)


@pytest.fixture
def data_home(tmp_path: Path) -> Path:
    """XDG_DATA_HOME for the chat: its history files go here, not into the real home."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def terminal(data_home: Path) -> Iterator[Callable[..., Tmux]]:
    """Factory: `terminal(argv)` runs *argv* in tmux; every one is stopped at teardown."""
    opened: list[Tmux] = []

    def start(argv: list[str], **kw: object) -> Tmux:
        env = {"PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(data_home), "TERM": "xterm-256color"}
        term = Tmux(argv, env=env, **kw)  # type: ignore[arg-type]
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.close()


def log_in(term: Tmux, user: str = "alice") -> str:
    term.wait_for("password:")
    term.type(PASSWORDS[user], "Enter")
    return term.wait_for(lambda s: f"\n{user}>" in s and "connected to" in s)


def redrawn(screen: str) -> bool:
    """The application has drawn itself again after a message: its status bar is back."""
    rows = screen.rstrip().splitlines()
    return bool(rows) and "connected to" in rows[-1]


def input_line(screen: str, user: str = "alice") -> str:
    """The row with the prompt: the input line (the status bar is the row under it). tmux
    drops the blanks at the end of a row: an empty input line reads ``alice>``."""
    rows = [row for row in screen.splitlines() if row.split(" ")[0] == f"{user}>"]
    assert rows, screen
    return rows[-1]


# --------------------------------------------------------------------------- the terminal app


@needs_tmux
def test_typing_while_messages_arrive_leaves_the_input_line_intact(
    make_server, connect, lab_certs, terminal
) -> None:
    server = make_server()
    bob = connect(server, user="bob")
    term = terminal(chat_argv(server.address[1], lab_certs.ca_cert))
    log_in(term)
    term.type("I am typing a long sent")
    term.wait_for("alice> I am typing a long sent")
    for i in range(5):
        bob.say(f"interrupting you, line {i}")
    screen = term.wait_for(lambda s: "line 4" in s and redrawn(s))
    rows = screen.splitlines()
    for i in range(5):  # each message whole, on its own row, with its time stamp
        assert any(re.fullmatch(rf"\d\d:\d\d <bob> interrupting you, line {i}", r) for r in rows)
    assert input_line(screen) == "alice> I am typing a long sent"
    last = max(i for i, row in enumerate(rows) if row.strip())
    assert rows[last - 1] == "alice> I am typing a long sent"  # at the bottom...
    assert "connected to 127.0.0.1" in rows[last]  # ...above the status bar
    term.type("ence here", "Enter")
    assert bob.recv(TIMEOUT) == p.Join("alice")
    while (event := bob.recv(TIMEOUT)) != p.Msg("alice", "I am typing a long sentence here"):
        assert isinstance(event, p.Msg) and event.user == "bob", event
    term.wait_for(re.compile(r"\d\d:\d\d <alice> I am typing a long sentence here").search)
    term.type("C-d")
    assert term.exit_code() == 0


@needs_tmux
@pytest.mark.parametrize("leave", ["C-d", "/quit", "C-c"])
def test_chat_both_ways_then_leave(make_server, connect, lab_certs, terminal, leave) -> None:
    server = make_server()
    bob = connect(server, user="bob")
    term = terminal(chat_argv(server.address[1], lab_certs.ca_cert))
    screen = log_in(term)
    assert PASSWORDS["alice"] not in screen  # getpass turned echo off
    assert bob.recv(TIMEOUT) == p.Join("alice")
    term.type("hello from a terminal", "Enter")
    term.wait_for("<alice> hello from a terminal")
    assert bob.recv(TIMEOUT) == p.Msg("alice", "hello from a terminal")
    bob.say("hi alice")
    term.wait_for("<bob> hi alice")
    term.type("/who", "Enter")
    term.wait_for("-- in the room: alice bob")
    term.type("/tell bob just between us", "Enter")
    term.wait_for("-> *bob* just between us")
    assert bob.recv(TIMEOUT) == p.Msg("bob", "hi alice")
    assert bob.recv(TIMEOUT) == p.Priv("alice", "just between us")
    term.type("C-l")  # redraws the screen; it used to send a form feed to the room
    term.wait_for(redrawn)
    assert bob.recv_all(0.5) == []
    term.type(*([leave, "Enter"] if leave == "/quit" else [leave]))
    assert term.exit_code() == 0
    assert "Traceback" not in term.screen()
    assert bob.recv(TIMEOUT) == p.Leave("alice")


@needs_tmux
def test_history_with_up_and_down_kept_per_user(
    make_server, lab_certs, terminal, data_home
) -> None:
    server = make_server()
    term = terminal(chat_argv(server.address[1], lab_certs.ca_cert))
    log_in(term)
    for line in ("first line", "second line"):
        term.type(line, "Enter")
        term.wait_for(f"<alice> {line}")
    term.type("Up")
    term.wait_for(lambda s: input_line(s) == "alice> second line")
    term.type("Up")
    term.wait_for(lambda s: input_line(s) == "alice> first line")
    term.type("Down")
    term.wait_for(lambda s: input_line(s) == "alice> second line")
    term.type("C-e", " edited", "C-a", "C-k")  # Emacs keys: end, type, start, kill the line
    term.wait_for(lambda s: input_line(s) == "alice>")
    term.type("/quit", "Enter")
    assert term.exit_code() == 0

    history = data_home / "labchat" / "history" / "alice"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert "+first line" in history.read_text() and "+second line" in history.read_text()

    again = terminal(chat_argv(server.address[1], lab_certs.ca_cert))  # alice, next time
    log_in(again)
    again.type("Up")
    again.wait_for(lambda s: input_line(s) == "alice> /quit")
    again.type("Up")
    again.wait_for(lambda s: input_line(s) == "alice> second line")
    again.type("C-c")
    assert again.exit_code() == 0

    bob = terminal(chat_argv(server.address[1], lab_certs.ca_cert, "bob"))
    log_in(bob, "bob")
    bob.type("Up")  # bob's history is his own: empty
    time.sleep(0.5)
    assert input_line(bob.screen(), "bob") == "bob>"
    bob.type("C-c")
    assert bob.exit_code() == 0


@needs_tmux
def test_tab_completes_commands_and_names(make_server, connect, lab_certs, terminal) -> None:
    server = make_server()
    bob = connect(server, user="bob")
    term = terminal(chat_argv(server.address[1], lab_certs.ca_cert))
    log_in(term)
    term.type("/te", "Tab")
    term.wait_for(lambda s: input_line(s) == "alice> /tell")
    term.type("b", "Tab")
    term.wait_for(lambda s: input_line(s) == "alice> /tell bob")
    term.type("psst", "Enter")
    term.wait_for("-> *bob* psst")  # a /tell that worked says to whom
    assert bob.recv(TIMEOUT) == p.Join("alice")
    assert bob.recv(TIMEOUT) == p.Priv("alice", "psst")
    term.type("/ping", "Enter")
    term.wait_for(re.compile(r"-- pong from 127\.0\.0\.1:\d+: \d+\.\d ms round trip").search)
    term.type("/help", "Enter")
    term.wait_for("/tell NAME text")
    term.type("C-c")
    assert term.exit_code() == 0
    assert bob.recv(TIMEOUT) == p.Leave("alice")


def serve_on(port: int, lab_certs, users) -> Server:
    """A server on this exact port (SO_REUSEADDR: the old one's TIME_WAIT is no obstacle)."""
    return Server("127.0.0.1", port, certs_dir=lab_certs.directory, users=users).start()


@needs_tmux
def test_reconnects_after_a_server_restart(lab_certs, users, connect, terminal) -> None:
    server = serve_on(0, lab_certs, users)
    port = server.address[1]
    try:
        term = terminal(chat_argv(port, lab_certs.ca_cert))
        log_in(term)
        server.close()
        term.wait_for("connection to 127.0.0.1")
        term.wait_for("nothing is listening on")  # the first attempt failed: it says why
        term.type("kept while down")
        term.wait_for(re.compile(r"next try in [2-9] s").search)
        server = serve_on(port, lab_certs, users)
        term.type("Enter")  # at once, not when the countdown ends
        started = time.monotonic()
        term.wait_for("connected again to 127.0.0.1")
        assert time.monotonic() - started < 2.0 + 1.5  # well before the 2-9 s shown
        screen = term.wait_for(redrawn)
        assert input_line(screen) == "alice> kept while down"  # nothing typed was lost
        bob = connect(server, user="bob")
        term.type("Enter")  # logged in again with the password kept in memory
        wait_until(lambda: p.Msg("alice", "kept while down") in bob.recv_all(0.2))
        term.type("C-c")
        assert term.exit_code() == 0
    finally:
        server.close()


@needs_tmux
def test_control_characters_from_the_network_are_shown_escaped(terminal) -> None:
    with FakeServer() as fake:
        term = terminal(chat_argv(fake.port, None, "alice", "--plain"))
        log_in(term)
        screen = term.wait_for("<bob> \\x1b[2J\\x1b]0;owned\\x07 hi")
        assert "connected" in screen  # the screen was not cleared
        term.type("C-c")
        assert term.exit_code() == 0


# --------------------------------------------------------------------------- plain line mode


def run_piped(port: int, ca: Path | None, stdin: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        chat_argv(port, ca, "alice", "--password-stdin", *extra),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=python_env(),
    )


def test_piped_input_gets_plain_mode_and_every_reply(make_server, lab_certs) -> None:
    server = make_server()
    result = run_piped(
        server.address[1], lab_certs.ca_cert, f"{PASSWORDS['alice']}\nhi\n/who\n/tell nobody x\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\x1b" not in result.stdout  # no terminal drawing: plain lines
    assert lines[:2] == [
        "-- connected: labchat/1 welcome to labchat on TLS 1.2-1.3 over TLSv1.3",
        "-- logged in as alice",
    ]
    # The echo of "hi", the /who answer and the failed /tell, in order, before the goodbye.
    assert lines[-4:-2] == ["<alice> hi", "-- in the room: alice"]
    assert lines[-2].startswith("!! no-such-user: ") and "nobody" in lines[-2]
    assert lines[-1] == "-- bye"
    assert result.stderr == ""


def test_control_characters_are_escaped_in_plain_mode_too() -> None:
    with FakeServer() as fake:
        result = run_piped(fake.port, None, "pw\n", "--plain")
    assert result.returncode == 0, result.stderr
    assert "<bob> \\x1b[2J\\x1b]0;owned\\x07 hi" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


class FakeServer:
    """A plaintext labchat/1 server that lets alice in and relays a line full of escapes, as
    an old or hostile server could (a labchat server refuses them: issue 11)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed before anyone came
            return
        with conn, conn.makefile("rwb") as f:
            f.write(b"HELLO labchat/1 fake\r\n")
            f.flush()
            while line := f.readline():
                verb = line.split(b" ", 1)[0].strip()
                if verb == b"LOGIN":
                    f.write(b"OK alice\r\n")
                elif verb == b"WHO":
                    f.write(b"USERS alice bob\r\nMSG bob \x1b[2J\x1b]0;owned\x07 hi\r\n")
                elif verb == b"QUIT":
                    f.write(b"BYE see you\r\n")
                    f.flush()
                    return
                f.flush()

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()
        self.thread.join(TIMEOUT)
