"""Scripted chats for the capture lab: each one a short, repeatable conversation on loopback.

A scenario runs real labchat servers and clients (or, for the TCP lessons, plain sockets) on
``127.0.0.1:<port>`` inside whatever network the capture gave it, and returns what happened:
the transcript, the roles and, for TLS, where the key log is. `labchat.capture` runs it with a
sniffer listening and writes ``capture.pcapng``, ``keys.log`` and ``manifest.json``.

Every scenario makes its own throwaway certificates and users file in a temporary directory
(never the learner's ``certs/``), takes well under two seconds, and pauses ``pause`` seconds
between steps so a ladder diagram shows distinct phases.

==============  ==============================================================================
``tcp-chat``    plaintext login and a short chat between alice and bob
``tls12-chat``  the same chat over TLS 1.2 (key log written)
``tls13-chat``  the same chat over TLS 1.3 (key log written)
``bad-login``   a refused login over TLS 1.3
``refused``     a connection to a closed port: SYN answered by RST
``abort``       an abortive close (SO_LINGER 0): RST instead of FIN
``half-close``  ``shutdown(SHUT_WR)``: the client's FIN, then the server keeps sending
==============  ==============================================================================
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from . import tls_scenarios
from .runs import PASSWORDS, PAUSE, SCENARIO_HASH, TIMEOUT, Scenario, ScenarioRun

__all__ = [
    "PAUSE",
    "PASSWORDS",
    "SCENARIOS",
    "TIMEOUT",
    "Peer",
    "Scenario",
    "ScenarioRun",
    "by_name",
    "get",
    "listener",
    "names",
]

#: The chat both users have in every chat scenario.
CHAT = (
    ("alice", "hi bob, can you read this?"),
    ("bob", "every word, alice"),
)

_HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# Chats with the real server and client
# --------------------------------------------------------------------------------------------


def _setup(work: Path, tls: bool) -> tuple[Any, Any]:
    from labchat.auth import UserStore
    from labchat.certs import create_lab_certs

    certs = create_lab_certs(work / "certs") if tls else None
    users = UserStore(work / "users.json", **SCENARIO_HASH)
    for name, password in PASSWORDS.items():
        users.add(name, password)
    return certs, users


def _wait_for(client: Any, kind: type, timeout: float = TIMEOUT, **fields: str) -> Any:
    """Read events until one of type ``kind`` with the given fields arrives."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = client.recv(timeout=left)
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
            return event
    raise TimeoutError(f"no {kind.__name__} {fields} within {timeout} s")


def _chat(
    work: Path, *, port: int, host: str, pause: float, tls_version: str | None
) -> ScenarioRun:
    from labchat import protocol as p
    from labchat.client import Client
    from labchat.server import Server

    tls = tls_version is not None
    certs, users = _setup(work, tls)
    keylog = work / "keys.log" if tls else None
    server_kw: dict[str, Any] = {"users": users, "plain": not tls}
    client_kw: dict[str, Any] = {"tls": tls, "timeout": TIMEOUT}
    if tls:
        server_kw.update(certs_dir=certs.directory, tls_version=tls_version)
        client_kw.update(
            cafile=certs.ca_cert,
            server_hostname="localhost",
            tls_version=tls_version,
            keylog=keylog,
        )
    run = ScenarioRun(keylog=keylog)
    negotiated = None
    with Server(host, port, **server_kw) as server:
        run.server = {"host": host, "port": server.address[1], "role": "server"}
        with Client(host, port, **client_kw) as alice:
            negotiated = alice.tls_version
            time.sleep(pause)
            alice.login("alice", PASSWORDS["alice"])
            time.sleep(pause)
            with Client(host, port, **client_kw) as bob:
                time.sleep(pause)
                bob.login("bob", PASSWORDS["bob"])
                _wait_for(alice, p.Join, user="bob")
                time.sleep(pause)
                for speaker, line in CHAT:
                    me, other = (alice, bob) if speaker == "alice" else (bob, alice)
                    me.say(line)
                    _wait_for(other, p.Msg, user=speaker, text=line)
                    _wait_for(me, p.Msg, user=speaker, text=line)
                    run.transcript.append({"from": speaker, "line": line})
                    time.sleep(pause)
                bob.quit()
            _wait_for(alice, p.Leave, user="bob")
            time.sleep(pause)
            alice.quit()
        time.sleep(pause)
    run.clients = [
        {"role": "alice", "user": "alice"},
        {"role": "bob", "user": "bob"},
    ]
    if tls:
        run.tls = {"version": negotiated, "pinned": tls_version, "server_name": "localhost"}
        run.notes = (
            f"The same chat as tcp-chat inside {negotiated}: only record sizes show on the "
            "wire; keys.log (also embedded in the pcapng) decrypts it."
        )
    else:
        run.notes = (
            "Plaintext labchat/1: the LOGIN line with its password and every chat line "
            "are readable in the TCP payloads."
        )
    return run


def tcp_chat(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """alice and bob log in and exchange two lines over plaintext TCP."""
    return _chat(work, port=port, host=host, pause=pause, tls_version=None)


def tls12_chat(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """The tcp-chat conversation over TLS 1.2, key log written."""
    return _chat(work, port=port, host=host, pause=pause, tls_version="1.2")


def tls13_chat(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """The tcp-chat conversation over TLS 1.3, key log written."""
    return _chat(work, port=port, host=host, pause=pause, tls_version="1.3")


def bad_login(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """alice types the wrong password over TLS 1.3; the server says ERR auth; she quits."""
    from labchat.client import Client, LoginError
    from labchat.server import Server

    certs, users = _setup(work, tls=True)
    keylog = work / "keys.log"
    run = ScenarioRun(keylog=keylog)
    refusal = None
    with Server(host, port, users=users, certs_dir=certs.directory, tls_version="1.3") as server:
        run.server = {"host": host, "port": server.address[1], "role": "server"}
        with Client(
            host,
            port,
            cafile=certs.ca_cert,
            server_hostname="localhost",
            tls_version="1.3",
            keylog=keylog,
            timeout=TIMEOUT,
        ) as alice:
            negotiated = alice.tls_version
            time.sleep(pause)
            try:
                alice.login("alice", "not my password")
            except LoginError as exc:
                refusal = f"{exc.code}: {exc.text}"
            else:  # pragma: no cover - the server would be broken
                raise AssertionError("the server accepted a wrong password")
            time.sleep(pause)
            alice.quit()
        time.sleep(pause)
    run.clients = [{"role": "alice", "user": "alice", "login": "refused", "error": refusal}]
    run.tls = {"version": negotiated, "pinned": "1.3", "server_name": "localhost"}
    run.notes = "A refused login looks like any other exchange on the wire; decrypt to see ERR."
    return run


# --------------------------------------------------------------------------------------------
# TCP lessons with plain sockets
# --------------------------------------------------------------------------------------------


def refused(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """connect() to a port nobody listens on: the kernel answers the SYN with RST/ACK."""
    error = None
    with socket.socket() as s:
        s.settimeout(TIMEOUT)
        try:
            s.connect((host, port))
        except ConnectionRefusedError as exc:
            error = f"ConnectionRefusedError: {exc.strerror}"
        else:
            raise RuntimeError(f"something is listening on {host}:{port}")
    time.sleep(pause)
    return ScenarioRun(
        server={"host": host, "port": port, "role": "closed port"},
        clients=[{"role": "client", "error": error}],
        notes="One SYN, one RST/ACK: nothing listens, so the kernel refuses the connection.",
    )


class Peer(threading.Thread):
    """The other end of a scripted connection: accept one connection, run ``body`` on it, close.

    The thread owns ``listener`` and closes it when its one connection is done. ``error``
    holds what went wrong, if anything; `finish` re-raises it.

    Args:
        listener: a listening socket (see `listener`).
        body: what to do with the accepted connection (its timeout is set already).
        name: the thread's name.
    """

    def __init__(
        self,
        listener: socket.socket,
        body: Callable[[socket.socket], None],
        *,
        name: str = "scenario-peer",
    ):
        super().__init__(name=name, daemon=True)
        self.listener, self.body = listener, body
        self.error: BaseException | None = None

    @classmethod
    def serving(
        cls,
        host: str,
        port: int,
        body: Callable[[socket.socket], None],
        *,
        rcvbuf: int | None = None,
        name: str = "scenario-peer",
    ) -> Peer:
        """Listen on ``host:port`` (see `listener`) and start a peer running ``body`` there.

        Returns:
            The started peer; call `finish` once the client side is done.
        """
        peer = cls(listener(host, port, rcvbuf=rcvbuf), body, name=name)
        peer.start()
        return peer

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self.body(conn)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc
        finally:
            self.listener.close()

    def finish(self, timeout: float = TIMEOUT) -> None:
        """Wait for the peer to be done.

        Raises:
            TimeoutError: it is still running after ``timeout`` seconds.
            BaseException: whatever the peer's body raised.
        """
        self.join(timeout)
        if self.is_alive():
            raise TimeoutError(f"{self.name} did not finish")
        if self.error is not None:
            raise self.error


def listener(host: str, port: int, *, rcvbuf: int | None = None) -> socket.socket:
    """A listening TCP socket for one connection (accept times out after `TIMEOUT`).

    Args:
        host: address to bind.
        port: port to bind.
        rcvbuf: SO_RCVBUF to set before listen(), or None for the kernel's default.
    """
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        # Before listen(): accepted sockets inherit it, and the window they offer in
        # their SYN-ACK is then already as large as it will ever get.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((host, port))
    s.listen(1)
    s.settimeout(TIMEOUT)
    return s


def _recv_until_eof(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(4096):
        data += chunk
    return data


def abort(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """The client sends a line, then closes with SO_LINGER 0: a RST instead of a FIN."""
    line = b"hello, and goodbye without a FIN\n"
    seen: dict[str, str] = {}

    def server_side(conn: socket.socket) -> None:
        got = b""
        while not got.endswith(b"\n"):
            got += conn.recv(4096)
        seen["server got"] = got.decode().strip()
        try:
            conn.recv(4096)
            seen["server then"] = "EOF"
        except ConnectionResetError:
            seen["server then"] = "ConnectionResetError"

    peer = Peer.serving(host, port, server_side)
    with socket.create_connection((host, port), timeout=TIMEOUT) as c:
        time.sleep(pause)
        c.sendall(line)
        time.sleep(pause)
        # l_onoff=1, l_linger=0: close() discards the send buffer and sends RST (RFC 793
        # "ABORT" call; socket(7) SO_LINGER).
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.finish()
    time.sleep(pause)
    return ScenarioRun(
        transcript=[{"from": "client", "line": line.decode().strip()}],
        server={"host": host, "port": port, "role": "server", "saw": seen.get("server then")},
        clients=[{"role": "client", "close": "SO_LINGER 0 (abortive)"}],
        notes="The client's close() sends RST, not FIN; the server's recv() gets ECONNRESET.",
    )


def half_close(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """The client sends a request and shuts down writing; the server answers after its FIN."""
    request = b"please send three lines, I am done talking\n"
    replies = [f"line {i} of 3, after your FIN\n".encode() for i in (1, 2, 3)]

    def server_side(conn: socket.socket) -> None:
        _recv_until_eof(conn)  # returns at the client's FIN
        time.sleep(pause)
        for reply in replies:
            conn.sendall(reply)
            time.sleep(pause)

    peer = Peer.serving(host, port, server_side)
    with socket.create_connection((host, port), timeout=TIMEOUT) as c:
        time.sleep(pause)
        c.sendall(request)
        time.sleep(pause)
        c.shutdown(socket.SHUT_WR)  # FIN: "no more from me", but keep reading
        received = _recv_until_eof(c)
    peer.finish()
    time.sleep(pause)
    if received != b"".join(replies):
        raise RuntimeError(f"half-close: client received {received!r}")
    transcript = [{"from": "client", "line": request.decode().strip()}]
    transcript += [{"from": "server", "line": r.decode().strip()} for r in replies]
    return ScenarioRun(
        transcript=transcript,
        server={"host": host, "port": port, "role": "server"},
        clients=[{"role": "client", "close": "shutdown(SHUT_WR), then read to EOF"}],
        notes="The client's FIN comes first; the server's three lines follow it, then its FIN.",
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("tcp-chat", tcp_chat, "plaintext login and a short chat between two users"),
        Scenario("tls12-chat", tls12_chat, "the same chat over TLS 1.2", tls=True),
        Scenario("tls13-chat", tls13_chat, "the same chat over TLS 1.3", tls=True),
        Scenario("bad-login", bad_login, "a refused login over TLS 1.3", tls=True),
        Scenario("refused", refused, "connect to a closed port: SYN, then RST"),
        Scenario("abort", abort, "abortive close with SO_LINGER 0: RST instead of FIN"),
        Scenario("half-close", half_close, "shutdown(SHUT_WR); the other side keeps sending"),
        # TLS failures, mutual TLS, resumption, HelloRetryRequest, downgrade (issue 13).
        *tls_scenarios.SCENARIOS,
    )
}


def names() -> list[str]:
    """All scenario names, in teaching order."""
    return list(SCENARIOS)


_T = TypeVar("_T")


def by_name(table: Mapping[str, _T], name: str, kind: str = "scenario") -> _T:
    """``table[name]``, or a KeyError that says what is unknown and lists the known names.

    Args:
        table: name -> scenario (`SCENARIOS` here, `labchat.capture.network.SCENARIOS`).
        name: the name asked for.
        kind: what the table holds, for the message.

    Raises:
        KeyError: no such name.
    """
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(table)}") from None


def get(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises:
        KeyError: no such scenario (the message lists the known ones).
    """
    return by_name(SCENARIOS, name)
