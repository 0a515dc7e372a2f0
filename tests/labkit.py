"""A hostile-client lab for the test battery: certificates, accounts, servers, and clients
that connect from chosen 127.0.0.x addresses.

Shared by tests/test_hostile.py (issue 3) and tests/test_classroom.py (issue 11). On Linux the
whole 127.0.0.0/8 block is the loopback, so each attacker and the legitimate client after it
can have an address of its own (`source_address=`), as students on one LAN would.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from labchat import protocol as p
from labchat.auth import UserStore
from labchat.certs import create_lab_certs
from labchat.client import Client
from labchat.server import Server
from labchat.tls import client_context

__all__ = [
    "CHECKER_SOURCE",
    "FAST_HASH",
    "FAST_LIMITS",
    "PASSWORD",
    "USERS",
    "Lab",
    "Served",
    "assert_room_works",
    "client_hello_bytes",
    "lines",
    "raw_connect",
    "read_until_closed",
    "reset",
    "rss_bytes",
    "source",
    "tls_connect",
    "wait_for_leave",
]

#: Where `assert_room_works` connects from: an address no attacker in the tests uses.
CHECKER_SOURCE = "127.0.0.254"


def source(address: str | None) -> tuple[str, int] | None:
    """``"127.0.0.7"`` -> ``("127.0.0.7", 0)`` for `source_address=`; None stays None."""
    return None if address is None else (address, 0)


PASSWORD = "correct horse"
USERS = ("alice", "bob", "carol", "dave", "erin", "checker")
# Cheap scrypt parameters for test accounts: the tests are about the server, not the hash.
FAST_HASH = {"n": 2**10, "r": 8, "p": 1}
# Small limits so that every timeout fires within a second or two.
FAST_LIMITS = {
    "handshake_timeout": 0.5,
    "login_timeout": 2.0,
    "idle_timeout": 5.0,
    "ping_timeout": 1.0,
    "line_timeout": 0.5,
    "write_timeout": 2.0,
}


# --------------------------------------------------------------------------- helpers


class Served:
    """A `labchat serve` process: where it listens, and its log file."""

    def __init__(self, address: tuple[str, int], log: Path) -> None:
        self.address = address
        self.log = log


class Lab:
    """Certificates, a users file and a way to start servers, all in one temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.certs = create_lab_certs(root / "certs")
        self.ca = str(self.certs.ca_cert)
        self.store = UserStore(root / "users.json", **FAST_HASH)
        for name in USERS:
            self.store.add(name, PASSWORD)

    @contextlib.contextmanager
    def server(self, users: object = None, **limits: float) -> Iterator[Server]:
        settings = {**FAST_LIMITS, **limits}
        server = Server(
            port=0,
            certs_dir=self.certs.directory,
            users=users if users is not None else self.store,
            **settings,
        )
        with server:
            yield server

    @contextlib.contextmanager
    def serve(self, *args: str) -> Iterator[Served]:
        """`labchat serve` in a process of its own, with its defaults (pinned to one CPU,
        as a teacher would run it) and this lab's certificates and users, plus *args*."""
        log = self.root / f"serve-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "labchat", "serve", "--port", "0"]
        cmd += ["--certs", str(self.certs.directory), "--users", str(self.store.path), *args]
        with log.open("w") as err:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.match(r"listening on (\S+):(\d+) ", line)
        try:
            assert match, f"labchat serve did not start: {line!r} {log.read_text()!r}"
            yield Served((match.group(1), int(match.group(2))), log)
        finally:
            process.terminate()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()

    def client(
        self, server: Server | Served, *, src: str | None = None, **kwargs: object
    ) -> Client:
        """A connected `Client` (not logged in), from address *src* if given."""
        host, port = server.address
        kwargs.setdefault("timeout", 5.0)
        return Client(host, port, cafile=self.ca, source_address=source(src), **kwargs)

    def login(self, server: Server | Served, user: str, *, src: str | None = None) -> Client:
        """A `Client` logged in as *user*, from address *src* if given."""
        client = self.client(server, src=src)
        client.login(user, PASSWORD)
        return client


def wait_for_leave(watcher: Client, user: str, timeout: float) -> list[p.ServerMessage]:
    """Read *watcher*'s events until `LEAVE user` arrives; return everything read."""
    events: list[p.ServerMessage] = []
    wait_until(
        lambda: events.extend(watcher.recv_all(0.05)) or p.Leave(user) in events,
        timeout,
        f"LEAVE {user}",
    )
    return events


def assert_room_works(
    lab: Lab, server: Server | Served, within: float = 1.0, src: str = CHECKER_SOURCE
) -> float:
    """A legitimate client connects, logs in, chats and leaves within *within* seconds.

    It connects from *src*, an address of its own, as a classmate would. Returns the time
    it needed.
    """
    start = time.monotonic()
    with lab.login(server, "checker", src=src) as checker:
        checker.say("still here")
        event = checker.recv(timeout=within)
        while isinstance(event, p.Join | p.Leave):
            event = checker.recv(timeout=within)
        assert event == p.Msg("checker", "still here")
        checker.quit()
    elapsed = time.monotonic() - start
    assert elapsed < within, f"a legitimate client needed {elapsed:.2f} s"
    if isinstance(server, Server):
        wait_until(lambda: "checker" not in server.room.names(), 2.0, "checker to leave")
    return elapsed


def raw_connect(server: Server, src: str | None = None) -> socket.socket:
    """A plain TCP connection to *server*, from address *src* if given."""
    return socket.create_connection(server.address, timeout=5.0, source_address=source(src))


def tls_connect(lab: Lab, server: Server, src: str | None = None) -> ssl.SSLSocket:
    """A TLS socket with the handshake done (no labchat client on top)."""
    ctx = client_context(cafile=lab.ca)
    return ctx.wrap_socket(raw_connect(server, src), server_hostname="127.0.0.1")


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    start = time.monotonic()
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError):
            break
        if not data:
            break
        chunks.append(data)
        if time.monotonic() - start > timeout:
            raise AssertionError("the server did not close the connection")
    return b"".join(chunks), time.monotonic() - start


def lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: SO_LINGER on with a zero timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def client_hello_bytes() -> bytes:
    """The first flight of a real TLS client, produced in memory."""
    ctx = client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()
