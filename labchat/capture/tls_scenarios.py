"""TLS beyond one happy handshake: refusals, mutual TLS, resumption, HelloRetryRequest (issue 13).

Every scenario here runs the real labchat `Server` (one at a time, on the capture's port) and
a small TLS client written with Python's `ssl` directly, so that it can do what the chat
client hides: offer a saved session (`ssl.SSLContext.wrap_socket(session=...)`), trust the
wrong CA, ask for the wrong name or show a client certificate. Each connection says HELLO and
QUIT in labchat/1 (or LOGIN first, where the account matters) and records what Python saw:
the version, the cipher suite, ``session_reused``, the error. Where TLS says no, the client's
entry in the manifest also names the alert the lesson expects on the wire
(``expected_alert``), and `tests/test_tls_scenarios.py` checks it against the capture.

The clients write their key log, so the alerts that TLS 1.3 encrypts can be read too. Which
ones it encrypts depends on who says no, and when: a client refusing the server's
certificate has not started encrypting yet (OpenSSL's client switches its writing to the
handshake keys when it sends its Finished), a server refusing the client after its own
Finished has (``expected_alert["encrypted"]``).

========================  =====================================================================
``tls-unknown-ca``        the client trusts another CA: unknown_ca (48), over 1.2 and 1.3
``tls-expired``           an expired server certificate: certificate_expired (45)
``tls-wrong-name``        a localhost certificate, a client asking for chat.example.org:
                          bad_certificate (42)
``tls-no-client-cert``    a server requiring client certificates, a client without one:
                          certificate_required (116, encrypted) in 1.3, handshake_failure (40)
                          in 1.2
``tls-version-mismatch``  a 1.2-only client, a 1.3-only server: protocol_version (70)
``mtls-chat``             mutual TLS that works: the client certificate in clear in 1.2, hidden
                          in 1.3
``tls12-resume``          a full TLS 1.2 handshake, then one resumed with its session ticket
``tls13-resume``          a full TLS 1.3 handshake, then one resumed with a PSK (a ticket)
``tls13-hrr``             a server that takes only P-256, a client whose key share is X25519:
                          HelloRetryRequest, then a second ClientHello
``tls-downgrade``         a 1.2+1.3 client vs a 1.2-only server; a 1.2 client vs a 1.3 server
                          (the DOWNGRD sentinel); a man in the middle who hides 1.3 from the
                          server: illegal_parameter (47)
========================  =====================================================================
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runs import PASSWORDS, PAUSE, SCENARIO_HASH, TIMEOUT, Scenario, ScenarioRun

__all__ = [
    "SCENARIOS",
    "SERVER_NAME",
    "WRONG_NAME",
    "Attempt",
    "strip_supported_versions",
]

_HOST = "127.0.0.1"
#: The name every client asks for (the lab server certificate is for localhost, 127.0.0.1, ::1).
SERVER_NAME = "localhost"
#: A name the lab certificate does not carry.
WRONG_NAME = "chat.example.org"


@dataclass(frozen=True)
class Attempt:
    """One client connection of a scenario, and what the lesson expects of it.

    Attributes:
        role: the connection's role in the manifest (``"TLS 1.2 client"``, ``"resumed"``).
        tls_version: the client's pin (``"1.2"``/``"1.3"``), or None to offer both.
        server_name: the host name the client checks (and sends as SNI).
        cafile: the CA the client trusts (None: the lab CA of the scenario).
        client_cert: ``(certfile, keyfile)`` for mutual TLS.
        resume: offer the session of the scenario's previous successful connection.
        login: log in as alice before QUIT (the account matters, e.g. mutual TLS).
        via_proxy: connect through `strip_supported_versions` (a man in the middle).
        expected_alert: ``{"from": "client"|"server", "description": name, "code": n}``, the
            fatal alert this connection must end with (None: it must work).
    """

    role: str
    tls_version: str | None = None
    server_name: str = SERVER_NAME
    cafile: Path | None = None
    client_cert: tuple[Path, Path] | None = None
    resume: bool = False
    login: bool = False
    via_proxy: bool = False
    expected_alert: dict[str, Any] | None = None


def _alert(sender: str, description: str, code: int, *, encrypted: bool = False) -> dict[str, Any]:
    # RFC 8446 section 6 (TLS 1.3) and RFC 5246 section 7.2 (TLS 1.2): every alert that ends a
    # handshake is fatal (level 2). ``encrypted``: whether the sender had already switched
    # its own writing to a key when it sent the alert (see tls_no_client_cert and
    # tls_unknown_ca for who has, when).
    return {
        "from": sender,
        "level": "fatal",
        "description": description,
        "code": code,
        "encrypted": encrypted,
    }


# --------------------------------------------------------------------------------------------
# The client side: one connection, labchat/1 spoken over ssl directly
# --------------------------------------------------------------------------------------------


class _LineSocket:
    """labchat/1 server lines from a connected socket (one owner: the scenario thread)."""

    def __init__(self, sock: socket.socket) -> None:
        from labchat import protocol as p

        self.sock = sock
        self._reader = p.LineReader(p.MAX_SERVER_LINE_BYTES)
        self._lines: list[str] = []

    def expect(self, kind: type) -> Any:
        """The next server line, which must parse to ``kind`` (HELLO, OK, BYE)."""
        from labchat import protocol as p

        deadline = time.monotonic() + TIMEOUT
        while not self._lines:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"the server closed the connection before {kind.__name__}")
            self._lines += [f.text for f in self._reader.feed(data) if isinstance(f, p.Line)]
        event = p.parse_server_line(self._lines.pop(0))
        if not isinstance(event, kind):
            raise RuntimeError(f"expected {kind.__name__}, the server said {event!r}")
        return event

    def send(self, command: Any) -> None:
        from labchat import protocol as p

        self.sock.sendall(p.encode(command))

    def wait_for_close(self) -> None:
        """Read until the server's close_notify/FIN, so the teardown is the server's first."""
        with contextlib.suppress(OSError, ssl.SSLError):
            self.sock.settimeout(1.0)
            while self.sock.recv(65536):
                pass


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"SSLCertVerificationError: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"{type(exc).__name__}: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


def _context(attempt: Attempt, cafile: Path, keylog: Path) -> ssl.SSLContext:
    from labchat.tls import client_context

    certfile, keyfile = attempt.client_cert or (None, None)
    return client_context(
        cafile=attempt.cafile or cafile,
        tls_version=attempt.tls_version,
        keylog=keylog,
        certfile=certfile,
        keyfile=keyfile,
    )


def _connect(
    attempt: Attempt,
    address: tuple[str, int],
    *,
    ctx: ssl.SSLContext,
    session: ssl.SSLSession | None,
    pause: float,
) -> tuple[dict[str, Any], ssl.SSLSession | None]:
    """Run one attempt; return its manifest entry and its session (None if it failed)."""
    from labchat import protocol as p

    entry: dict[str, Any] = {
        "role": attempt.role,
        "offers": [attempt.tls_version] if attempt.tls_version else ["1.2", "1.3"],
        "server_name": attempt.server_name,
        "client_certificate": attempt.client_cert is not None,
        "offered_session": session is not None,
    }
    raw = socket.create_connection(address, timeout=TIMEOUT)
    sock: socket.socket = raw
    try:
        try:
            sock = ctx.wrap_socket(raw, server_hostname=attempt.server_name, session=session)
            entry.update(
                version=sock.version(),
                cipher=sock.cipher()[0] if sock.cipher() else None,
                session_reused=sock.session_reused,
            )
            chat = _LineSocket(sock)
            chat.expect(p.Hello)  # in TLS 1.3 this is also where the session tickets arrive
            time.sleep(pause)
            if attempt.login:
                chat.send(p.Login("alice", PASSWORDS["alice"]))
                chat.expect(p.Ok)
                time.sleep(pause)
            chat.send(p.Quit())
            chat.expect(p.Bye)
            chat.wait_for_close()
            saved = sock.session
        except (ssl.SSLError, ConnectionError) as exc:
            entry.update(result="refused", error=_error_text(exc))
            saved = None
        else:
            entry["result"] = "ok"
    finally:
        sock.close()  # raw, or the SSLSocket that took its file descriptor over
    if attempt.expected_alert is not None:
        entry["expected_alert"] = attempt.expected_alert
    time.sleep(pause)
    return entry, saved


# --------------------------------------------------------------------------------------------
# A man in the middle for the downgrade lesson
# --------------------------------------------------------------------------------------------

_HANDSHAKE, _CLIENT_HELLO, _SUPPORTED_VERSIONS = 22, 1, 43


def strip_supported_versions(record: bytes) -> bytes:
    """Remove the supported_versions extension from a ClientHello record (a downgrade attack).

    Without that extension (RFC 8446 section 4.2.1) a ClientHello offers only what its
    legacy_version field says, TLS 1.2: this is what an attacker in the middle does to push a
    TLS 1.3 client and server down to 1.2. The record and handshake lengths are fixed up; the
    rest is left as it was (the key share, for instance, which a TLS 1.2 server ignores).

    Args:
        record: one TLS record holding one whole ClientHello (as a client sends it).

    Returns:
        The record without the extension (unchanged if it had none).

    Raises:
        ValueError: ``record`` is not a TLS handshake record holding a whole ClientHello.
    """
    if len(record) < 9 or record[0] != _HANDSHAKE or record[5] != _CLIENT_HELLO:
        raise ValueError("not a TLS record holding a ClientHello")
    body = record[9:]
    if len(body) != int.from_bytes(record[6:9], "big") or len(record) - 5 != int.from_bytes(
        record[3:5], "big"
    ):
        raise ValueError("the ClientHello is not whole in this record")
    # legacy_version(2) random(32) session_id<1> cipher_suites<2> compression<1> extensions<2>
    at = 2 + 32
    at += 1 + body[at]
    at += 2 + int.from_bytes(body[at : at + 2], "big")
    at += 1 + body[at]
    ext_start = at + 2
    kept = b""
    i = ext_start
    while i + 4 <= len(body):
        ext_type, ext_len = struct.unpack("!HH", body[i : i + 4])
        if ext_type != _SUPPORTED_VERSIONS:
            kept += body[i : i + 4 + ext_len]
        i += 4 + ext_len
    new_body = body[:at] + len(kept).to_bytes(2, "big") + kept
    hello = bytes([_CLIENT_HELLO]) + len(new_body).to_bytes(3, "big") + new_body
    return record[:3] + len(hello).to_bytes(2, "big") + hello


def _read_record(sock: socket.socket) -> bytes:
    header = b""
    while len(header) < 5:
        chunk = sock.recv(5 - len(header))
        if not chunk:
            raise ConnectionError("closed before a whole TLS record")
        header += chunk
    need = int.from_bytes(header[3:5], "big")
    body = b""
    while len(body) < need:
        chunk = sock.recv(need - len(body))
        if not chunk:
            raise ConnectionError("closed before a whole TLS record")
        body += chunk
    return header + body


class _Downgrader(threading.Thread):
    """Accept one connection, strip its ClientHello's supported_versions, relay the rest."""

    def __init__(self, host: str, server: tuple[str, int]) -> None:
        super().__init__(name="scenario-mitm", daemon=True)
        self.server = server
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(TIMEOUT)
        self.address = self.listener.getsockname()[:2]
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.listener, self.listener.accept()[0] as client:
                client.settimeout(TIMEOUT)
                with socket.create_connection(self.server, timeout=TIMEOUT) as upstream:
                    upstream.sendall(strip_supported_versions(_read_record(client)))
                    self._relay(client, upstream)
        except BaseException as exc:  # re-raised by finish()
            self.error = exc

    @staticmethod
    def _relay(a: socket.socket, b: socket.socket) -> None:
        """Copy bytes both ways; pass each side's EOF on as a FIN (bounded by TIMEOUT)."""
        import selectors

        peer = {a: b, b: a}
        done: set[socket.socket] = set()
        with selectors.DefaultSelector() as sel:
            for s in peer:
                sel.register(s, selectors.EVENT_READ)
            deadline = time.monotonic() + TIMEOUT
            while len(done) < 2 and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        data = b""
                    with contextlib.suppress(OSError):
                        if data:
                            peer[src].sendall(data)
                            continue
                        peer[src].shutdown(socket.SHUT_WR)
                    sel.unregister(src)
                    done.add(src)

    def finish(self) -> None:
        self.join(TIMEOUT)
        if self.is_alive():
            raise TimeoutError("the man in the middle did not finish")
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------------------------
# The server side: the real labchat server, on the capture's port
# --------------------------------------------------------------------------------------------


@dataclass
class _Lab:
    """A scenario's throwaway certificates and users."""

    work: Path
    certs: Any  # labchat.certs.LabCertPaths
    users: Any  # labchat.auth.UserStore
    keylog: Path


def _lab(work: Path, *, users: bool = False) -> _Lab:
    from labchat.auth import UserStore
    from labchat.certs import create_lab_certs

    store = UserStore(work / "users.json", **SCENARIO_HASH)  # cheap: see SCENARIO_HASH
    if users:
        store.add("alice", PASSWORDS["alice"])
    return _Lab(work, create_lab_certs(work / "certs"), store, work / "keys.log")


@contextlib.contextmanager
def _server(lab: _Lab, host: str, port: int, **kwargs: Any) -> Iterator[Any]:
    from labchat.server import Server

    kwargs.setdefault("certs_dir", lab.certs.directory)
    with Server(host, port, users=lab.users, **kwargs) as server:
        yield server


def _run(
    lab: _Lab,
    server: Any,
    attempts: list[Attempt],
    *,
    pause: float,
    session: ssl.SSLSession | None = None,
) -> tuple[list[dict[str, Any]], ssl.SSLSession | None]:
    """Run the attempts one after the other against ``server``; check each came out right.

    Attempts with the same client settings share one `ssl.SSLContext`, as one client program
    would: a saved session can only be offered on the context that made it.
    """
    entries = []
    contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
    for attempt in attempts:
        key = (attempt.tls_version, attempt.cafile, attempt.client_cert)
        if key not in contexts:
            contexts[key] = _context(attempt, lab.certs.ca_cert, lab.keylog)
        mitm = None
        address = server.address
        if attempt.via_proxy:
            mitm = _Downgrader(server.address[0], server.address)
            mitm.start()
            address = mitm.address
        entry, saved = _connect(
            attempt,
            address,
            ctx=contexts[key],
            session=session if attempt.resume else None,
            pause=pause,
        )
        if mitm is not None:
            mitm.finish()
        failed = entry["result"] != "ok"
        if failed != (attempt.expected_alert is not None):
            raise RuntimeError(f"{attempt.role}: expected {'failure' if not failed else 'success'}"
                               f", got {entry}")  # fmt: skip
        if attempt.resume and not entry.get("session_reused"):
            raise RuntimeError(f"{attempt.role}: the session was not resumed: {entry}")
        session = saved or session
        entries.append(entry)
    return entries, session


def _finish(
    lab: _Lab, server_entry: dict[str, Any], clients: list[dict[str, Any]], notes: str, **tls: Any
) -> ScenarioRun:
    negotiated = next((c["version"] for c in clients if c.get("result") == "ok"), None)
    # The lab CA's certificate (public, nothing secret): the capture holds the certificates it
    # signed, and a learner checks their signatures against it, as the client did.
    ca_pem = lab.certs.ca_cert.read_text()
    return ScenarioRun(
        server=server_entry,
        clients=clients,
        tls={
            "version": negotiated,
            "server_name": SERVER_NAME,
            **tls,
            "ca_pem": ca_pem,
            # When the clients checked the certificates: a validity check of the captured
            # certificates is made at this moment, not at whatever today is.
            "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        keylog=lab.keylog,
        notes=notes,
    )


def _server_entry(server: Any, **extra: Any) -> dict[str, Any]:
    return {"host": server.address[0], "port": server.address[1], "role": "server", **extra}


# --------------------------------------------------------------------------------------------
# When TLS says no
# --------------------------------------------------------------------------------------------


def tls_unknown_ca(
    work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE
) -> ScenarioRun:
    """Clients that trust another CA, over TLS 1.2 and 1.3: the client sends unknown_ca."""
    from labchat.certs import create_lab_certs

    lab = _lab(work)
    other = create_lab_certs(work / "other-ca")  # a second lab CA, unrelated to the server's
    # In clear in TLS 1.3 too: OpenSSL's client checks the server's certificate before it
    # switches its own writing to the handshake keys (that happens when it sends its
    # Finished), so its alert goes out as a plaintext record, as RFC 8446 section 6 allows.
    expected = _alert("client", "unknown_ca", 48)
    attempts = [
        Attempt("TLS 1.2 client", "1.2", cafile=other.ca_cert, expected_alert=expected),
        Attempt("TLS 1.3 client", "1.3", cafile=other.ca_cert, expected_alert=expected),
    ]
    with _server(lab, host, port) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2-1.3")
    return _finish(
        lab, entry, clients,
        "The client cannot chain the server's certificate to a CA it trusts and sends a fatal "
        "unknown_ca alert, readable in both connections: in TLS 1.3 the client has not yet "
        "switched its own writing to the handshake keys when it checks the certificate.",
        client_trusts_pem=other.ca_cert.read_text(),
    )  # fmt: skip


def tls_expired(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """A server whose certificate expired yesterday: the client sends certificate_expired."""
    from labchat.certs import CA

    lab = _lab(work)
    ca = CA.from_pem(lab.certs.ca_cert.read_bytes(), lab.certs.ca_key.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    leaf = ca.issue_cert(
        "localhost", "127.0.0.1", not_before=now - dt.timedelta(days=31),
        not_after=now - dt.timedelta(days=1),
    )  # fmt: skip
    cert, key = work / "expired.pem", work / "expired.key"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key, private=True)
    attempts = [Attempt("client", expected_alert=_alert("client", "certificate_expired", 45))]
    with _server(lab, host, port, certfile=cert, keyfile=key) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2-1.3", certificate="expired yesterday")
    return _finish(
        lab, entry, clients,
        "The server's certificate ended yesterday: the client sends certificate_expired (the "
        "certificate itself is encrypted in TLS 1.3; keys.log decrypts it).",
    )  # fmt: skip


def tls_wrong_name(
    work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE
) -> ScenarioRun:
    """A client that asks for chat.example.org gets a localhost certificate: bad_certificate."""
    lab = _lab(work)
    # OpenSSL maps a host name mismatch (X509_V_ERR_HOSTNAME_MISMATCH) to bad_certificate:
    # TLS has no alert of its own for it (ssl/statem/statem_lib.c, ssl_x509err2alert).
    attempts = [
        Attempt("client", server_name=WRONG_NAME,
                expected_alert=_alert("client", "bad_certificate", 42)),
    ]  # fmt: skip
    with _server(lab, host, port) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2-1.3", certificate_names=["localhost",
                              "127.0.0.1", "::1"])  # fmt: skip
    return _finish(
        lab, entry, clients,
        f"The client asks for {WRONG_NAME} (look at the SNI in the ClientHello); the "
        "certificate names localhost: the client sends bad_certificate.",
    )  # fmt: skip


def tls_no_client_cert(
    work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE
) -> ScenarioRun:
    """A server that requires client certificates (``--client-ca``), clients without one."""
    lab = _lab(work)
    attempts = [
        Attempt("TLS 1.2 client", "1.2",
                expected_alert=_alert("server", "handshake_failure", 40)),
        # After its Finished the server writes with its application traffic key: the alert is
        # an opaque application_data record (SERVER_TRAFFIC_SECRET_0 in keys.log opens it).
        Attempt("TLS 1.3 client", "1.3",
                expected_alert=_alert("server", "certificate_required", 116, encrypted=True)),
    ]  # fmt: skip
    with _server(lab, host, port, client_ca=lab.certs.ca_cert) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2-1.3", client_ca="the lab CA")
    return _finish(
        lab, entry, clients,
        "The server sends CertificateRequest; the client answers with an empty Certificate. "
        "TLS 1.3 has an alert for it, certificate_required (RFC 8446), sent after the "
        "client's Finished (so the client's handshake 'succeeded' and the error comes on the "
        "first read); TLS 1.2 only has handshake_failure.",
    )  # fmt: skip


def tls_version_mismatch(
    work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE
) -> ScenarioRun:
    """A client that speaks only TLS 1.2, a server that speaks only TLS 1.3: protocol_version."""
    lab = _lab(work)
    attempts = [
        Attempt("TLS 1.2 client", "1.2", expected_alert=_alert("server", "protocol_version", 70))
    ]
    with _server(lab, host, port, tls_version="1.3") as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.3")
    return _finish(
        lab, entry, clients,
        "The ClientHello offers TLS 1.2 only (no supported_versions extension); the server "
        "speaks only 1.3 and answers with a protocol_version alert, before any key exists: "
        "there is nothing to decrypt and no key log.",
        pinned="1.3",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# When it works: mutual TLS, resumption, HelloRetryRequest, the downgrade sentinel
# --------------------------------------------------------------------------------------------


def mtls_chat(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """alice logs in with a client certificate, over TLS 1.2 and then TLS 1.3."""
    from labchat.certs import issue_client_cert

    lab = _lab(work, users=True)
    cert = issue_client_cert(lab.certs.directory, "alice")
    attempts = [
        Attempt("alice (TLS 1.2)", "1.2", client_cert=cert, login=True),
        Attempt("alice (TLS 1.3)", "1.3", client_cert=cert, login=True),
    ]
    with _server(lab, host, port, client_ca=lab.certs.ca_cert) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2-1.3", client_ca="the lab CA")
    return _finish(
        lab, entry, clients,
        "Mutual TLS: the server sends CertificateRequest, the client answers with its "
        "certificate (CN=alice) and a CertificateVerify. In TLS 1.2 both are readable on the "
        "wire; in TLS 1.3 only with keys.log.",
    )  # fmt: skip


def _resume(work: Path, version: str, *, port: int, host: str, pause: float) -> ScenarioRun:
    lab = _lab(work)
    attempts = [
        Attempt("full handshake", version),
        Attempt("resumed", version, resume=True),
    ]
    with _server(lab, host, port, tls_version=version) as server:
        clients, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions=version)
    how = (
        "a session ticket (RFC 5077): the ServerHello echoes the client's session id and "
        "no Certificate follows"
        if version == "1.2"
        else "a PSK (RFC 8446 section 2.2): the second ClientHello carries pre_shared_key "
        "and psk_key_exchange_modes, the ServerHello selects identity 0"
    )
    return _finish(
        lab, entry, clients,
        f"The second connection offers the first one's session (SSLSocket.session) and "
        f"resumes with {how}.",
        pinned=version,
    )  # fmt: skip


def tls12_resume(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """Two TLS 1.2 connections; the second resumes the first's session with its ticket."""
    return _resume(work, "1.2", port=port, host=host, pause=pause)


def tls13_resume(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """Two TLS 1.3 connections; the second resumes with a PSK from the first's ticket."""
    return _resume(work, "1.3", port=port, host=host, pause=pause)


def tls13_hrr(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """The server takes only P-256; the client's one key share is X25519: HelloRetryRequest."""
    lab = _lab(work)
    with _server(lab, host, port, tls_version="1.3") as server:
        # One group, P-256 ("prime256v1" in OpenSSL): set_ecdh_curve replaces the server's
        # list. OpenSSL's client sends a key share for its first group only (X25519), so
        # the server must ask for another one (RFC 8446 section 4.1.4).
        server.ssl_context.set_ecdh_curve("prime256v1")
        clients, _ = _run(lab, server, [Attempt("client")], pause=pause)
        entry = _server_entry(server, versions="1.3", groups=["secp256r1"])
    return _finish(
        lab, entry, clients,
        "ClientHello with an X25519 key share; the server takes only secp256r1 and answers "
        "with a HelloRetryRequest (a ServerHello with a fixed random) naming that group; the "
        "client sends a second ClientHello with a P-256 key share: one round trip more.",
        pinned="1.3", server_groups=["secp256r1"],
    )  # fmt: skip


def tls_downgrade(work: Path, *, port: int, host: str = _HOST, pause: float = PAUSE) -> ScenarioRun:
    """Three ways to end up at TLS 1.2, and the sentinel that tells them apart."""
    lab = _lab(work)
    with _server(lab, host, port, tls_version="1.2") as server:
        clients, _ = _run(lab, server, [Attempt("1.2+1.3 client, 1.2-only server")], pause=pause)
    # The same port again for a server that speaks both versions (SO_REUSEADDR).
    attempts = [
        Attempt("1.2 client, 1.2+1.3 server", "1.2"),
        Attempt("1.2+1.3 client through a man in the middle", via_proxy=True,
                expected_alert=_alert("client", "illegal_parameter", 47)),
    ]  # fmt: skip
    with _server(lab, host, port) as server:
        more, _ = _run(lab, server, attempts, pause=pause)
        entry = _server_entry(server, versions="1.2 only, then 1.2-1.3")
    return _finish(
        lab, entry, clients + more,
        "All three ServerHellos say TLS 1.2. Only a server that could have spoken 1.3 ends "
        "its random with 44 4f 57 4e 47 52 44 01 ('DOWNGRD\\x01', RFC 8446 section 4.1.3): "
        "the 1.2-only server does not; the 1.3 server does for the 1.2 client, and for the "
        "client whose ClientHello lost its supported_versions in the middle, which sees the "
        "sentinel and aborts with illegal_parameter.",
    )  # fmt: skip


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("tls-unknown-ca", tls_unknown_ca, "TLS says no: the client does not trust the CA "
             "(unknown_ca), in 1.2 and 1.3", tls=True),
    Scenario("tls-expired", tls_expired, "TLS says no: an expired server certificate "
             "(certificate_expired)", tls=True),
    Scenario("tls-wrong-name", tls_wrong_name, "TLS says no: a certificate for another host "
             "name (bad_certificate)", tls=True),
    Scenario("tls-no-client-cert", tls_no_client_cert, "TLS says no: no client certificate for "
             "a server that requires one (certificate_required)", tls=True),
    Scenario("tls-version-mismatch", tls_version_mismatch, "TLS says no: a 1.2 client and a "
             "1.3 server (protocol_version)", tls=True),
    Scenario("mtls-chat", mtls_chat, "mutual TLS: a client certificate, over 1.2 and 1.3",
             tls=True),
    Scenario("tls12-resume", tls12_resume, "TLS 1.2 session resumption with a ticket", tls=True),
    Scenario("tls13-resume", tls13_resume, "TLS 1.3 resumption with a PSK", tls=True),
    Scenario("tls13-hrr", tls13_hrr, "TLS 1.3 HelloRetryRequest: no key share for the server's "
             "group", tls=True),
    Scenario("tls-downgrade", tls_downgrade, "the TLS 1.3 downgrade sentinel in a 1.2 "
             "ServerHello, and a downgrade attack it stops", tls=True),
)  # fmt: skip
