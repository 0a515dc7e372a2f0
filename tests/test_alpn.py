"""ALPN (RFC 7301): labchat/1 is offered and selected; clients without it are still served.

Real sockets on 127.0.0.1: `labchat.Client` against `labchat.Server` on TLS 1.2 and 1.3, a raw
`ssl` client that offers no ALPN, one that offers only ``h2``, and ``openssl s_client -alpn h2``.
What the captures say about ALPN is checked with the captures (tests/test_scenarios.py and
tests/test_tls_scenarios.py).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable

import pytest
from conftest import PASSWORDS, TIMEOUT

from labchat import protocol as p
from labchat.certs import LabCertPaths
from labchat.client import Client
from labchat.server import Server
from labchat.tls import ALPN_PROTOCOL, client_context

OPENSSL = shutil.which("openssl")


def test_client_hello_offers_exactly_labchat_1(lab_certs: LabCertPaths) -> None:
    assert ALPN_PROTOCOL == "labchat/1"
    outgoing = ssl.MemoryBIO()
    ctx = client_context(cafile=lab_certs.ca_cert)
    hello = ctx.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        hello.do_handshake()
    # RFC 7301 section 3.1: extension 16, its length (12), the list's length (10), then each
    # id as one length byte and its bytes.
    assert b"\x00\x10\x00\x0c\x00\x0a\x09labchat/1" in outgoing.read()


def _next_msg(client: Client) -> p.Msg:
    while True:
        event = client.recv(TIMEOUT)
        assert event is not None, "no MSG within the timeout"
        if isinstance(event, p.Msg):
            return event


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_labchat_client_and_server_negotiate_labchat_1(
    make_server: Callable[..., Server], connect: Callable[..., Client], version: str
) -> None:
    server = make_server(tls_version=version)
    client = connect(server, "alice")
    assert client.tls_version == f"TLSv{version}"
    assert client.alpn_protocol == ALPN_PROTOCOL
    client.say("over ALPN")
    assert _next_msg(client) == p.Msg("alice", "over ALPN")


def test_plaintext_client_has_no_alpn(
    make_server: Callable[..., Server], connect: Callable[..., Client]
) -> None:
    client = connect(make_server(plain=True), "alice")
    assert client.tls_version is None and client.alpn_protocol is None


def _raw_tls(server: Server, lab_certs: LabCertPaths, alpn: list[str] | None) -> ssl.SSLSocket:
    """A plain `ssl` client (not labchat's context): ALPN only if *alpn* is given."""
    ctx = ssl.create_default_context(cafile=lab_certs.ca_cert)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(server.address, timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _read_lines(sock: ssl.SSLSocket, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


@pytest.mark.parametrize(
    "alpn", [None, ["h2"], ["h2", "http/1.1"]], ids=["no-alpn", "h2", "h2+http1.1"]
)
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_server_serves_clients_without_labchat_alpn(
    make_server: Callable[..., Server],
    connect: Callable[..., Client],
    lab_certs: LabCertPaths,
    alpn: list[str] | None,
    version: str,
) -> None:
    server = make_server(tls_version=version)
    bob = connect(server, "bob")
    with _raw_tls(server, lab_certs, alpn) as sock:
        # The server selected nothing, and did not refuse (no no_application_protocol alert).
        assert sock.selected_alpn_protocol() is None
        assert sock.version() == f"TLSv{version}"
        assert _read_lines(sock, 1)[0].startswith("HELLO ")
        sock.sendall(f"LOGIN alice {PASSWORDS['alice']}\r\nSAY no ALPN here\r\n".encode())
        lines = _read_lines(sock, 2)
        assert lines[0].startswith("OK alice"), lines
        assert _next_msg(bob) == p.Msg("alice", "no ALPN here")


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed (CI installs it)")
@pytest.mark.parametrize("offer", ["h2", "labchat/1"])
def test_openssl_s_client_alpn(
    make_server: Callable[..., Server], lab_certs: LabCertPaths, offer: str
) -> None:
    server = make_server()
    host, port = server.address
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"{host}:{port}", "-servername", "localhost",
         "-CAfile", str(lab_certs.ca_cert), "-verify_return_error", "-alpn", offer,
         "-ign_eof"],
        input=f"LOGIN alice {PASSWORDS['alice']}\nQUIT\n",
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if offer == "h2":
        assert "No ALPN negotiated" in result.stdout
    else:
        assert "ALPN protocol: labchat/1" in result.stdout
    assert "OK alice" in result.stdout  # served either way: logged in, then QUIT
