"""Tests for labchat.certs: extensions, SANs, key types, files, and verification end to end."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labchat.certs import (
    CA,
    Blob,
    LabCertPaths,
    LeafCert,
    create_lab_certs,
    issue_client_cert,
    lab_cert_paths,
)

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def _verify_handshake(ca: CA, leaf: LeafCert, *, strict: bool) -> None:
    """Serve ``leaf`` on 127.0.0.1:0 and connect with a client trusting ``ca``; raise on failure."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    if strict:
        client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT

    errors: list[BaseException] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError as exc:  # pragma: no cover - timeout
                errors.append(exc)
                return
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (OSError, ssl.SSLError):
                pass  # the client side reports what went wrong
            finally:
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=5) as sock:
                with client_ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                    assert tls.recv(2) == b"ok"
        finally:
            thread.join(10)
            assert not thread.is_alive()
    assert not errors


# --- CA ----------------------------------------------------------------------------------


def test_CA_extensions(ca: CA) -> None:
    cert = ca.certificate
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert cert.subject == cert.issuer
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == "labchat lab CA"


def test_CA_validity_is_about_a_year_and_backdated(ca: CA) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    cert = ca.certificate
    assert cert.not_valid_before_utc < now - dt.timedelta(minutes=5)
    assert abs(cert.not_valid_after_utc - (now + dt.timedelta(days=365))) < dt.timedelta(hours=1)


def test_CA_key_types() -> None:
    assert isinstance(CA().certificate.public_key(), ec.EllipticCurvePublicKey)
    assert CA().certificate.public_key().curve.name == "secp256r1"
    rsa_ca = CA(key_type="rsa")
    assert isinstance(rsa_ca.certificate.public_key(), rsa.RSAPublicKey)
    assert rsa_ca.certificate.public_key().key_size == 2048
    # Leaves inherit the CA's key type unless told otherwise.
    assert isinstance(rsa_ca.issue_cert("localhost").certificate.public_key(), rsa.RSAPublicKey)


@pytest.mark.parametrize("bad", ["dsa", "ed25519", "", "EC"])
def test_CA_unknown_key_type_raises(bad: str) -> None:
    with pytest.raises(ValueError, match="key_type"):
        CA(key_type=bad)


def test_CA_random_serials(ca: CA) -> None:
    serials = {ca.issue_cert("localhost").certificate.serial_number for _ in range(5)}
    assert len(serials) == 5
    assert CA().certificate.serial_number != ca.certificate.serial_number


def test_CA_from_pem_roundtrip(ca: CA) -> None:
    again = CA.from_pem(ca.cert_pem.bytes(), ca.private_key_pem.bytes())
    assert again.cert_pem.bytes() == ca.cert_pem.bytes()
    leaf = again.issue_cert("localhost")
    assert leaf.certificate.issuer == ca.certificate.subject
    _verify_handshake(ca, leaf, strict=True)


def test_CA_from_pem_rejects_mismatched_key(ca: CA) -> None:
    with pytest.raises(ValueError, match="does not belong"):
        CA.from_pem(ca.cert_pem.bytes(), CA().private_key_pem.bytes())


def test_CA_from_pem_rejects_leaf(ca: CA) -> None:
    leaf = ca.issue_cert("localhost")
    with pytest.raises(ValueError, match="not a CA"):
        CA.from_pem(leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())


# --- leaf certificates -------------------------------------------------------------------


def test_LeafCert_server_extensions(ca: CA) -> None:
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1").certificate
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not ku.value.key_encipherment  # EC key: no RSA key transport
    assert not ku.value.key_cert_sign
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert cert.issuer == ca.certificate.subject
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "localhost"


def test_LeafCert_rsa_has_key_encipherment(ca: CA) -> None:
    cert = ca.issue_cert("localhost", key_type="rsa").certificate
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert _ext(cert, x509.KeyUsage).value.key_encipherment


def test_LeafCert_sans_dns_and_ip(ca: CA) -> None:
    cert = ca.issue_cert("localhost", "chat.lab", "127.0.0.1", "::1", "10.1.2.3").certificate
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "chat.lab"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    ]


def test_LeafCert_client_eku(ca: CA) -> None:
    cert = ca.issue_cert(common_name="alice", client=True).certificate
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


def test_LeafCert_needs_identity_or_common_name(ca: CA) -> None:
    with pytest.raises(ValueError, match="identity"):
        ca.issue_cert()


def test_LeafCert_rejects_non_ascii_identity(ca: CA) -> None:
    with pytest.raises(ValueError, match="A-label"):
        ca.issue_cert("café.example")


def test_LeafCert_not_before_after_not_after_raises(ca: CA) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ValueError, match="not_before"):
        ca.issue_cert("localhost", not_before=now, not_after=now - dt.timedelta(days=1))


def test_LeafCert_chain_and_combined_blob(ca: CA) -> None:
    leaf = ca.issue_cert("localhost")
    assert len(leaf.cert_chain_pems) == 1
    assert leaf.cert_chain_pems[0].bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert leaf.private_key_pem.bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    combined = leaf.private_key_and_cert_chain_pem.bytes()
    assert combined == leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_LeafCert_verifies_under_VERIFY_X509_STRICT(key_type: str) -> None:
    # Python 3.13's create_default_context() sets VERIFY_X509_STRICT; OpenSSL then demands,
    # among others, an AKI on the leaf and a SKI plus critical BasicConstraints on the CA.
    ca = CA(key_type=key_type)
    _verify_handshake(ca, ca.issue_cert("localhost", "127.0.0.1"), strict=True)


def test_VERIFY_X509_STRICT_has_teeth_without_AKI(ca: CA) -> None:
    # Control for the test above: the same handshake with a leaf lacking AKI fails under
    # VERIFY_X509_STRICT, so the flag really is checked by this OpenSSL.
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca._private_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    leaf = LeafCert(key_pem, cert.public_bytes(serialization.Encoding.PEM), [])
    _verify_handshake(ca, leaf, strict=False)
    with pytest.raises(ssl.SSLCertVerificationError, match="Authority Key Identifier"):
        _verify_handshake(ca, leaf, strict=True)


def test_LeafCert_expired_fails_verification(ca: CA) -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    leaf = ca.issue_cert("localhost", not_after=past)
    assert leaf.certificate.not_valid_after_utc < dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired") as info:
        _verify_handshake(ca, leaf, strict=False)
    assert info.value.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED


def test_LeafCert_other_CA_fails_verification(ca: CA) -> None:
    leaf = CA().issue_cert("localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _verify_handshake(ca, leaf, strict=False)


# --- Blob --------------------------------------------------------------------------------


@posix_only
def test_Blob_write_private_is_0600_even_over_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    Blob(b"secret").write_to_path(path, private=True)
    assert path.read_bytes() == b"secret"
    assert _mode(path) == 0o600


@posix_only
def test_Blob_write_public_replaces(tmp_path: Path) -> None:
    path = tmp_path / "c.pem"
    Blob(b"one-longer").write_to_path(path)
    Blob(b"two").write_to_path(path)
    assert path.read_bytes() == b"two"
    assert not _mode(path) & 0o022  # never group/other writable


# --- files ---------------------------------------------------------------------------------


def test_lab_cert_paths_no_io(tmp_path: Path) -> None:
    paths = lab_cert_paths(tmp_path / "nope")
    assert paths == LabCertPaths(
        tmp_path / "nope",
        tmp_path / "nope/ca.pem",
        tmp_path / "nope/ca.key",
        tmp_path / "nope/server.pem",
        tmp_path / "nope/server.key",
    )
    assert not (tmp_path / "nope").exists()


@posix_only
def test_create_lab_certs_writes_files_with_modes(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path / "certs", hosts=["chat.lab", "192.0.2.7"])
    assert paths == lab_cert_paths(tmp_path / "certs")
    assert _mode(paths.ca_key) == 0o600
    assert _mode(paths.server_key) == 0o600
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    san = _ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "chat.lab"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
        "192.0.2.7",
    ]
    ca = CA.from_pem(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())
    server_leaf = LeafCert(paths.server_key.read_bytes(), paths.server_cert.read_bytes(), [])
    _verify_handshake(ca, server_leaf, strict=True)


def test_create_lab_certs_rsa(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path, key_type="rsa")
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    assert isinstance(server.public_key(), rsa.RSAPublicKey)


def test_create_lab_certs_refuses_overwrite_without_force(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path)
    before = paths.ca_cert.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        create_lab_certs(tmp_path)
    assert paths.ca_cert.read_bytes() == before
    create_lab_certs(tmp_path, force=True)
    assert paths.ca_cert.read_bytes() != before


def test_create_lab_certs_refuses_if_any_one_file_exists(tmp_path: Path) -> None:
    (tmp_path / "server.key").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="server.key"):
        create_lab_certs(tmp_path)
    assert not (tmp_path / "ca.pem").exists()  # nothing written


@posix_only
def test_issue_client_cert(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path)
    cert_path, key_path = issue_client_cert(tmp_path, "alice")
    assert (cert_path, key_path) == (tmp_path / "client-alice.pem", tmp_path / "client-alice.key")
    assert _mode(key_path) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    with pytest.raises(FileExistsError, match="--force"):
        issue_client_cert(tmp_path, "alice")
    issue_client_cert(tmp_path, "alice", force=True)


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_issue_client_cert_rejects_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="client name"):
        issue_client_cert(tmp_path, name)


def test_issue_client_cert_without_ca_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        issue_client_cert(tmp_path, "alice")


@pytest.mark.parametrize(
    "name", ["nl\n", "cr\r", "tab\t", "esc\x1b", "del\x7f", "c1\x85", "rtl\u202e"]
)
def test_issue_client_cert_refuses_control_characters(tmp_path: Path, name: str) -> None:
    paths = create_lab_certs(tmp_path / "certs")
    with pytest.raises(ValueError, match="control character"):
        issue_client_cert(paths.directory, name)
    assert not [f for f in paths.directory.iterdir() if f.name.startswith("client-")]


def test_lab_files_refuse_control_characters_in_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="control character"):
        create_lab_certs(tmp_path / "certs\n")
    assert not (tmp_path / "certs\n").exists()
    with pytest.raises(ValueError, match="control character"):
        create_lab_certs(tmp_path / "certs", hosts=["lab\x1b[2J.example"])
    with pytest.raises(ValueError, match="control character"):
        CA().issue_cert(common_name="alice\n")
