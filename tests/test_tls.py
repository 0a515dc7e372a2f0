"""Tests for labchat.tls: real handshakes on 127.0.0.1, successes and refusals."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labchat.certs import CA, LabCertPaths, create_lab_certs
from labchat.tls import (
    MOZILLA_INTERMEDIATE_CIPHERS,
    InsecureTLSWarning,
    KeylogError,
    KeyPermissionError,
    check_private_key_permissions,
    client_context,
    parse_tls_version,
    server_context,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
TIMEOUT = 5.0


@dataclass
class Handshake:
    """What happened on both ends of one connection."""

    client_error: BaseException | None = None
    server_error: BaseException | None = None
    version: str | None = None
    cipher: tuple[str, str, int] | None = None
    server_peercert: dict | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None


def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str | None = "localhost",
) -> Handshake:
    """Connect ``client_ctx`` to ``server_ctx`` over 127.0.0.1:0 and exchange one message.

    The server thread accepts, handshakes and sends b"hello"; the client reads it. Reading
    matters for TLS 1.3, where the client finishes its handshake before the server has checked
    the client certificate: a refused client only notices on its first read.
    """
    result = Handshake()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError as exc:
                result.server_error = exc
                return
            conn.settimeout(TIMEOUT)  # not inherited from the listener
            try:
                with server_ctx.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                ) as tls:
                    tls.do_handshake()
                    result.server_peercert = tls.getpeercert()
                    tls.sendall(b"hello")
                    tls.recv(1)  # wait for the client to close
            except (OSError, ssl.SSLError) as exc:
                result.server_error = exc
            finally:
                conn.close()

        thread = threading.Thread(target=serve, name="tls-test-server")
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as sock:
                with client_ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
                    result.version = tls.version()
                    result.cipher = tls.cipher()
                    data = b""
                    while len(data) < 5:
                        chunk = tls.recv(5 - len(data))
                        if not chunk:
                            raise ConnectionError("server closed before sending hello")
                        data += chunk
                    assert data == b"hello"
        except (OSError, ssl.SSLError) as exc:
            result.client_error = exc
        finally:
            thread.join(TIMEOUT * 2)
            assert not thread.is_alive(), "server thread did not finish"
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabCertPaths:
    return create_lab_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def lab_ca(lab: LabCertPaths) -> CA:
    return CA.from_pem(lab.ca_cert.read_bytes(), lab.ca_key.read_bytes())


def _server(lab: LabCertPaths, **kwargs) -> ssl.SSLContext:
    return server_context(lab.server_cert, lab.server_key, **kwargs)


# --- parse_tls_version --------------------------------------------------------------------


def test_parse_tls_version() -> None:
    assert parse_tls_version(None) is None
    assert parse_tls_version("1.2") is ssl.TLSVersion.TLSv1_2
    assert parse_tls_version("1.3") is ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("bad", ["1.1", "1.0", "tls1.3", "", "3"])
def test_parse_tls_version_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="choose 1.2 or 1.3"):
        parse_tls_version(bad)


# --- contexts ------------------------------------------------------------------------------


def test_contexts_have_sane_settings(lab: LabCertPaths) -> None:
    for ctx in (_server(lab), client_context(cafile=lab.ca_cert)):
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_COMPRESSION
        tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 and set(tls12) <= set(MOZILLA_INTERMEDIATE_CIPHERS.split(":"))
        assert all(c["aead"] for c in ctx.get_ciphers())
    client = client_context(cafile=lab.ca_cert)
    assert client.check_hostname and client.verify_mode is ssl.CERT_REQUIRED
    assert _server(lab).verify_mode is ssl.CERT_NONE


def test_pinned_version_sets_maximum(lab: LabCertPaths) -> None:
    ctx = _server(lab, tls_version="1.2")
    assert ctx.minimum_version is ctx.maximum_version is ssl.TLSVersion.TLSv1_2
    ctx = client_context(cafile=lab.ca_cert, tls_version="1.3")
    assert ctx.minimum_version is ctx.maximum_version is ssl.TLSVersion.TLSv1_3


def test_bad_version_raises(lab: LabCertPaths) -> None:
    with pytest.raises(ValueError):
        _server(lab, tls_version="1.1")


# --- handshakes ----------------------------------------------------------------------------


def test_handshake_tls13(lab: LabCertPaths) -> None:
    result = handshake(_server(lab), client_context(cafile=lab.ca_cert))
    assert result.ok, result
    assert result.version == "TLSv1.3"


@pytest.mark.parametrize("pin_side", ["server", "client"])
def test_handshake_tls12_uses_ecdhe_aead(lab: LabCertPaths, pin_side: str) -> None:
    server = _server(lab, tls_version="1.2" if pin_side == "server" else None)
    client = client_context(cafile=lab.ca_cert, tls_version="1.2" if pin_side == "client" else None)
    result = handshake(server, client)
    assert result.ok, result
    assert result.version == "TLSv1.2"
    name = result.cipher[0]
    assert name.startswith("ECDHE-")
    assert "GCM" in name or "CHACHA20" in name


def test_handshake_by_ip_address(lab: LabCertPaths) -> None:
    result = handshake(_server(lab), client_context(cafile=lab.ca_cert), "127.0.0.1")
    assert result.ok, result


def test_handshake_rsa_certs(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path, key_type="rsa")
    server = server_context(paths.server_cert, paths.server_key, tls_version="1.2")
    result = handshake(server, client_context(cafile=paths.ca_cert))
    assert result.ok, result
    assert result.cipher[0].startswith("ECDHE-RSA-")


def test_handshake_wrong_ca_refused(lab: LabCertPaths, tmp_path: Path) -> None:
    other = create_lab_certs(tmp_path)
    result = handshake(_server(lab), client_context(cafile=other.ca_cert))
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert result.client_error.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert isinstance(result.server_error, ssl.SSLError)  # alert "unknown ca"


@pytest.mark.parametrize("hostname", ["chat.example", "127.0.0.2"])
def test_handshake_wrong_hostname_refused(lab: LabCertPaths, hostname: str) -> None:
    result = handshake(_server(lab), client_context(cafile=lab.ca_cert), hostname)
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert "mismatch" in str(result.client_error)
    assert result.server_error is not None


def test_handshake_tls11_client_refused(lab: LabCertPaths) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(lab.ca_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1_x
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    # TLS 1.1 suites are SHA-1 based; SECLEVEL=0 lets this OpenSSL at least try. If it still
    # refuses to send a ClientHello ("no protocols available"), the handshake fails either way.
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    result = handshake(_server(lab), client)
    assert isinstance(result.client_error, ssl.SSLError)
    assert result.version is None
    if "no protocols available" not in str(result.client_error):
        # The ClientHello went out: it is our server that said no.
        assert isinstance(result.server_error, ssl.SSLError)
        assert "unsupported protocol" in str(result.server_error).lower()
        assert "protocol version" in str(result.client_error).lower()


def test_handshake_cbc_only_client_refused(lab: LabCertPaths) -> None:
    cbc = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"

    def cbc_client() -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=lab.ca_cert)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(cbc)
        return ctx

    # Control: Python's own default server context accepts these CBC suites...
    plain = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    plain.load_cert_chain(lab.server_cert, lab.server_key)
    control = handshake(plain, cbc_client())
    assert control.ok, control
    assert control.cipher[0] in cbc.split(":")
    # ...and ours does not.
    result = handshake(_server(lab), cbc_client())
    assert isinstance(result.server_error, ssl.SSLError)
    assert "no shared cipher" in str(result.server_error).lower()
    assert isinstance(result.client_error, ssl.SSLError)


# --- mutual TLS ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mtls_without_client_cert_refused(lab: LabCertPaths, version: str) -> None:
    server = _server(lab, client_ca=lab.ca_cert, tls_version=version)
    assert server.verify_mode is ssl.CERT_REQUIRED
    result = handshake(server, client_context(cafile=lab.ca_cert))
    assert isinstance(result.server_error, ssl.SSLError)
    assert "certificate" in str(result.server_error).lower()
    # TLS 1.2: the client's handshake fails; TLS 1.3: its first read fails (alert).
    assert result.client_error is not None


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mtls_with_client_cert_ok(lab: LabCertPaths, lab_ca: CA, tmp_path: Path, version: str):
    leaf = lab_ca.issue_cert(common_name="alice", client=True)
    cert, key = tmp_path / "alice.pem", tmp_path / "alice.key"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key, private=True)
    server = _server(lab, client_ca=lab.ca_cert, tls_version=version)
    client = client_context(cafile=lab.ca_cert, certfile=cert, keyfile=key)
    result = handshake(server, client)
    assert result.ok, result
    assert ((("commonName", "alice"),)) in result.server_peercert["subject"]


def test_mtls_client_cert_from_other_ca_refused(lab: LabCertPaths) -> None:
    stranger = CA().issue_cert(common_name="mallory", client=True)
    client = client_context(cafile=lab.ca_cert)
    stranger.configure_cert(client)
    result = handshake(_server(lab, client_ca=lab.ca_cert), client)
    assert isinstance(result.server_error, ssl.SSLCertVerificationError)
    assert result.client_error is not None


# --- key log -------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize(
    ("version", "label"),
    [("1.2", b"CLIENT_RANDOM "), ("1.3", b"CLIENT_HANDSHAKE_TRAFFIC_SECRET ")],
)
def test_keylog_written_0600(lab: LabCertPaths, tmp_path: Path, version: str, label: bytes):
    client_log, server_log = tmp_path / "client.keys", tmp_path / "server.keys"
    old = os.umask(0o022)  # what a typical shell has; OpenSSL alone would make 0644
    try:
        server = _server(lab, tls_version=version, keylog=server_log)
        client = client_context(cafile=lab.ca_cert, tls_version=version, keylog=client_log)
    finally:
        os.umask(old)
    result = handshake(server, client)
    assert result.ok, result
    for log in (client_log, server_log):
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        lines = log.read_bytes().splitlines()
        assert any(line.startswith(label) for line in lines), lines
    if version == "1.3":
        assert b"SERVER_TRAFFIC_SECRET_0" in client_log.read_bytes()


@posix_only
def test_keylog_existing_0600_file_of_ours_is_appended_to(lab: LabCertPaths, tmp_path: Path):
    log = tmp_path / "keys.log"
    log.write_bytes(b"# earlier\n")
    log.chmod(0o600)
    server = _server(lab, keylog=log)
    assert handshake(server, client_context(cafile=lab.ca_cert)).ok
    assert log.read_bytes().startswith(b"# earlier\n")  # appended to, never truncated
    assert len(log.read_bytes().splitlines()) > 1
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@posix_only
def test_keylog_new_file_is_0600_whatever_the_umask(lab: LabCertPaths, tmp_path: Path) -> None:
    log = tmp_path / "keys.log"
    old = os.umask(0)
    try:
        client_context(cafile=lab.ca_cert, keylog=log)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@posix_only
def test_keylog_readable_by_others_is_refused_not_changed(lab: LabCertPaths, tmp_path: Path):
    log = tmp_path / "keys.log"
    log.write_bytes(b"# earlier\n")
    log.chmod(0o644)
    with pytest.raises(KeylogError, match=r"mode 0o644.*chmod 600"):
        client_context(cafile=lab.ca_cert, keylog=log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o644
    assert log.read_bytes() == b"# earlier\n"


@posix_only
@pytest.mark.parametrize("dangling", [False, True], ids=["symlink", "dangling-symlink"])
def test_keylog_symlink_is_refused(lab: LabCertPaths, tmp_path: Path, dangling: bool) -> None:
    target = tmp_path / "target"
    if not dangling:
        target.write_bytes(b"someone's file\n")
        target.chmod(0o600)
    link = tmp_path / "keys.log"
    link.symlink_to(target)
    for make in (
        lambda: client_context(cafile=lab.ca_cert, keylog=link),
        lambda: _server(lab, keylog=link),
    ):
        with pytest.raises(KeylogError, match="symbolic link"):
            make()
    if dangling:
        assert not target.exists()  # the link's target was never created
    else:
        assert target.read_bytes() == b"someone's file\n"


@posix_only
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_keylog_owned_by_another_user_is_refused(lab: LabCertPaths, tmp_path: Path) -> None:
    # What the issue saw: a file that `nobody` created first stayed theirs, with the secrets.
    import pwd

    nobody = pwd.getpwnam("nobody")
    log = tmp_path / "keys.log"
    log.write_bytes(b"")
    log.chmod(0o600)
    os.chown(log, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(KeylogError, match=f"user id {nobody.pw_uid}"):
        _server(lab, keylog=log)
    assert log.read_bytes() == b""


@posix_only
def test_keylog_refuses_other_kinds_of_file(lab: LabCertPaths, tmp_path: Path) -> None:
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    with pytest.raises((KeylogError, OSError)):
        client_context(cafile=lab.ca_cert, keylog=fifo)
    with pytest.raises(ValueError, match="control character"):
        client_context(cafile=lab.ca_cert, keylog=tmp_path / "keys\n.log")
    assert not (tmp_path / "keys\n.log").exists()


# --- insecure, permissions, strict ---------------------------------------------------------


def test_insecure_warns_and_connects_without_ca(lab: LabCertPaths) -> None:
    with pytest.warns(InsecureTLSWarning, match="anyone in the middle can read and change"):
        client = client_context(insecure=True)
    assert client.verify_mode is ssl.CERT_NONE and not client.check_hostname
    result = handshake(_server(lab), client, "wrong.example")
    assert result.ok, result


@posix_only
def test_KeyPermissionError_for_0644_key(lab: LabCertPaths, tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(lab.server_key.read_bytes())
    key.chmod(0o644)
    with pytest.raises(KeyPermissionError, match="chmod 600") as info:
        server_context(lab.server_cert, key)
    assert isinstance(info.value, PermissionError)
    assert info.value.filename == str(key)
    assert info.value.mode == 0o644
    assert "0o644" in str(info.value) and str(key) in str(info.value)
    # The check can be switched off (e.g. keys on a filesystem without POSIX modes).
    server_context(lab.server_cert, key, check_key_permissions=False)
    key.chmod(0o600)
    check_private_key_permissions(key)


@posix_only
def test_KeyPermissionError_for_client_key(lab_ca: CA, lab: LabCertPaths, tmp_path: Path):
    leaf = lab_ca.issue_cert(common_name="bob", client=True)
    cert, key = tmp_path / "bob.pem", tmp_path / "bob.key"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    key.chmod(0o640)
    with pytest.raises(KeyPermissionError, match="0o640"):
        client_context(cafile=lab.ca_cert, certfile=cert, keyfile=key)


def test_strict_client_accepts_lab_certs(lab: LabCertPaths) -> None:
    client = client_context(cafile=lab.ca_cert)
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
    for version in ("1.2", "1.3"):
        result = handshake(_server(lab, tls_version=version), client)
        assert result.ok, result
