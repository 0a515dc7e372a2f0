"""Tests for labchat.client: the blocking Client API and how events are shown (the terminal
chat itself: tests/test_chatui.py, tests/test_chat_terminal.py)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import PASSWORDS, TIMEOUT

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.client import (
    ChatError,
    Client,
    ConnectionClosed,
    LoginError,
    format_event,
)

pytestmark = pytest.mark.usefixtures("no_thread_leak")


def test_Client_recv_timeout_returns_None(make_server, connect) -> None:
    client = connect(make_server(), user="alice")
    start = time.monotonic()
    assert client.recv(timeout=0.2) is None
    assert 0.15 <= time.monotonic() - start < 2
    assert client.recv(timeout=0) is None
    assert client.recv_all(timeout=0.05) == []


def test_Client_ConnectionClosed_after_server_close(make_server, connect) -> None:
    server = make_server()
    client = connect(server, user="alice")
    server.close()
    assert client.recv(TIMEOUT) == p.Bye("server shutting down")
    with pytest.raises(ConnectionClosed):
        client.recv(TIMEOUT)


def test_Client_answers_server_PING(make_server, connect) -> None:
    server = make_server(idle_timeout=0.3, ping_timeout=0.3)
    client = connect(server, user="alice")
    # Several idle PINGs come and go during this read; each is answered and not returned.
    deadline = time.monotonic() + 1.2
    while (left := deadline - time.monotonic()) > 0:
        assert client.recv(left) is None
    assert client.who() == ["alice"]  # still connected, well past ping_timeout


def test_Client_login_errors(make_server, connect) -> None:
    client = connect(make_server())
    with pytest.raises(LoginError) as info:
        client.login("alice", "not-the-password")
    assert (info.value.code, info.value.text) == ("auth", "invalid user name or password")
    assert isinstance(info.value, ChatError)
    assert client.user is None
    client.login("alice", PASSWORDS["alice"])
    assert client.user == "alice"


def test_Client_keeps_events_that_arrive_during_a_request(make_server, connect) -> None:
    server = make_server(plain=True)
    alice = connect(server, user="alice")
    bob = connect(server, user="bob")
    bob.say("one")
    bob.say("two")
    assert bob.recv(TIMEOUT) == p.Msg("bob", "one")
    assert bob.recv(TIMEOUT) == p.Msg("bob", "two")
    # alice's who() reads past JOIN and both MSGs to find USERS; recv() still gets them.
    assert alice.who() == ["alice", "bob"]
    assert alice.recv(0) == p.Join("bob")
    assert alice.recv(0) == p.Msg("bob", "one")
    assert alice.recv(0) == p.Msg("bob", "two")
    assert alice.recv(0) is None


def test_Client_refuses_to_send_what_the_protocol_cannot(make_server, connect) -> None:
    client = connect(make_server(plain=True), user="alice")
    with pytest.raises(p.LocalProtocolError):
        client.say("two\nlines")
    with pytest.raises(p.LocalProtocolError):
        client.say("x" * p.MAX_LINE_BYTES)
    with pytest.raises(p.LocalProtocolError):
        client.send(p.Ping("x" * p.MAX_LINE_BYTES))  # the client's limit, not the server's
    assert client.who() == ["alice"]


def test_Client_handles_HELLO_alternatives() -> None:
    # A server that answers ERR instead of HELLO (e.g. busy), or not labchat/1 at all.
    for greeting, error in [
        (b"ERR busy server full\n", ChatError),
        (b"SSH-2.0-OpenSSH_9.6\n", p.RemoteProtocolError),
    ]:
        with socket.create_server(("127.0.0.1", 0)) as listener:

            def serve(listener=listener, greeting=greeting) -> None:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(greeting)
                    conn.recv(100)  # until the client closes

            thread = threading.Thread(target=serve)
            thread.start()
            try:
                with pytest.raises(error):
                    Client(*listener.getsockname(), tls=False, timeout=TIMEOUT)
            finally:
                thread.join(TIMEOUT)


def test_Client_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        Client("127.0.0.1", port, tls=False, timeout=TIMEOUT)


# --------------------------------------------------------------------------- moderation


@pytest.fixture
def teacher_users(users) -> object:
    """The test users plus `teacher`, an operator."""
    UserStore(users).add("teacher", "teacher-password", operator=True)
    return users


def test_Client_moderation_api(make_server, connect, teacher_users) -> None:
    server = make_server()
    teacher = connect(server)
    teacher.login("teacher", "teacher-password")
    alice, bob = connect(server, user="alice"), connect(server, user="bob")
    assert teacher.who() == ["alice", "bob", "@teacher"]
    # Not for students.
    for request in (lambda: bob.kick("alice"), lambda: bob.mute("alice"), bob.throttled):
        with pytest.raises(ChatError) as info:
            request()
        assert info.value.code == "forbidden"
    teacher.mute("alice", 60)
    alice.recv_all(0.2)  # bob's JOIN
    alice.say("can anyone hear me?")
    assert alice.recv(TIMEOUT) == p.Err("muted", "you are muted for another 60 s")
    teacher.mute("alice", 0)
    teacher.kick("bob", "off topic")
    got: list[p.ServerMessage] = []
    with pytest.raises(ConnectionClosed):
        while (event := bob.recv(TIMEOUT)) is not None:
            got.append(event)
    assert [e for e in got if isinstance(e, p.Err)] == [
        p.Err("kicked", "kicked by teacher: off topic")
    ]
    assert p.Leave("bob") in alice.recv_all(0.5)
    with pytest.raises(ChatError) as info:
        teacher.kick("bob")
    assert info.value.code == "no-such-user"
    # Failed logins from this address for carol show up, and UNLOCK ends them.
    guesser = connect(server)
    for _ in range(5):
        with pytest.raises(LoginError):
            guesser.login("carol", "wrong-password")
    assert teacher.throttled() == [("carol", "127.0.0.1", 30)]
    teacher.unlock("carol")
    assert teacher.throttled() == []
    guesser.login("carol", PASSWORDS["carol"])


def test_format_event_escapes_what_came_from_the_network() -> None:
    assert format_event(p.Msg("alice", "\x1b[2J\x1b]0;pwned\x07")) == (
        "<alice> \\x1b[2J\\x1b]0;pwned\\x07"
    )
    assert format_event(p.Msg("m\x1b", "a\rb")) == "<m\\x1b> a\\rb"
    assert format_event(p.Priv("bob", "\u202eevil")) == "*bob* \\u202eevil"
    assert format_event(p.Users(("alice", "\x9bbob"))) == "-- in the room: alice \\x9bbob"
    assert format_event(p.Err("auth", "\x07")) == "!! auth: \\x07"
    for event in (p.Join("\x1bx"), p.Leave("\x1bx"), p.Bye("\x1b"), p.Ok("\x1b")):
        assert "\x1b" not in format_event(event) and "\\x1b" in format_event(event)


def test_format_event() -> None:
    assert format_event(p.Msg("alice", "hi")) == "<alice> hi"
    assert format_event(p.Priv("bob", "psst")) == "*bob* psst"
    assert format_event(p.Join("carol")) == "-- carol joined"
    assert format_event(p.Leave("carol")) == "-- carol left"
    assert format_event(p.Users(("alice", "bob"))) == "-- in the room: alice bob"
    assert format_event(p.Err("no-such-user", "x")) == "!! no-such-user: x"
    assert format_event(p.Bye("bye")) == "-- server says bye: bye"
    assert format_event(p.Ok("x")) == "-- ok x"
    assert format_event(p.Ok()).startswith("-- ")  # e.g. the answer to /tell
