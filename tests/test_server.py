"""End-to-end tests for labchat.server with real sockets on 127.0.0.1:0.

Every test ends with the server closed and its threads gone (`no_thread_leak`).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest
from conftest import PASSWORDS, TIMEOUT, wait_for_threads
from helpers import wait_until

from labchat import protocol as p
from labchat.auth import Authenticator, LoginThrottle, UserStore
from labchat.certs import CA
from labchat.client import ChatError, Client, ConnectionClosed, LoginError
from labchat.server import Limits, Server

pytestmark = pytest.mark.usefixtures("no_thread_leak")

AUTH_FAILED = p.Err("auth", "invalid user name or password")
PASSWORD_ALICE = PASSWORDS["alice"]

MODES = {
    "tls1.2": {"tls_version": "1.2"},
    "tls1.3": {"tls_version": "1.3"},
    "plain": {"plain": True},
}


# --------------------------------------------------------------------------- helpers


def recv(client: Client, timeout: float = TIMEOUT) -> p.ServerMessage:
    """The next event, failing the test if none comes within *timeout*."""
    event = client.recv(timeout)
    assert event is not None, f"nothing from the server within {timeout} s"
    return event


def recv_kind(client: Client, kind: type, timeout: float = TIMEOUT) -> p.ServerMessage:
    """Skip events until one of *kind* arrives (bounded)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = client.recv(left)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def sync(client: Client) -> list[p.ServerMessage]:
    """Round-trip a PING; return every event the server queued for *client* before the PONG."""
    client.ping()
    events = []
    while (event := client.recv(0)) is not None:
        events.append(event)
    return events


def read_until_eof(sock: socket.socket, timeout: float = TIMEOUT) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def read_line(sock: socket.socket, buffer: bytearray, timeout: float = TIMEOUT) -> bytes:
    """One line from a plaintext socket (for clients that must not auto-answer PING)."""
    sock.settimeout(timeout)
    while b"\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionClosed("closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def chat_still_works(connect, server: Server, user: str = "carol") -> None:
    """A fresh client logs in and sees its own message echoed."""
    client = connect(server, user=user)
    client.say("still here")
    assert recv_kind(client, p.Msg) == p.Msg(user, "still here")
    client.quit()


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("mode", list(MODES))
def test_Server_end_to_end_chat(make_server, connect, mode: str) -> None:
    server = make_server(**MODES[mode])
    alice = connect(server)
    assert alice.hello.version == p.PROTOCOL
    assert server.describe() in alice.hello.text
    expected_version = {"tls1.2": "TLSv1.2", "tls1.3": "TLSv1.3", "plain": None}[mode]
    assert alice.tls_version == expected_version

    # LOGIN -> OK <user>, on the wire.
    alice.send(p.Login("alice", PASSWORDS["alice"]))
    assert recv(alice) == p.Ok("alice")
    bob = connect(server, user="bob")
    assert recv(alice) == p.Join("bob")

    # SAY is relayed to everyone, the sender included.
    alice.say("hello, room")
    assert recv(alice) == p.Msg("alice", "hello, room")
    assert recv(bob) == p.Msg("alice", "hello, room")

    # TELL -> PRIV for the target, OK for the sender, nothing for anybody else.
    alice.tell("bob", "psst")
    assert recv(bob) == p.Priv("alice", "psst")
    with pytest.raises(ChatError) as info:
        alice.tell("nobody", "hello?")
    assert info.value.code == "no-such-user"

    # WHO is sorted.
    carol = connect(server, user="carol")
    assert recv(alice) == p.Join("carol")
    assert recv(bob) == p.Join("carol")
    assert carol.who() == ["alice", "bob", "carol"]

    # PING/PONG with and without a token.
    bob.send(p.Ping("tok-1"))
    assert recv(bob) == p.Pong("tok-1")
    bob.send(p.Ping())
    assert recv(bob) == p.Pong("")
    assert 0 < alice.ping() < TIMEOUT

    # QUIT -> BYE, then the server closes; the others see LEAVE.
    carol.send(p.Quit())
    assert recv(carol) == p.Bye("see you")
    with pytest.raises(ConnectionClosed):
        carol.recv(TIMEOUT)
    assert recv(alice) == p.Leave("carol")
    assert recv(bob) == p.Leave("carol")
    assert bob.quit() == "see you"
    assert recv(alice) == p.Leave("bob")
    assert alice.who() == ["alice"]
    assert sync(alice) == []  # nothing unexpected was queued
    alice.quit()
    wait_until(lambda: server.client_count == 0)


def test_Server_join_and_leave_go_to_others_only(make_server, connect) -> None:
    server = make_server(plain=True)
    alice = connect(server, user="alice")
    bob = connect(server, user="bob")
    assert recv(alice) == p.Join("bob")
    assert sync(bob) == []  # bob is not told about himself
    bob.close()  # no QUIT: a dropped connection also leaves
    assert recv(alice) == p.Leave("bob")


def test_Server_total_order_20_clients_50_messages_tls13(make_server, connect, tmp_path) -> None:
    n_clients, n_messages = 20, 50
    names = [f"user{i:02d}" for i in range(n_clients)]
    # Cheap scrypt parameters: this test is about the room's order, not about hashing.
    store = UserStore(tmp_path / "many.json", n=2**10, p=1)
    for name in names:
        store.add(name, f"{name}-password")
    # Flood control would pace 50 back-to-back lines at 5/s; lift it for this test.
    server = make_server(tls_version="1.3", users=store, flood_burst=100, flood_rate=1e6)

    ready = threading.Barrier(n_clients, timeout=3 * TIMEOUT)
    seen: dict[str, list[tuple[str, str]]] = {}
    errors: list[BaseException] = []
    total = n_clients * n_messages

    def run(name: str) -> None:
        try:
            # This client object is created, used and read in this thread only.
            client = connect(server, user=name, password=f"{name}-password")
            got: list[tuple[str, str]] = []

            def take(event: p.ServerMessage | None) -> None:
                if isinstance(event, p.Msg):
                    got.append((event.user, event.text))

            ready.wait()  # everyone is in the room before the first SAY
            for j in range(n_messages):
                client.say(f"{name} says {j}")
                while (event := client.recv(0)) is not None:  # keep reading while sending
                    take(event)
            deadline = time.monotonic() + 30
            while len(got) < total and time.monotonic() < deadline:
                take(client.recv(1.0))
            seen[name] = got
            client.quit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            ready.abort()

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(seen) == names

    reference = seen[names[0]]
    assert len(reference) == total
    assert len(set(reference)) == total  # nothing duplicated...
    assert set(reference) == {(n, f"{n} says {j}") for n in names for j in range(n_messages)}
    for name in names:  # ...nothing lost, and the same order for everybody
        assert seen[name] == reference, f"{name} saw a different order"
    for name in names:  # each sender's own lines stay in the order it sent them
        mine = [text for user, text in reference if user == name]
        assert mine == [f"{name} says {j}" for j in range(n_messages)]
    assert server.room.accepted == total


def test_Server_flood_control_delays_but_keeps_every_line(make_server, connect) -> None:
    server = make_server(plain=True, flood_burst=2, flood_rate=50)
    alice = connect(server, user="alice")
    alice.send_raw(b"".join(p.encode(p.Say(f"line {i}")) for i in range(8)))
    got = [recv_kind(alice, p.Msg).text for _ in range(8)]
    assert got == [f"line {i}" for i in range(8)]


# --------------------------------------------------------------------------- login


def test_Server_login_failures_look_identical(make_server, connect) -> None:
    server = make_server()
    client = connect(server)
    for line in [
        f"LOGIN alice wrong-{PASSWORDS['alice']}",  # wrong password
        "LOGIN mallory any-password",  # unknown user
        "LOGIN bad/name any-password",  # not even a valid name
        f"LOGIN {'x' * 40} any-password",  # a name too long to exist
        "LOGIN alice short",  # a password too short to exist
    ]:
        client.send_raw(line.encode() + b"\n")
        assert recv(client) == AUTH_FAILED, line
    # Still not logged in, and still allowed to try.
    client.send(p.Say("hi"))
    assert recv(client).code == "not-logged-in"
    client.login("alice", PASSWORDS["alice"])
    assert client.user == "alice"


def test_Server_login_error_text_reveals_nothing() -> None:
    # The ERR text names neither the user nor which part was wrong.
    assert "alice" not in AUTH_FAILED.text and "unknown" not in AUTH_FAILED.text


def test_Server_second_login_refused(make_server, connect) -> None:
    server = make_server()
    alice = connect(server, user="alice")
    alice.send(p.Login("bob", PASSWORDS["bob"]))
    assert recv(alice) == p.Err("syntax", "already logged in as alice")
    assert alice.who() == ["alice"]


def test_Server_same_user_again_takes_the_session_over(make_server, connect) -> None:
    server = make_server()
    bob = connect(server, user="bob")
    first = connect(server, user="alice")
    assert recv(bob) == p.Join("alice")
    second = connect(server)
    second.login("alice", PASSWORD_ALICE)  # issue 11: a ghost must not keep the name
    # The old connection is told why, and closed.
    assert recv_kind(first, p.Err).code == "replaced"
    with pytest.raises(ConnectionClosed):
        first.recv_all(2.0)
    # The room saw no LEAVE and no JOIN: alice never left.
    assert sync(bob) == []
    assert second.who() == ["alice", "bob"]
    bob.say("still one alice")
    assert recv_kind(second, p.Msg) == p.Msg("bob", "still one alice")


def test_Server_commands_before_login(make_server, connect) -> None:
    server = make_server(plain=True)
    client = connect(server)
    for command in (p.Say("hi"), p.Tell("bob", "hi"), p.Who()):
        client.send(command)
        assert recv(client) == p.Err("not-logged-in", "LOGIN <user> <password> first")
    client.send(p.Ping("x"))  # allowed before login
    assert recv(client) == p.Pong("x")
    assert client.quit() == "see you"  # so is QUIT


def test_Server_login_throttle(make_server, connect, users: Path) -> None:
    now = [1000.0]
    throttle = LoginThrottle(max_failures=5, cooldown=30.0, clock=lambda: now[0])
    server = make_server(users=Authenticator(UserStore(users), throttle=throttle))
    client = connect(server)
    for _ in range(5):
        client.send(p.Login("alice", "wrong-password"))
        assert recv(client) == AUTH_FAILED
    # In the cool-down even the right password is refused, without being checked.
    client.send(p.Login("alice", PASSWORDS["alice"]))
    reply = recv(client)
    assert reply == p.Err("throttled", "too many failed logins; retry in 30 s")
    with pytest.raises(LoginError) as info:
        client.login("alice", PASSWORDS["alice"])
    assert info.value.code == "throttled"
    # Another account is not affected.
    connect(server, user="bob")
    # After the cool-down the right password works again.
    now[0] += 31
    client.login("alice", PASSWORDS["alice"])
    assert client.user == "alice"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("mode", ["tls1.3", "plain"])
def test_Server_bad_input_gets_ERR_and_connection_continues(make_server, connect, mode) -> None:
    server = make_server(**MODES[mode])
    alice = connect(server, user="alice")
    cases = [
        (b"SAY " + b"x" * 2000 + b"\n", "too-long"),
        (b"SAY caf\xe9\n", "encoding"),
        (b"FROB x\n", "unknown-command"),
        (b"\n", "syntax"),
        (b"\r\n", "syntax"),
        (b"SAY a\rb\n", "encoding"),  # a bare CR once killed the session
        (b"PING a\rb\n", "encoding"),
        (b"SAY \x1b[2J\n", "encoding"),  # control characters: issue 11
        (b"WHO now\n", "syntax"),
    ]
    for data, code in cases:
        alice.send_raw(data)
        reply = recv(alice)
        assert isinstance(reply, p.Err) and reply.code == code, (data[:20], reply)
    # A line of exactly the limit is fine; one byte more is not.
    text = "y" * (p.MAX_LINE_BYTES - len(b"SAY \n"))
    alice.send_raw(f"SAY {text}\n".encode())
    assert recv(alice) == p.Msg("alice", text)
    alice.send_raw(f"SAY {text}y\n".encode())
    assert recv(alice) == p.Err("too-long", f"lines are limited to {p.MAX_LINE_BYTES} bytes")
    # A long line sent in pieces, then a normal one.
    for _ in range(5):
        alice.send_raw(b"z" * 1000)
    alice.send_raw(b"\nSAY after\n")
    assert recv(alice).code == "too-long"
    assert recv(alice) == p.Msg("alice", "after")
    assert sync(alice) == []


def test_Server_plaintext_client_on_TLS_port(make_server, connect) -> None:
    server = make_server()
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        raw.sendall(b"LOGIN alice secret\r\n")
        reply = read_until_eof(raw)
    assert reply == (b"ERR syntax this port speaks TLS; use labchat chat or openssl s_client\n")
    chat_still_works(connect, server)


def test_Server_TLS_client_on_plaintext_port(make_server, connect, lab_certs) -> None:
    server = make_server(plain=True)
    with pytest.raises(ssl.SSLError):
        Client(*server.address, tls=True, cafile=lab_certs.ca_cert, timeout=TIMEOUT)
    chat_still_works(connect, server)
    wait_until(lambda: server.client_count == 0)


@pytest.mark.parametrize("mode", ["tls1.3", "plain"])
def test_Server_disconnect_mid_line(make_server, connect, mode) -> None:
    server = make_server(**MODES[mode])
    alice = connect(server, user="alice")
    bob = connect(server, user="bob")
    assert recv(alice) == p.Join("bob")
    bob.send_raw(b"SAY this line never ends")
    bob.close()
    assert recv(alice) == p.Leave("bob")  # and no MSG with half a line
    assert sync(alice) == []
    chat_still_works(connect, server)


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"",  # connect and close
        b"\x16",  # the first byte of a handshake only
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20,  # half a ClientHello
    ],
    ids=["nothing", "one-byte", "half-hello"],
)
def test_Server_disconnect_mid_handshake(make_server, connect, first_bytes: bytes) -> None:
    server = make_server()
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        raw.sendall(first_bytes)
    chat_still_works(connect, server)
    wait_until(lambda: server.client_count == 0)


def test_Server_silent_client_does_not_block_others(make_server, connect) -> None:
    server = make_server(handshake_timeout=30)
    with socket.create_connection(server.address, timeout=TIMEOUT):
        # Never sends a ClientHello: its handshake waits in its own thread, not in accept.
        chat_still_works(connect, server)
    wait_until(lambda: server.client_count == 0)


def test_Server_handshake_timeout(make_server) -> None:
    server = make_server(handshake_timeout=0.2)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        raw.sendall(b"\x16")
        assert read_until_eof(raw) == b""  # dropped without a word, once the time is up


# --------------------------------------------------------------------------- timeouts


def test_Server_idle_client_gets_PING_then_timeout(make_server) -> None:
    server = make_server(plain=True, idle_timeout=0.2, ping_timeout=0.2)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        buf = bytearray()
        assert read_line(raw, buf).startswith(b"HELLO ")
        ping = p.parse_server_line(read_line(raw, buf).decode())
        assert isinstance(ping, p.Ping) and ping.token
        assert read_line(raw, buf) == b"ERR timeout no answer to PING"
        assert read_until_eof(raw) == b""


def test_Server_answering_PING_keeps_connection(make_server) -> None:
    server = make_server(plain=True, idle_timeout=0.15, ping_timeout=0.3)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        buf = bytearray()
        read_line(raw, buf)  # HELLO
        for _ in range(3):
            ping = p.parse_server_line(read_line(raw, buf).decode())
            assert isinstance(ping, p.Ping)
            raw.sendall(p.encode(p.Pong(ping.token)))
        raw.sendall(b"QUIT\n")
        assert read_line(raw, buf) == b"BYE see you"


def test_Server_login_timeout(make_server) -> None:
    server = make_server(plain=True, login_timeout=0.2)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        buf = bytearray()
        read_line(raw, buf)  # HELLO
        assert read_line(raw, buf) == b"ERR timeout no LOGIN in time"
        assert read_until_eof(raw) == b""


def test_Server_line_timeout(make_server) -> None:
    server = make_server(plain=True, line_timeout=0.2)
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        buf = bytearray()
        read_line(raw, buf)  # HELLO
        raw.sendall(b"WH")  # ...and never the rest
        assert read_line(raw, buf) == b"ERR timeout line not finished in time"
        assert read_until_eof(raw) == b""


def test_Server_max_clients_says_busy(make_server, connect) -> None:
    server = make_server(max_clients=1)
    first = connect(server, user="alice")
    with pytest.raises(ChatError) as info:
        connect(server)
    assert info.value.code == "busy"
    first.quit()
    wait_until(lambda: server.client_count == 0)
    chat_still_works(connect, server)


def test_Server_rejects_unknown_limit(lab_certs, users) -> None:
    with pytest.raises(TypeError, match="unknown server limit"):
        Server(port=0, certs_dir=lab_certs.directory, users=users, idle_timeuot=3)
    assert "idle_timeout" in Limits.names()


# --------------------------------------------------------------------------- TLS


def test_Server_wrong_CA_is_refused(make_server, tmp_path) -> None:
    server = make_server()
    other_ca = tmp_path / "other-ca.pem"
    CA().cert_pem.write_to_path(other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(*server.address, cafile=other_ca, timeout=TIMEOUT)


def test_Server_wrong_hostname_is_refused(make_server, connect) -> None:
    server = make_server()
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(server, server_hostname="chat.example.org")
    # The names in the certificate do work.
    for name in ("localhost", "127.0.0.1"):
        connect(server, server_hostname=name).quit()


def test_Server_refuses_TLS_1_1(make_server, lab_certs) -> None:
    server = make_server()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(lab_certs.ca_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client really offer TLS 1.1
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        with pytest.raises(ssl.SSLError) as info:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.recv(100)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(info.value)  # the server said no
    wait_until(lambda: server.client_count == 0)


def test_Server_pinned_version_refuses_the_other(make_server, connect) -> None:
    server = make_server(tls_version="1.3")
    with pytest.raises(ssl.SSLError):
        connect(server, tls_version="1.2")
    assert connect(server, tls_version="1.3").tls_version == "TLSv1.3"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_Server_openssl_s_client_can_chat(make_server, lab_certs) -> None:
    server = make_server()
    host, port = server.address
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"{host}:{port}",
            "-CAfile",
            str(lab_certs.ca_cert),
            "-verify_return_error",
            "-quiet",
        ],
        input=f"LOGIN alice {PASSWORDS['alice']}\nSAY hi\nQUIT\n",
        capture_output=True,
        text=True,
        timeout=15,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("HELLO labchat/1 "), result
    assert lines[1:] == ["OK alice", "MSG alice hi", "BYE see you"], result
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- lifecycle


def test_Server_close_says_BYE_and_joins_threads(make_server, connect) -> None:
    baseline = set(threading.enumerate())
    server = make_server()
    alice = connect(server, user="alice")
    stranger = connect(server)  # connected, not logged in
    bob = connect(server, user="bob")
    assert recv(alice) == p.Join("bob")
    server.close()
    for client in (alice, stranger, bob):
        assert recv_kind(client, p.Bye) == p.Bye("server shutting down")
        with pytest.raises(ConnectionClosed):
            client.recv(TIMEOUT)
    assert wait_for_threads(baseline) == []
    assert server.client_count == 0
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=TIMEOUT).close()
    server.close()  # a second close is harmless


def test_Server_as_context_manager(lab_certs, users) -> None:
    with Server(port=0, certs_dir=lab_certs.directory, users=users) as server:
        host, port = server.address
        assert host == "127.0.0.1" and port != 0
        with Client(host, port, cafile=lab_certs.ca_cert, timeout=TIMEOUT) as client:
            client.login("alice", PASSWORDS["alice"])
            assert client.who() == ["alice"]
    assert server.client_count == 0


def test_Server_missing_certificates(tmp_path, users) -> None:
    with pytest.raises(FileNotFoundError, match="labchat certs"):
        Server(port=0, certs_dir=tmp_path / "nowhere", users=users)


@pytest.mark.parametrize(
    ("peer", "source"),
    [
        (("127.0.0.7", 5000), "127.0.0.7"),
        (("::ffff:10.0.0.5", 5000, 0, 0), "10.0.0.5"),
        (("2001:db8:1:2:3:4:5:6", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2::ffff", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
    ],
)
def test_source_of_counts_ipv6_per_64(peer: tuple, source: str) -> None:
    from labchat.server import source_of

    assert source_of(peer) == source
